"""The systemd units: the worker's service, and a timer with its one-shot service for ``gitea-hf-hook sync``.

They are templates in the checkout's ``systemd/`` folder, filled with the prefix, the config, the users and the
folders each unit reads or writes. The sandbox makes the whole system read-only to the worker but for the spool,
the state folder and its home; the repositories and the LFS store are listed read-only as well, so that they stay
so even below a folder made writable.

Home folders (``/home``, ``/root``, ``/run/user``) are hidden from both services. When something a service needs
lives there (an interpreter built in root's home, repositories under Gitea's user's home), they are replaced by an
empty folder instead, with only those paths mounted into it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import NamedTuple

from ...errors import HookError

WORKER = "gitea-hf-hook-worker.service"
SYNC = "gitea-hf-hook-sync.service"
TIMER = "gitea-hf-hook-sync.timer"
NAMES = (WORKER, SYNC, TIMER)
HOMES = ("/home", "/root", "/run/user")
# Characters a unit would read as something else: separators in path lists, quotes, escapes and specifiers.
_SPECIAL = set(' \t\n"\'\\%;')


class Paths(NamedTuple):
    """What the units name, all absolute."""

    venv: str
    config: str
    worker_user: str
    worker_home: str
    hook_user: str
    spool: str
    state_dir: str  # the audit log's folder
    repo_root: str
    lfs_root: str
    interpreter: tuple[str, ...]  # the folders of the interpreter the environment links to
    secrets: tuple[str, ...]  # the token files the config names


def templates_dir() -> str:
    here = os.path.dirname(os.path.abspath(__file__))
    return os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(here))), "systemd")


def _plain(path: str) -> str:
    if not os.path.isabs(path) or _SPECIAL & set(path) or not path.isprintable():
        raise HookError(f"{path!r} cannot be named plainly in a systemd unit (it is relative, or holds a space, "
                        "a quote, a backslash, a % or a control character)",
                        "move it to a path without them, and name that in the config or on the command line")
    return os.path.normpath(path)


def _under_home(path: str) -> bool:
    real = os.path.realpath(path)
    return any(real == home or real.startswith(home + "/") for home in HOMES)


def _outermost(paths: Iterable[str]) -> list[str]:
    """``paths`` without those inside another of them, in order."""
    unique = list(dict.fromkeys(paths))
    return [p for p in unique if not any(p != q and p.startswith(q.rstrip("/") + "/") for q in unique)]


def protect_home(reads: Iterable[str], writes: Iterable[str]) -> str:
    """``ProtectHome=yes``, or, when a needed path lies in a home folder, an empty folder over the homes with
    that path mounted in (``-``: a path that does not exist yet is skipped, not an error)."""
    bind_ro = _outermost(os.path.realpath(p) for p in reads if _under_home(p))
    bind_rw = _outermost(os.path.realpath(p) for p in writes if _under_home(p))
    if not bind_ro and not bind_rw:
        return "ProtectHome=yes"
    lines = ["ProtectHome=tmpfs"]
    if bind_rw:
        lines.append("BindPaths=" + " ".join("-" + p for p in bind_rw))
    if bind_ro:
        lines.append("BindReadOnlyPaths=" + " ".join("-" + p for p in bind_ro))
    return "\n".join(lines)


def render(paths: Paths) -> dict[str, str]:
    """Each unit's text, by file name."""
    for value in (paths.venv, paths.config, paths.worker_home, paths.spool, paths.state_dir, paths.repo_root,
                  paths.lfs_root, *paths.interpreter, *paths.secrets):
        _plain(value)
    worker_writes = _outermost([paths.spool, paths.state_dir, paths.worker_home])
    code = [paths.config, paths.venv, *paths.interpreter]
    values = {
        "@VENV@": paths.venv, "@CONFIG@": paths.config, "@WORKER_USER@": paths.worker_user,
        "@WORKER_HOME@": paths.worker_home, "@HOOK_USER@": paths.hook_user,
        # "-": a folder that is not there yet (no audit log, no LFS store) is skipped instead of failing the start.
        "@WORKER_WRITES@": " ".join(w if w in (paths.spool, paths.worker_home) else "-" + w for w in worker_writes),
        "@WORKER_READS@": f"{paths.repo_root} -{paths.lfs_root}",
        "@SYNC_WRITES@": paths.repo_root,
    }
    blocks = {WORKER: protect_home([*code, paths.repo_root, paths.lfs_root, *paths.secrets], worker_writes),
              SYNC: protect_home(code, [paths.repo_root]), TIMER: ""}
    texts = {}
    for name in NAMES:
        with open(os.path.join(templates_dir(), name), encoding="utf-8") as f:
            text = f.read().replace("@PROTECT_HOME@", blocks[name])
        for key, value in values.items():
            text = text.replace(key, value)
        texts[name] = text
    return texts
