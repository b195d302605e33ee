"""``gitea-hf-hook doctor``: one line per check of an installation, ``ok``, ``warn`` or ``fail``, with the fix for
each problem. It changes nothing.

It checks the config (and since when the hooks have found it broken); the owners and modes the threat model
needs, with the worker's own start-up checks run for the worker's user; the hooks' cache and log folders; the LFS
store, read as the worker's user; the hooks in every repository and the template for new ones (what ``sync``
would change); each Hub token, as whoami-v2 describes it; the Gitea token's scopes, with requests Gitea refuses or
answers before any handler acts; and the worker's service.

Who is who comes from the files, as the installation made them: the worker's user owns the spool, Gitea's user
owns ``gitea.repo_root``, and Gitea's git home (the hooks' HOME) is ``home/`` beside ``repo_root``, as Gitea lays
out its data folder, else the home of ``repo_root``'s owner. Run as root, it can look at all of them.
"""

from __future__ import annotations

import datetime
import grp
import json
import os
import pwd
import re
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

from ..config import cache
from ..config.load import load
from ..config.model import Config
from ..errors import ConfigError, HookError, PublishError
from ..redact import clean, escape
from ..spool.layout import HOOK_FOLDERS, WORKER_FOLDERS

OK, WARN, FAIL = "ok", "warn", "fail"
SYSTEMD = "/run/systemd/system"  # present when systemd manages this host (sd_booted)
LISTED = 5  # repositories named in one line, then "and N more"
ZERO = "0" * 40  # a commit no repository holds: the probes below must never touch a real one
_REPO_WRITE = "repo.write"  # the fine-grained permission that writes a namespace's repositories
_TOKEN_HINT = "write a Gitea access token with the read:repository and write:repository scopes into it"


class Finding(NamedTuple):
    """One line of the report: which check, its status, what it found, and how to fix it (None when ok)."""

    check: str
    status: str
    detail: str
    fix: str | None = None


def line(finding: Finding) -> str:
    """``fail spool: ... (fix)``, escaped: paths and answers may hold anything."""
    fix = f" ({finding.fix})" if finding.fix else ""
    return escape(f"{finding.status:<4} {finding.check}: {finding.detail}{fix}")


class Site(NamedTuple):
    """Who is who on this server, as the files say (see the module docstring)."""

    worker: int  # the worker's uid
    worker_groups: tuple[int, ...]  # its primary group first
    worker_home: str | None
    hook: int | None  # Gitea's uid
    hook_groups: tuple[int, ...]
    git_home: str | None  # Gitea's git home: the hooks' HOME


def _name(uid: int | None) -> str:
    from ..worker.preflight import _name as name

    return "nobody known" if uid is None else name(uid)


def _account(uid: int) -> pwd.struct_passwd | None:
    try:
        return pwd.getpwuid(uid)
    except KeyError:
        return None


def _groups(uid: int, fallback: int | None) -> tuple[int, ...]:
    entry = _account(uid)
    if entry is None:
        return () if fallback is None else (fallback,)
    return (entry.pw_gid, *(g for g in os.getgrouplist(entry.pw_name, entry.pw_gid) if g != entry.pw_gid))


