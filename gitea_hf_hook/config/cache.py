"""The validated config kept as JSON in the hook user's cache folder, keyed by the config file's identity.

Validating needs PyYAML, which costs a push about 10 ms to import; a push whose config did not change reads
this JSON instead. Beside it, ``<cache>.spool`` names the spool in plain text: the post-receive hook needs
nothing else, and reading it costs no import at all (``json`` brings ``re``, several milliseconds).

Two more files serve a config that stops loading. ``<cache>.routing`` keeps the routing (``match``, ``branches``,
``tags`` of each rule) of the last valid load, with no stamp: while the file is broken, the pre-receive hook
rejects only the refs that routing publishes. ``<cache>.broken`` holds the time a hook first found the file
broken, for ``status`` and ``doctor``; the next valid load removes it. The folder is the hook user's: it is
trusted for routing at push time only, and never by the worker.
"""

from __future__ import annotations

import os

# typing costs a push 2 ms to import; annotations are strings here, so only type checkers need it.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# The cache is as old as the code that validated it.
_CODE = tuple(os.path.join(os.path.dirname(os.path.abspath(__file__)), name)
              for name in ("model.py", "schema.py", "load.py"))


# The most a routing record may weigh: far above any real config's, and read only while the config is broken.
ROUTING_LIMIT = 1 << 20
_ROUTING_KEYS = ("match", "branches", "tags")


def cache_file(path: str, cache_home: str | None = None) -> str:
    """``~/.cache/gitea-hf-hook/config-<path>.json``, named after the path: hashlib costs 2 ms to import.

    ``cache_home`` stands for ``$XDG_CACHE_HOME`` (else ``~/.cache``): another user's, for a command that reads
    what the hooks left."""
    base = cache_home or os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    key = os.path.abspath(path).strip(os.sep).replace(os.sep, "_")
    return os.path.join(base, "gitea-hf-hook", f"config-{key}.json")


def stamp(path: str) -> list[int]:
    """What identifies one version of the config file and of our validating code; raises OSError."""
    result = []
    for name in (path, *_CODE):
        st = os.stat(name)
        result += [st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino]
    return result


def read(path: str) -> dict[str, Any] | None:
    """The cached JSON config for ``path``, or None when there is none or the file changed since."""
    import json

    try:
        with open(cache_file(path), encoding="utf-8") as f:
            cached = json.load(f)
        return dict(cached["config"]) if cached["stamp"] == stamp(path) else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _temporary(name: str, text: str) -> str:
    """A file beside ``name`` holding ``text``, readable and writable by us alone; raises OSError."""
    tmp = f"{name}.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with open(fd, "w", encoding="utf-8") as f:
        f.write(text)
    return tmp


def write(path: str, data: dict[str, Any], read_at: list[int] | None = None) -> None:
    """Remember ``data`` as the validated config of ``path`` as it is now, and its routing as the last valid one;
    the config is no longer broken. ``read_at`` is the file's :func:`stamp` taken before it was read: an edit
    landing between the read and now then leaves a stamp that matches no file, rather than filing the old content
    under the new file's stamp. A cache we cannot write only costs time, so failures are ignored (without a
    routing record, a config that breaks later fails closed for every branch and tag)."""
    import json

    cache = cache_file(path)
    try:
        current = stamp(path) if read_at is None else read_at
        folder = os.path.dirname(cache)
        os.makedirs(folder, mode=0o700, exist_ok=True)
        _private(folder)
        routing = {"config": os.path.abspath(path),
                   "repos": [{key: rule[key] for key in _ROUTING_KEYS} for rule in data["repos"]]}
        for name, text in ((f"{cache}.spool", str(data["spool"])),
                           (cache, json.dumps({"stamp": current, "config": data})),
                           (f"{cache}.routing", json.dumps(routing))):
            os.replace(_temporary(name, text), name)  # a reader sees the old file or the new one, never half
        try:
            os.unlink(f"{cache}.broken")
        except FileNotFoundError:
            pass
    except OSError:
        pass


def _private(folder: str) -> None:
    """Make our cache folder writable by us alone, as :func:`routing` requires before it believes a record: an
    earlier release, or a umask of 002, may have left it group-writable. A folder that is a link, or not ours,
    is left as it is (and its records are not believed)."""
    import stat

    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        return
    try:
        info = os.fstat(fd)
        if info.st_uid == os.geteuid() and info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            os.fchmod(fd, stat.S_IMODE(info.st_mode) & ~(stat.S_IWGRP | stat.S_IWOTH))
    finally:
        os.close(fd)


def spool_dir(path: str) -> str | None:
    """The spool of the config ``path`` had when it was last loaded, or None when it never was."""
    try:
        with open(cache_file(path) + ".spool", encoding="utf-8") as f:
            return f.read() or None
    except OSError:
        return None


def routing(path: str) -> list[Any] | None:
    """The routing the last valid load of ``path`` left: one ``{"match", "branches", "tags"}`` object per rule, as
    JSON gives it (the caller checks each value). None when there is none, or none we trust: the record and its
    folder must be ours, real (no link), and writable by no one else, and the record no larger than
    ``ROUTING_LIMIT``. Whoever runs as the hook user could have written it; only push time may believe it."""
    import json
    import stat

    name = cache_file(path) + ".routing"

    def ours(info: os.stat_result, kind: int) -> bool:
        return (stat.S_IFMT(info.st_mode) == kind and info.st_uid == os.geteuid()
                and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH))

    try:
        if not ours(os.lstat(os.path.dirname(name)), stat.S_IFDIR):
            return None
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        with open(fd, "rb") as f:
            info = os.fstat(f.fileno())
            if not ours(info, stat.S_IFREG) or info.st_size > ROUTING_LIMIT:
                return None
            data = json.loads(f.read(ROUTING_LIMIT + 1).decode("utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("config") != os.path.abspath(path):
        return None  # another config whose path makes the same file name
    repos = data.get("repos")
    return repos if isinstance(repos, list) else None


def mark_broken(path: str) -> None:
    """Record that a hook found the config of ``path`` broken, unless that is on record already: the first such
    moment is when it broke. The next valid load clears it. Failures are ignored: the record is for display."""
    import time

    marker = cache_file(path) + ".broken"
    if os.path.exists(marker):
        return
    try:
        os.makedirs(os.path.dirname(marker), mode=0o700, exist_ok=True)
        tmp = _temporary(marker, f"{int(time.time())}\n")
        try:
            os.link(tmp, marker)  # the first hook to get here wins; a reader never sees half a record
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
    except OSError:
        pass


def broken_since(path: str, cache_home: str | None = None) -> float | None:
    """When the hooks first found the config of ``path`` broken (seconds since the epoch), or None when the last
    config they loaded was valid, or they never tried. ``cache_home`` is the hook user's ``$XDG_CACHE_HOME``
    (default: ours), for ``status`` and ``doctor`` run as another user. The hook user writes this record, so the
    value is only ever shown."""
    import stat

    try:
        # Not through a link, and not a FIFO that would hold the reader: Gitea's user writes this folder.
        fd = os.open(cache_file(path, cache_home) + ".broken", os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        with open(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                return None
            since = float(f.read(64).decode("ascii"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    import time

    # Gitea's user writes the record: a moment later than tomorrow is not one a hook wrote.
    return since if 0 <= since <= time.time() + 86400 else None
