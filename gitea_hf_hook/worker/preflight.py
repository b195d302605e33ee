"""Before the worker starts: refuse to run while anyone but root and the worker's user could change what it trusts
(the config, the folders above it, the spool it decides from) or read what it guards (the token files).

Gitea's user writes into the spool, and the worker's user is in Gitea's group, so anything that group or others can
write is hostile input to the worker, and anything the group can read is readable by every hook. The checks look
at owners and modes only, with ``lstat``: a few dozen system calls, cheap enough to run before every pass.

Links. A path the admin configured (the config, a token file, the home folder) may pass through symbolic links,
as ``/etc`` paths often do: the worker follows them, but checks every folder it passes through, the link's and
the target's alike, and each link's own owner (a link in a sticky folder such as /tmp can be replaced by whoever
owns it). What a path names can then change only by the hand of root or the worker's user. The spool's own
folders are different: nobody configured them, Gitea's user could have planted a link there, so they must be
real folders.
"""

from __future__ import annotations

import errno
import os
import pwd
import stat

from ..config.model import DEFAULT_PATH, Config
from ..errors import ConfigError, HookError, SpoolError
from ..spool.layout import HOOK_FOLDERS, WORKER_FOLDERS, mode_of

WORKER_USER = "hf-publish"  # the README's name for the worker's user, for hints when the spool names none
_MAX_LINKS = 40  # the kernel's own limit on links followed in one lookup
_GROUP_OR_OTHERS_WRITE = stat.S_IWGRP | stat.S_IWOTH


