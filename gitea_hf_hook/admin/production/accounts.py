"""The two Unix users: looking them up, creating the worker's, running a command as either, and telling which
folder one of them may not enter."""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import stat
import subprocess
from collections.abc import Sequence
from typing import NamedTuple

from ...errors import HookError

# What a service manager gives a service; none of root's variables reach the other user.
SERVICE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class Account(NamedTuple):
    """A Unix user as the kernel checks it: uid, primary gid and every group it is in."""

    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str

    @property
    def who(self) -> str:
        return f"{self.name} (uid {self.uid})"


def lookup(name: str) -> Account | None:
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return None
    groups = tuple(sorted(set(os.getgrouplist(name, entry.pw_gid))))
    return Account(name, entry.pw_uid, entry.pw_gid, groups, entry.pw_dir)


def group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def hook_account(name: str) -> Account:
    """Gitea's user, which must exist: the installer never creates it."""
    account = lookup(name)
    if account is None:
        raise HookError(f"the hook user {name} does not exist", "pass --hook-user with the user Gitea runs as "
                        "(RUN_USER in app.ini)")
    if account.uid == 0:
        raise HookError("the hook user is root", "pass --hook-user with the user Gitea runs as (RUN_USER in app.ini)")
    return account


def would_be(name: str, hook: Account, home: str) -> Account:
    """The worker's user as the installer would create it, for checks made before anything is created: a uid no
    account has, in Gitea's group."""
    taken = {entry.pw_uid for entry in pwd.getpwall()}
    uid = next(u for u in range(999, 100, -1) if u not in taken)
    return Account(name, uid, hook.gid, (hook.gid,), home)


def create_worker(name: str, hook: Account, home: str) -> Account:
    """``useradd --system`` with Gitea's group as its primary group (it reads the repositories, the LFS store and
    the spool through it), no login shell, and ``home`` as its home, which the caller makes."""
    if shutil.which("useradd") is None:
        raise HookError(f"the worker's user {name} does not exist and useradd is not installed",
                        f"create {name} by hand, in group {group_name(hook.gid)}, then run install.sh again")
    shell = "/usr/sbin/nologin" if os.path.exists("/usr/sbin/nologin") else "/bin/false"
    result = subprocess.run(["useradd", "--system", "--gid", str(hook.gid), "--home-dir", home, "--no-create-home",
                             "--shell", shell, "--comment", "gitea-hf-hook worker", name],
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise HookError(f"useradd {name} failed: {result.stderr.strip()}", "create the user by hand, then run "
                        "install.sh again")
    account = lookup(name)
    if account is None:
        raise HookError(f"useradd {name} succeeded but the user cannot be looked up", "check /etc/passwd and NSS")
    return account


def remove(name: str) -> None:
    result = subprocess.run(["userdel", name], capture_output=True, text=True)
    if result.returncode != 0:
        raise HookError(f"userdel {name} failed: {result.stderr.strip()}", f"remove the user {name} by hand")


def run_as(account: Account, argv: Sequence[str], *, env: dict[str, str] | None = None,
           timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` as ``account``, its groups included, with a service's PATH and from ``/``.

    setpriv keeps root's capabilities until it starts the program, so the program would be found even in a folder
    the user cannot enter; starting it from a shell makes that lookup the user's own.
    """
    groups = ["--groups=" + ",".join(map(str, account.groups))] if account.groups else ["--clear-groups"]
    command = ["setpriv", f"--reuid={account.uid}", f"--regid={account.gid}", *groups,
               "/bin/sh", "-c", 'exec "$0" "$@"', *argv]
    environment = {"PATH": SERVICE_PATH, "HOME": account.home or "/", "LANG": "C.UTF-8", **(env or {})}
    return subprocess.run(command, env=environment, cwd="/", capture_output=True, text=True, timeout=timeout)


def may_search(account: Account, st: os.stat_result) -> bool:
    """Whether the kernel lets ``account`` pass through a folder of this owner and mode (ACLs aside)."""
    if account.uid == 0:
        return True
    if st.st_uid == account.uid:
        return bool(st.st_mode & stat.S_IXUSR)
    if st.st_gid in account.groups:
        return bool(st.st_mode & stat.S_IXGRP)
    return bool(st.st_mode & stat.S_IXOTH)


def closed_folder(account: Account, paths: Sequence[str]) -> tuple[str, os.stat_result] | None:
    """The first folder on the way to any of ``paths`` (as named, and through their links) that ``account`` may
    not enter, with its ``stat``; None when it may enter all of them."""
    for path in paths:
        for target in dict.fromkeys((os.path.abspath(path), os.path.realpath(path))):
            folder = target if os.path.isdir(target) else os.path.dirname(target)
            chain = []
            while True:
                chain.append(folder)
                if folder == os.sep:
                    break
                folder = os.path.dirname(folder)
            for folder in reversed(chain):
                try:
                    st = os.stat(folder)
                except OSError:
                    break
                if not may_search(account, st):
                    return folder, st
    return None