def _lstat(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except OSError:
        return None


def git_home(repo_root: str) -> str | None:
    """Gitea's git home: ``<APP_DATA_PATH>/home`` beside ``<APP_DATA_PATH>/gitea-repositories``, else the home of
    ``repo_root``'s owner in the password database."""
    beside = os.path.join(os.path.dirname(os.path.normpath(repo_root)), "home")
    if os.path.isdir(beside):
        return beside
    st = _lstat(repo_root)
    entry = _account(st.st_uid) if st is not None else None
    return entry.pw_dir if entry is not None else None


def site(config: Config) -> Site:
    """The worker's user owns the spool (else a token file); Gitea's user owns ``repo_root``."""
    spool = _lstat(config.spool)
    owners = [st for st in (spool, *(_lstat(p) for p in config.hub_tokens.values())) if st is not None]
    worker = next((st.st_uid for st in owners if st.st_uid), os.geteuid())
    entry = _account(worker)
    home = os.path.expanduser("~") if worker == os.geteuid() else entry.pw_dir if entry is not None else None
    root = _lstat(config.repo_root)
    hook = root.st_uid if root is not None else None
    return Site(worker, _groups(worker, spool.st_gid if spool is not None else None), home, hook,
                () if hook is None else _groups(hook, root.st_gid if root is not None else None),
                git_home(config.repo_root))


def _may(st: os.stat_result, uid: int | None, gids: tuple[int, ...], bits: int) -> bool:
    """Whether ``uid`` (in ``gids``) has ``bits`` (of 0o7: read, write, search) on a file, by its mode alone."""
    if uid == 0:
        return True
    shift = 6 if st.st_uid == uid else 3 if st.st_gid in gids else 0
    return (stat.S_IMODE(st.st_mode) >> shift) & bits == bits


def _listed(items: list[str], sep: str = ", ") -> str:
    more = f"{sep}and {len(items) - LISTED} more" if len(items) > LISTED else ""
    return sep.join(items[:LISTED]) + more


def _when(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


# --- the config ---------------------------------------------------------------------------------------------------

def _repo_root_of(path: str) -> str | None:
    """``gitea.repo_root`` as a file that does not load may still name it, for the hooks' cache: from the YAML when
    it parses, else from the first ``repo_root:`` line."""
    import re

    import yaml

    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read(1 << 20)
    except OSError:
        return None
    try:
        root = yaml.safe_load(text)["gitea"]["repo_root"]
    except (yaml.YAMLError, KeyError, TypeError):
        found = re.search(r"^[ \t]+repo_root:[ \t]*['\"]?(/[^'\"#\s]*)", text, re.MULTILINE)
        root = found.group(1) if found else None
    return root if isinstance(root, str) and os.path.isabs(root) else None


def broken_since(path: str) -> str:
    """"; the hooks have found it broken since ..." for the config ``path`` that does not load, or "" when the
    hooks have not (yet) met it broken: for doctor and status."""
    root = _repo_root_of(path)
    home = git_home(root) if root else None
    since = cache.broken_since(path, os.path.join(home, ".cache")) if home else None
    if since is None:
        return ""
    return (f"; the hooks have found it broken since {_when(since)}, and refuse pushes to the refs that published "
            "under the last valid config")


def _broken(path: str, error: ConfigError) -> Finding:
    detail = error.message + broken_since(path)
    return Finding("config", FAIL, detail + "; the other checks need a config that loads", error.hint)


# --- owners and modes ---------------------------------------------------------------------------------------------

def _refusals(checks: Iterable[tuple[str, Callable[[], None], str]]) -> list[Finding]:
    """Each start-up check of the worker as one line: ``ok`` with its detail, or its refusal and fix."""
    found = []
    for check, run, detail in checks:
        try:
            run()
        except HookError as exc:
            found.append(Finding(check, FAIL, exc.message, exc.hint or None))
        except OSError as exc:
            found.append(Finding(check, FAIL, f"{exc.filename}: {exc.strerror}", "check the path in the config"))
        else:
            found.append(Finding(check, OK, detail))
    return found


def _bind(fn: Callable[..., None], *args: Any) -> Callable[[], None]:
    return lambda: fn(*args)


def modes(config: Config, who: Site) -> list[Finding]:
    """The worker's start-up checks (:mod:`..worker.preflight`), for the worker's user, then what they leave out."""
    from ..worker import preflight

    me, worker = who.worker, _name(who.worker)
    owners, holders = frozenset({0, me}), frozenset({me})
    checks: list[tuple[str, Callable[[], None], str]] = [
        ("config file", lambda: preflight._config_file(config.path, owners),
         f"{config.path} and the folders above it: only root or {worker} can change them")]
    secrets = [(f"hub.tokens.{ns}", f"the Hub token file named by hub.tokens.{ns}", path)
               for ns, path in sorted(config.hub_tokens.items())]
    if config.gitea_token_file:
        secrets.append(("gitea.token_file", "the Gitea token file named by gitea.token_file", config.gitea_token_file))
    for key, role, path in secrets:
        checks.append((f"token file {key}", _bind(preflight._secret, path, role, owners, holders, me),
                       f"{path}: only {worker} can read it"))
    found = _refusals(checks)
    home = who.worker_home
    if home is None:
        found.append(Finding("worker home", WARN, f"not checked: uid {me} has no entry in the password database",
                             "create the worker's user as README.md says"))
    elif not os.path.isdir(home):
        found.append(Finding("worker home", WARN, f"{home}, {worker}'s home, does not exist",
                             f"install -d -o {worker} -m 700 {home}"))
    else:
        found += _refusals([("worker home", lambda: preflight._home(home, owners, holders, me),
                             f"{home}: {worker}'s, writable by no one else")])
    found += _refusals([("spool", lambda: preflight.check_spool(config.spool, uid=me),
                         f"{config.spool}: {worker}'s; Gitea's user may write only {', '.join(HOOK_FOLDERS)}")])
    if found[-1].status == OK:
        found[-1:] = _spool_layout(config.spool, who) or found[-1:]
    return found + [_hook_cache(who), _log_folder(config, who)]


def _spool_layout(spool: str, who: Site) -> list[Finding]:
    """What the start-up checks let pass: a spool or folders still to be made, hook folders the hooks cannot write."""
    if _lstat(spool) is None:
        return [Finding("spool", FAIL, f"{spool} does not exist, so no push is queued",
                        f"install -d -o {_name(who.worker)} -g {_group(who.hook_groups)} -m 2750 {spool}, then "
                        "gitea-hf-hook sync")]
    missing = [name for name in HOOK_FOLDERS + WORKER_FOLDERS if _lstat(os.path.join(spool, name)) is None]
    if missing:
        return [Finding("spool", FAIL, f"{spool} lacks {', '.join(missing)}",
                        "gitea-hf-hook sync, as root, makes them")]
    for name in HOOK_FOLDERS:
        folder = os.path.join(spool, name)
        st = os.lstat(folder)
        if not _may(st, who.hook, who.hook_groups, 0o3):
            return [Finding("spool", FAIL, f"Gitea's user {_name(who.hook)} cannot write {folder}, so pushes are "
                            "not queued", f"chgrp {_group(who.hook_groups)} {folder} && chmod 2770 {folder}")]
    return []


def _group(gids: tuple[int, ...]) -> str:
    if not gids:
        return "GITEA-GROUP"
    try:
        return grp.getgrgid(gids[0]).gr_name
    except KeyError:
        return str(gids[0])


def _hook_cache(who: Site) -> Finding:
    """The hooks trust their validated-config cache: only Gitea's user may write there."""
    from ..worker import preflight

    if who.git_home is None or who.hook is None:
        return Finding("hook cache", WARN, "not checked: Gitea's git home was not found (home/ beside "
                       "gitea.repo_root, or the home of its owner)", "check gitea.repo_root in the config")
    folder = os.path.join(who.git_home, ".cache", "gitea-hf-hook")
    hook, owner = _name(who.hook), f"chown -R {_name(who.hook)} {folder} && chmod -R go-w {folder}"
    try:
        _, st = preflight._walk(folder, frozenset({0, who.hook}), "the hooks' config cache", ConfigError)
    except FileNotFoundError:
        return Finding("hook cache", OK, f"{folder}: not made yet (the first push makes it)")
    except HookError as exc:
        return Finding("hook cache", FAIL, exc.message, exc.hint)
    except OSError as exc:
        return Finding("hook cache", FAIL, f"{folder}: {exc.strerror}", "check gitea.repo_root in the config")
    if not stat.S_ISDIR(st.st_mode):
        return Finding("hook cache", FAIL, f"{folder} is not a folder", f"rm {folder}; the next push makes it")
    found = [(folder, st)]
    for name in sorted(os.listdir(folder)):
        try:
            found.append((os.path.join(folder, name), os.lstat(os.path.join(folder, name))))
        except FileNotFoundError:
            pass  # a push renamed its temporary file meanwhile
    for path, info in found:
        if info.st_uid != who.hook or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            return Finding("hook cache", FAIL, f"{path} could be changed by others than Gitea's user {hook} "
                           f"(owner {_name(info.st_uid)}, mode {stat.S_IMODE(info.st_mode):04o}), and the hooks "
                           "trust the config cached there", owner)
    return Finding("hook cache", OK, f"{folder}: {hook}'s alone")


def _log_folder(config: Config, who: Site) -> Finding:
    folder = os.path.dirname(config.hook_log)
    st = _lstat(folder)
    if st is None or not stat.S_ISDIR(st.st_mode):
        return Finding("log folder", WARN, f"{folder} is not a folder, so the hooks cannot log their failures",
                       f"install -d -o {_name(who.hook)} -m 0750 {folder}")
    if st.st_mode & stat.S_IWOTH and not st.st_mode & stat.S_ISVTX:
        return Finding("log folder", FAIL, f"{folder} is writable by others (mode {stat.S_IMODE(st.st_mode):04o})",
                       f"chmod o-w {folder}")
    if not _may(st, who.hook, who.hook_groups, 0o3):
        return Finding("log folder", WARN, f"Gitea's user {_name(who.hook)} cannot write {folder}",
                       f"chown {_name(who.hook)} {folder}")
    return Finding("log folder", OK, f"{folder}: the hooks log there")


# --- the LFS store, as the worker reads it --------------------------------------------------------------------------

def lfs_problem(root: str) -> str | None:
    """Why this process cannot read the LFS store at ``root`` (a folder it cannot list, an object it cannot open),
    or None. A few objects stand for all: Gitea makes every one with the same modes."""
    # Gitea's user owns the store: no link in it is followed, and only a regular file is opened.
    folder_flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
    path = root
    try:
        top_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            for first in sorted(n for n in os.listdir(top_fd) if len(n) == 2)[:2]:
                path = os.path.join(root, first)
                first_fd = os.open(first, folder_flags, dir_fd=top_fd)
                try:
                    for second in sorted(n for n in os.listdir(first_fd) if len(n) == 2)[:1]:
                        path = os.path.join(root, first, second)
                        second_fd = os.open(second, folder_flags, dir_fd=first_fd)
                        try:
                            for name in sorted(os.listdir(second_fd))[:1]:
                                path = os.path.join(root, first, second, name)
                                fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY,
                                             dir_fd=second_fd)
                                try:
                                    if not stat.S_ISREG(os.fstat(fd).st_mode):
                                        return f"{path}: not a regular file"
                                finally:
                                    os.close(fd)
                        finally:
                            os.close(second_fd)
                finally:
                    os.close(first_fd)
        finally:
            os.close(top_fd)
    except OSError as exc:
        return f"{path}: {exc.strerror}"
    return None


def lfs_store(config: Config, who: Site) -> Finding:
    root, worker = config.lfs_root, _name(who.worker)
    if not os.path.isdir(root):
        return Finding("lfs store", WARN, f"{root} is not a folder", "set gitea.lfs_root to Gitea's [lfs] PATH "
                       "(by default <APP_DATA_PATH>/lfs)")
    if who.worker == os.geteuid():
        problem = lfs_problem(root)
    elif os.geteuid() == 0:
        code = ("import json, sys\nfrom gitea_hf_hook.admin.doctor import lfs_problem\n"
                "print(json.dumps(lfs_problem(sys.argv[1])))")
        try:
            ran = subprocess.run([sys.executable, "-I", "-c", code, root], user=who.worker,
                                 group=who.worker_groups[0] if who.worker_groups else None,
                                 extra_groups=list(who.worker_groups), capture_output=True, text=True, timeout=60,
                                 cwd="/")
            problem = json.loads(ran.stdout)
        except (OSError, ValueError, subprocess.SubprocessError):
            return Finding("lfs store", WARN, f"not checked: {sys.executable} did not run as {worker}",
                           f"let {worker} run the interpreter (README.md: install)")
    else:
        return Finding("lfs store", WARN, f"not checked: run doctor as root, or as {worker}",
                       "sudo gitea-hf-hook doctor")
    if problem is not None:
        return Finding("lfs store", FAIL, f"{worker} cannot read the LFS store: {problem}",
                       f"give Gitea's group read access to {root} (objects 0640, folders 0750), with {worker} in it")
    return Finding("lfs store", OK, f"{root}: {worker} can read it")


# --- the hooks, in every repository and in the template ------------------------------------------------------------

def hooks(config: Config) -> list[Finding]:
    """What ``gitea-hf-hook sync`` would do (:func:`.install.sync_plan`), as sync words it: one line per kind."""
    from .install import LINK_HINT, sync_plan

    try:
        plan = sync_plan(config)
    except HookError as exc:
        return [Finding("hooks", FAIL, exc.message, exc.hint or None)]
    changed = sum(outcome in ("installed", "repaired") for outcome, _ in plan)
    of = "the one repository" if len(plan) == 1 else f"{changed} of {len(plan)} repositories"
    kinds = (  # (outcomes, status, what, fix): each line of sync's ends with the fix, which is said once here
        (("installed", "repaired"), FAIL, f"gitea-hf-hook sync would change {of}", "run gitea-hf-hook sync, as root"),
        (("refused",), FAIL, "gitea-hf-hook sync would refuse", "move it aside, then run gitea-hf-hook sync again"),
        (("skipped",), WARN, "left without our hooks", LINK_HINT),
        (("warning",), WARN, "our hooks would not run", "let Gitea resynchronise its hooks"))
    # Each line of sync's in repository order, under its outcome, or "warning" for a note on a repository.
    notes = [("warning", text.removeprefix("warning ")) if text.startswith("warning ") else (outcome, text)
             for outcome, lines in plan for text in lines]
    found = []
    for outcomes, status, what, fix in kinds:
        said = [text.removesuffix(f" ({fix})") for kind, text in notes if kind in outcomes]
        if said:
            found.append(Finding("hooks", status, f"{what}: {_listed(said, '; ')}", fix))
    every = "the one repository holds" if len(plan) == 1 else f"all {len(plan)} repositories hold"
    return found or [Finding("hooks", OK, f"{every} our hooks as this installation writes them")]


def _template_problem(config: Config, folder: str) -> str | None:
    """What is wrong with ``folder`` as our template, else None: it must hold both hooks as ``install --template``
    writes them now. The folder comes from Gitea's git config: it is opened, never written."""
    from . import install

    for hook in install.HOOKS:
        where = os.path.join(folder, "hooks", f"{hook}.d")
        shown = f"hooks/{hook}.d/{install.HOOK_FILE}"
        try:
            fd = os.open(where, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            return f"does not hold {shown}"
        try:
            text = install.render(hook, sys.executable, os.path.abspath(config.path))
            reasons = install._repairs(fd, text, os.path.join(where, install.HOOK_FILE))
        except install.Foreign:
            return f"holds a {shown} gitea-hf-hook did not write"
        finally:
            os.close(fd)
        if reasons == [install.MISSING]:
            return f"does not hold {shown}"
        if reasons:
            return f"holds a {shown} that differs from what this installation writes: {'; '.join(reasons)}"
    return None


def template(config: Config, who: Site) -> Finding:
    """``init.templateDir`` in Gitea's git home points at a folder holding our hooks."""
    from ..gitea import isolation

    lines = "[git.config] / init.templateDir = DIR"
    wire = (f"write a template with gitea-hf-hook install --template DIR, then add to Gitea's app.ini the lines "
            f"{lines} and restart Gitea")
    if who.git_home is None:
        return Finding("template", WARN, "not checked: Gitea's git home was not found", wire)
    gitconfig = os.path.join(who.git_home, ".gitconfig")
    env = {**isolation.environment(os.environ), "HOME": who.git_home}
    try:
        read = subprocess.run(["git", "config", "--file", gitconfig, "--type=path", "--get", "init.templateDir"],
                              capture_output=True, text=True, env=env, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        return Finding("template", WARN, f"not checked: git did not run ({exc})", "install git")
    folder = read.stdout.strip()
    if read.returncode != 0 or not folder:
        return Finding("template", WARN, f"init.templateDir is not set in {gitconfig}, so a repository made from now "
                       "on has our hooks only once gitea-hf-hook sync runs", wire)
    problem = _template_problem(config, folder)
    if problem is not None:
        return Finding("template", FAIL, f"init.templateDir in {gitconfig} names {folder}, which {problem}",
                       f"gitea-hf-hook install --template {folder}")
    return Finding("template", OK, f"init.templateDir = {folder}: our hooks, as this installation writes them")


# --- the Hub tokens ------------------------------------------------------------------------------------------------

def _repositories(config: Config) -> list[tuple[str, str]]:
    """``(owner, name)`` of every repository under ``repo_root`` that a rule publishes."""
    from .install import every_repository

    try:
        paths = every_repository(config)
    except (HookError, OSError):
        return []  # the hooks line says why
    found = []
    for path in paths:
        owner, _, name = os.path.relpath(path, config.repo_root).removesuffix(".git").partition(os.sep)
        rule = config.rule_for(f"{owner}/{name}")
        if rule is not None and (rule.branches or rule.tags):
            found.append((owner, name))
    return found


def namespaces(config: Config) -> tuple[dict[str, set[str]], dict[str, list[str]]]:
    """The Hub namespaces each ``hub.tokens`` key must write (its own, and those the repositories publish to with
    it), and the namespaces the repositories publish to with no token at all, with those repositories."""
    needed = {key: set() if key == "*" else {key} for key in config.hub_tokens}
    orphans: dict[str, list[str]] = {}
    for owner, name in _repositories(config):
        rule = config.rule_for(f"{owner}/{name}")
        assert rule is not None
        namespace = rule.hub_repo_for(owner, name).split("/", 1)[0]
        key = namespace if namespace in config.hub_tokens else "*"
        if key in needed:
            needed[key].add(namespace)
        else:
            orphans.setdefault(namespace, []).append(f"{owner}/{name}")
    return needed, orphans


def _scoped(access: dict[str, Any]) -> list[tuple[str, str, list[str]]]:
    """``(entity type, name, permissions)`` of a fine-grained token's ``scoped`` entries."""
    fine = access.get("fineGrained")
    entries = fine.get("scoped") if isinstance(fine, dict) else None
    found = []
    for entry in entries if isinstance(entries, list) else []:
        entity = entry.get("entity") if isinstance(entry, dict) else None
        permissions = entry.get("permissions") if isinstance(entry, dict) else None
        if isinstance(entity, dict) and isinstance(entity.get("name"), str) and isinstance(permissions, list):
            found.append((str(entity.get("type")), entity["name"], [str(p) for p in permissions]))
    return found


def judge(check: str, info: dict[str, Any], needed: set[str], path: str, config: Config,
          now: float) -> list[Finding]:
    """What whoami-v2 says of one token: whether it can write ``needed``, whether it can do more, and its age."""
    user = str(info.get("name", "?"))
    auth = info.get("auth")
    access = auth.get("accessToken") if isinstance(auth, dict) else None
    access = access if isinstance(access, dict) else {}
    role, wanted = access.get("role"), ", ".join(sorted(needed)) or "nothing yet"
    narrow = f"put a fine-grained token of {user} that can write only {wanted} in {path}"
    found, kind = [], f"{role} token" if role in ("read", "write") else "fine-grained token"
    if role == "write":
        orgs = info.get("orgs")
        orgs = orgs if isinstance(orgs, list) else []
        may = {user} | {o["name"] for o in orgs if isinstance(o, dict) and isinstance(o.get("name"), str)
                        and o.get("roleInOrg") in ("admin", "write", "contributor")}
        cannot = sorted(needed - may)
        if cannot:
            found.append(Finding(check, FAIL, f"a write token of {user}, who may not write {', '.join(cannot)}",
                                 narrow))
        elif needed:
            found.append(Finding(check, WARN, f"broader than it needs: a classic write token of {user} writes every "
                                 f"repository of {', '.join(sorted(may))}, not only {wanted}", narrow))
    elif role == "fineGrained":
        scoped = _scoped(access)
        spaces = {name for kind_, name, perms in scoped if kind_ in ("user", "org") and _REPO_WRITE in perms}
        repos = sorted(name for kind_, name, perms in scoped if kind_ not in ("user", "org") and _REPO_WRITE in perms)
        for namespace in sorted(needed - spaces):
            some = [r for r in repos if r.split("/", 1)[0] == namespace]
            if some:
                found.append(Finding(check, WARN, f"it writes only {', '.join(some)} of {namespace}, so publishing "
                                     f"to, or creating, another repository of {namespace} fails",
                                     f"give it write access to all of {namespace} ({_REPO_WRITE})"))
            else:
                found.append(Finding(check, FAIL, f"it cannot write {namespace} (no {_REPO_WRITE} there)", narrow))
        others = sorted({name.split("/", 1)[0] for _, name, _ in scoped} - needed)
        if others and needed:
            found.append(Finding(check, WARN, f"broader than it needs: it also covers {', '.join(others)}", narrow))
    elif role == "read":
        found.append(Finding(check, FAIL if needed else WARN, "a read token: the worker cannot publish with it"
                             + (f" to {wanted}" if needed else ""), narrow))
    else:
        found.append(Finding(check, WARN, f"the Hub does not say what it may do (role {role!r})", narrow))
    made = _created(access.get("createdAt"))
    if made is not None and now - made > config.hub_rotate_after_days * 86400:
        found.append(Finding(check, WARN, f"made {_when(made)[:10]}, {int((now - made) // 86400)} days ago, which is "
                             f"more than hub.rotate_after_days ({config.hub_rotate_after_days:g})",
                             f"make a new token, write it into {path} (the worker reads it at each job), then revoke "
                             "the old one"))
    if not found:
        age = f", made {_when(made)[:10]}" if made is not None else ""
        writes = f"can write {wanted}" if needed else "no repository publishes with it yet"
        found.append(Finding(check, OK, f"{user}'s {kind}{age}: {writes}"))
    return found


def _created(value: Any) -> float | None:
    try:
        return datetime.datetime.fromisoformat(str(value)).timestamp() if value else None
    except ValueError:
        return None


def hub_tokens(config: Config, now: float) -> list[Finding]:
    """Each ``hub.tokens`` file: whoami-v2 answers for its token, which can write its namespaces, and no more."""
    from ..worker import hub_client, token_file

    needed, orphans = namespaces(config)
    found = [Finding("hub tokens", FAIL, f"no token for {namespace}, where {_listed(repos)} publish"
                     f"{'es' if len(repos) == 1 else ''}",
                     f"add hub.tokens.{namespace}: a file holding a token that can write {namespace}")
             for namespace, repos in sorted(orphans.items())]
    hub_client.prepare(config)
    for key, path in sorted(config.hub_tokens.items()):
        check = f"hub token {key}"
        try:
            token = token_file.read(path, f"hub.tokens.{key}", kind="Hub token file",
                                    hint="write a Hub token with write access into it")
            with hub_client.session(min(30.0, config.worker.timeout_seconds)):
                info = hub_client.make_api(config.hub_endpoint, token).whoami()
        except PublishError as exc:
            found.append(Finding(check, FAIL, exc.message, exc.hint or None))
            continue
        except Exception as exc:  # noqa: BLE001 - a Hub failure is one line; anything else is raised again
            error = hub_client.as_publish_error(exc, "asking the Hub whose token it is (whoami-v2)", token=token,
                                                token_hint=path)
            if error is None:
                raise
            hint = "check hub.endpoint, and run doctor again once the Hub answers" if error.retryable else error.hint
            found.append(Finding(check, FAIL, error.message, hint or None))
            continue
        found += judge(check, info if isinstance(info, dict) else {}, needed[key], path, config, now)
    return found


# --- the Gitea token -------------------------------------------------------------------------------------------------

class _Unanswered(Exception):
    """Gitea could not be asked."""


def _ask(config: Config, method: str, path: str, token: str) -> tuple[int, str]:
    """Gitea's status and APIError message for one request (redirects never followed: they would carry the
    token). Raises _Unanswered. The POST carries a body Gitea's binding refuses, so no handler ever runs."""
    import http.client
    import urllib.error
    import urllib.request

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    request = urllib.request.Request(f"{config.gitea_url}{path}", method=method,
                                     data=b"[]" if method == "POST" else None, headers={
                                         "Accept": "application/json", "Content-Type": "application/json",
                                         "Authorization": f"token {token}", "User-Agent": "gitea-hf-hook"})
    try:
        with urllib.request.build_opener(NoRedirect()).open(request, timeout=10) as answer:
            return answer.status, ""
    except urllib.error.HTTPError as exc:
        try:
            body = json.loads(exc.read(64 << 10))
        except (OSError, ValueError):
            body = None
        message = body.get("message") if isinstance(body, dict) else None
        return exc.code, clean(message.replace(token, "[REDACTED]"), 300) if isinstance(message, str) else ""
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        said = reason.strerror if isinstance(reason, OSError) and reason.strerror else str(reason) or type(exc).__name__
        raise _Unanswered(clean(said.replace(token, "[REDACTED]"), 200)) from None


# The names Gitea gives owners and repositories: anything else under repo_root was put there by someone else.
_GITEA_NAME = re.compile(r"[-.\w]+")


def gitea_token(config: Config) -> list[Finding]:
    """``gitea.url`` answers, and the token has ``read:repository`` (LFS) and, for statuses, ``write:repository``,
    and its user may read (write) every repository that publishes. The probes change nothing: Gitea's scope check
    runs before any handler, a listing of a commit no repository holds reads nothing, and the POST's body fails
    its binding (422) before the handler that would add a status."""
    from ..worker import token_file

    check, url, path = "gitea token", config.gitea_url, config.gitea_token_file
    if not (url and path):
        if not config.gitea_verify_lfs:
            return [Finding(check, OK, "not used: gitea.verify_lfs is off, and no commit status is posted")]
        return [Finding(check, WARN, "gitea.url and gitea.token_file are not both set, so the worker refuses to "
                        "publish Git LFS content and posts no commit status",
                        "set both; the token needs read:repository and write:repository")]
    try:
        token = token_file.read(path, "gitea.token_file", kind="Gitea token file", hint=_TOKEN_HINT)
    except PublishError as exc:
        return [Finding(check, FAIL, exc.message, exc.hint or None)]
    repos = [f"{owner}/{name}" for owner, name in _repositories(config)]
    if not repos:
        return [Finding(check, OK, "not probed: no repository under gitea.repo_root publishes yet")]
    write = config.gitea_statuses
    unseen, unwritable = [], []
    fix = f"{_TOKEN_HINT}: {path}"
    from urllib.parse import quote

    for repo in repos:
        owner, _, name = repo.partition("/")
        if not all(_GITEA_NAME.fullmatch(part) and part not in (".", "..") for part in (owner, name)):
            continue  # a folder Gitea cannot have made: never a path the token is sent to
        base = f"/api/v1/repos/{quote(owner, safe='')}/{quote(name, safe='')}/statuses/{ZERO}"
        try:
            for method in ("GET", "POST") if write else ("GET",):
                status, said = _ask(config, method, base, token)
                scope = "read:repository" if method == "GET" else "write:repository"
                if status == 403 and "required scope" in said:
                    return [Finding(check, FAIL, f"the token in {path} lacks {scope} (Gitea answered 403: {said})",
                                    fix)]
                if status == 404:
                    unseen.append(repo)
                    break
                if status == 403 and method == "POST":
                    unwritable.append(repo)
                elif status not in ((200,) if method == "GET" else (422,)):
                    return [Finding(check, FAIL, f"{url} answered {method} {base} with {status}"
                                    f"{f': {said}' if said else ''}", "set gitea.url to Gitea's ROOT_URL")]
        except _Unanswered as exc:
            return [Finding(check, FAIL, f"gitea.url {url} does not answer: {exc}",
                            "set gitea.url to Gitea's ROOT_URL, and check that Gitea is running")]
    found = []
    if unseen:
        found.append(Finding(check, FAIL, f"Gitea shows the token's user none of {_listed(unseen)} (or does not "
                             "know the token), so their Git LFS content cannot be published",
                             f"give that user read access to them, or {fix}"))
    if unwritable:
        found.append(Finding(check, FAIL, f"the token's user may not write {_listed(unwritable)}, so no commit "
                             "status is posted there", "give it write access to their code, or set gitea.statuses: "
                             "false"))
    scopes = "read:repository and write:repository" if write else "read:repository (gitea.statuses is off)"
    every = "the one publishing repository" if len(repos) == 1 else f"all {len(repos)} publishing repositories"
    return found or [Finding(check, OK, f"{url} answers; the token has {scopes}, for {every}")]


# --- the worker's service --------------------------------------------------------------------------------------------

def service() -> Finding:
    """``systemctl is-active`` of the unit install.sh writes, when systemd runs this host."""
    from .production.units import WORKER

    if not os.path.isdir(SYSTEMD):
        return Finding("worker service", OK, f"not checked: systemd does not run this host ({SYSTEMD} is missing); "
                       "make sure the worker runs under its service manager")
    try:
        state = subprocess.run(["systemctl", "is-active", WORKER], capture_output=True, text=True,
                               timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        return Finding("worker service", WARN, f"not checked: systemctl did not run ({exc})", "install systemd")
    if state == "active":
        return Finding("worker service", OK, f"{WORKER} is active")
    return Finding("worker service", FAIL, f"{WORKER} is {state or 'unknown'}, so nothing is published",
                   f"systemctl enable --now {WORKER}; journalctl -u {WORKER} says why it stopped")


# --- all of it -----------------------------------------------------------------------------------------------------

def run(path: str, *, now: float | None = None) -> list[Finding]:
    """Every check of the installation whose config is ``path``, in the order they are printed."""
    now = time.time() if now is None else now
    try:
        config = load(path, cached=False)  # as the worker reads it: never the cache
    except ConfigError as exc:
        return [_broken(path, exc)]
    count = len(config.repos)
    who = site(config)
    found = [Finding("config", OK, f"{path} loads: {count} rule{'' if count == 1 else 's'}")]
    found += modes(config, who)
    found.append(lfs_store(config, who))
    found += hooks(config)
    found.append(template(config, who))
    found += hub_tokens(config, now)
    found += gitea_token(config)
    found.append(service())
    return found