def _name(uid: int) -> str:
    """The user name, else ``uid N``: for prose."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def _who(uid: int) -> str:
    """``uid 1000 (git)``, else ``uid 12345``: for the owner that is wrong."""
    name = _name(uid)
    return f"uid {uid}" if name == f"uid {uid}" else f"uid {uid} ({name})"


def _arg(uid: int, unnamed: str = "{}") -> str:
    """The user as a command takes it: the name, else the number as ``unnamed`` spells it (sudo: ``'#{}'``)."""
    name = _name(uid)
    return unnamed.format(uid) if name == f"uid {uid}" else name


def _names(owners: frozenset[int]) -> str:
    return " or ".join(_name(uid) for uid in sorted(owners))


def _mode(st: os.stat_result) -> str:
    return f"{stat.S_IMODE(st.st_mode):04o}"


def _whom(st: os.stat_result) -> str:
    """Who besides the owner may write: ``group``, ``others`` or ``group and others``."""
    return " and ".join(w for bit, w in ((stat.S_IWGRP, "group"), (stat.S_IWOTH, "others")) if st.st_mode & bit)


def _walk(path: str, owners: frozenset[int], role: str, error: type[HookError]) -> tuple[str, os.stat_result]:
    """Look ``path`` up one name at a time, as the kernel does, checking each folder it enters and each link it
    follows; returns the real path it ends at and that entry's ``lstat``. Raises OSError as a lookup would.

    Every folder entered must belong to ``owners`` and be writable by nobody else, unless it is sticky (like /tmp,
    where others cannot replace what they do not own); every link must belong to ``owners``.
    """
    parts = (path if os.path.isabs(path) else os.path.join(os.getcwd(), path)).split(os.sep)
    current, links = os.sep, 0
    _folder(current, os.lstat(current), owners, role, error)
    while parts:
        name = parts.pop(0)
        if name in ("", "."):
            continue
        if name == "..":
            current = os.path.dirname(current)  # current is a real path, so this is what ".." names
            continue
        entry = os.path.join(current, name)
        st = os.lstat(entry)
        if stat.S_ISLNK(st.st_mode):
            if st.st_uid not in owners:
                raise error(f"{entry}: a link on the way to {role} belongs to {_who(st.st_uid)}, not to "
                            f"{_names(owners)}", f"chown -h root {entry}")
            links += 1
            if links > _MAX_LINKS:
                raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
            target = os.readlink(entry)
            if os.path.isabs(target):
                current = os.sep
            parts[:0] = target.split(os.sep)
            continue
        if not parts:
            return entry, st
        if not stat.S_ISDIR(st.st_mode):
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), entry)
        _folder(entry, st, owners, role, error)
        current = entry
    return current, os.lstat(current)


def _folder(folder: str, st: os.stat_result, owners: frozenset[int], role: str, error: type[HookError]) -> None:
    if st.st_uid not in owners:
        raise error(f"{folder}: a folder above {role} belongs to {_who(st.st_uid)}, not to {_names(owners)}",
                    f"chown root {folder}")
    if st.st_mode & _GROUP_OR_OTHERS_WRITE and not st.st_mode & stat.S_ISVTX:
        raise error(f"{folder}: a folder above {role} is writable by {_whom(st)} (mode {_mode(st)})",
                    f"chmod {stat.S_IMODE(st.st_mode) & ~_GROUP_OR_OTHERS_WRITE:o} {folder}")


def _shown(path: str, real: str) -> str:
    return path if real == path else f"{real} (linked from {path})"


def _config_file(path: str, owners: frozenset[int]) -> None:
    role = f"the config file {path}"
    try:
        real, st = _walk(os.path.abspath(path), owners, role, ConfigError)
    except OSError as exc:  # it was just read, so only a change since then lands here
        raise ConfigError(f"{path}: the config file cannot be looked up ({exc.strerror}: {exc.filename})",
                          "check the path given with --config") from None
    if st.st_uid not in owners:
        raise ConfigError(f"{_shown(path, real)}: the config file belongs to {_who(st.st_uid)}, not to "
                          f"{_names(owners)}", f"chown root {path}")
    if st.st_mode & _GROUP_OR_OTHERS_WRITE:
        raise ConfigError(f"{_shown(path, real)}: the config file is writable by {_whom(st)} (mode {_mode(st)})",
                          f"chmod {stat.S_IMODE(st.st_mode) & ~_GROUP_OR_OTHERS_WRITE:o} {path}")


def _secret(path: str, role: str, owners: frozenset[int], holders: frozenset[int], me: int) -> None:
    """A token file: a regular file of the worker's own that its group (Gitea's) and others cannot even read."""
    try:
        real, st = _walk(path, owners, role, ConfigError)
    except FileNotFoundError:
        raise ConfigError(f"{path}: {role} does not exist",
                          f"put the token there: install -o {_arg(me)} -m 600 TOKEN-FILE {path}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: {role} cannot be looked up by {_name(me)} ({exc.strerror}: {exc.filename})",
                          f"fix the path in the config, or let {_name(me)} enter the folders on its way") from None
    where = _shown(path, real)
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"{where}: {role} is not a regular file", "put the token in a file of its own")
    if st.st_uid not in holders:
        raise ConfigError(f"{where}: {role} belongs to {_who(st.st_uid)}, not to the worker's user {_names(holders)}",
                          f"chown {_arg(me)} {path}")
    if stat.S_IMODE(st.st_mode) & 0o077:
        what = "may be read by" if st.st_mode & (stat.S_IRGRP | stat.S_IROTH) else "grants access to"
        raise ConfigError(f"{where}: {role} {what} group or others (mode {_mode(st)})", f"chmod 600 {path}")


def _home(home: str, owners: frozenset[int], holders: frozenset[int], me: int) -> None:
    """The worker's home holds what git, the Hub client and our caches read back: the worker's alone."""
    role = "the worker's home folder"
    try:
        real, st = _walk(home, owners, role, ConfigError)
    except OSError:
        return  # nothing is read from a home that is not there, or that the worker cannot enter
    if not stat.S_ISDIR(st.st_mode):
        return
    where = _shown(home, real)
    if st.st_uid not in holders:
        raise ConfigError(f"{where}: {role} belongs to {_who(st.st_uid)}, not to the worker's user "
                          f"{_names(holders)}", f"chown {_arg(me)} {home} && chmod 700 {home}")
    if st.st_mode & _GROUP_OR_OTHERS_WRITE:
        raise ConfigError(f"{where}: {role} is writable by {_whom(st)} (mode {_mode(st)})", f"chmod 700 {home}")


def _owner(path: str) -> int | None:
    try:
        return os.lstat(path).st_uid
    except OSError:
        return None


def check(config: Config, *, uid: int | None = None, allow_root: bool = False) -> None:
    """Refuse, with a :class:`ConfigError` or :class:`SpoolError`, to run the worker as ``uid`` (default: the
    effective uid) while root runs it without ``allow_root``, or anyone but root and that user could change the
    config, the spool or the folders above them, or read a token file."""
    me = os.geteuid() if uid is None else uid
    spool_owner = _owner(config.spool)
    if me == 0 and not allow_root:
        user = WORKER_USER if not spool_owner else _arg(spool_owner, unnamed="'#{}'")
        option = "" if config.path == DEFAULT_PATH else f" --config {config.path}"
        raise ConfigError("the worker is running as root, and the files it creates would lock the worker's user out",
                          f"run it as the worker's user (sudo -u {user} gitea-hf-hook{option} worker), or pass "
                          "--allow-root")
    # Run as root, the worker's files may still be those of the user that owns the spool.
    holders = frozenset({me} if me else {0, *([spool_owner] if spool_owner else [])})
    owners = frozenset({0}) | holders
    _config_file(config.path, owners)
    for namespace, path in config.hub_tokens.items():
        _secret(path, f"the Hub token file named by hub.tokens.{namespace}", owners, holders, me)
    if config.gitea_token_file:
        _secret(config.gitea_token_file, "the Gitea token file named by gitea.token_file", owners, holders, me)
    _home(os.path.expanduser("~"), owners, holders, me)
    check_spool(config.spool, uid=me)


def check_spool(spool: str, *, uid: int | None = None) -> None:
    """Refuse, with a :class:`SpoolError`, a spool that ``uid`` (default: the effective uid) does not own, or whose
    folders are links, belong to another user, or are writable by more than the layout allows: the worker folders
    by the spool's owner alone, the hook folders by its group too. Missing folders pass: the worker creates them."""
    me = os.geteuid() if uid is None else uid
    spool_owner = _owner(spool)
    owners = frozenset({0, me, *([spool_owner] if me == 0 and spool_owner is not None else [])})
    parent, name = os.path.split(os.path.abspath(spool))
    try:
        real_parent, _ = _walk(parent, owners, f"the spool {spool}", SpoolError)
        st = os.lstat(os.path.join(real_parent, name))
    except FileNotFoundError:
        return  # the worker creates it
    except OSError as exc:
        raise SpoolError(f"the spool {spool} cannot be looked up by {_name(me)} ({exc.strerror}: {exc.filename})",
                         f"let {_name(me)} enter the folders above it, or fix spool in the config") from None
    if stat.S_ISLNK(st.st_mode):
        raise SpoolError(f"the spool {spool} is a symbolic link",
                         f"set spool in the config to the folder itself, {os.path.realpath(spool)}")
    if not stat.S_ISDIR(st.st_mode):
        raise SpoolError(f"the spool {spool} is not a folder", "remove it, or set spool in the config to a folder")
    if me not in (0, st.st_uid):
        raise SpoolError(f"the spool {spool} belongs to {_who(st.st_uid)}, not to the worker's user {_name(me)}",
                         f"chown -R {_arg(me)} {spool}")
    if st.st_mode & _GROUP_OR_OTHERS_WRITE:
        raise SpoolError(f"the spool {spool} is writable by {_whom(st)} (mode {_mode(st)})",
                         f"chmod {mode_of(''):o} {spool}")
    for folder in HOOK_FOLDERS + WORKER_FOLDERS:
        path = os.path.join(spool, folder)
        try:
            sub = os.lstat(path)
        except FileNotFoundError:
            continue
        if stat.S_ISLNK(sub.st_mode) or not stat.S_ISDIR(sub.st_mode):
            what = "a symbolic link" if stat.S_ISLNK(sub.st_mode) else "not a folder"
            raise SpoolError(f"the spool folder {path} is {what}", f"rm {path}; the worker recreates it")
        if sub.st_uid != st.st_uid:
            raise SpoolError(f"the spool folder {path} belongs to {_who(sub.st_uid)}, not to the spool's owner "
                             f"{_name(st.st_uid)}", f"chown {_arg(st.st_uid)} {path}")
        # Gitea's group writes the hook folders; only the spool's owner writes where the worker decides from.
        if sub.st_mode & (stat.S_IWOTH if folder in HOOK_FOLDERS else _GROUP_OR_OTHERS_WRITE):
            raise SpoolError(f"the spool folder {path} is writable by {_whom(sub)} (mode {_mode(sub)})",
                             f"chmod {mode_of(folder):o} {path}")
