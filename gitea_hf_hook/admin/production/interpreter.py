"""Whether both users can run the interpreter the virtual environment is built from, and then the environment.

The hooks run as Gitea's user and the worker as its own, and both start the environment's ``bin/python``, a link
to that interpreter: each must be able to enter every folder on the way to it and to its standard library. An
interpreter built under a home folder of mode 0700 (the usual place of a per-user Python build) fails that, and a
hook that cannot start rejects every push, so this is checked by running it as each user before anything is
installed. The fix is never applied here: opening a home folder is the admin's call.
"""

from __future__ import annotations

import os
import stat
import sys
import sysconfig
from collections.abc import Sequence

from ...errors import HookError
from .accounts import Account, closed_folder, run_as

PROBE = "import sys, encodings, json; print(sys.base_prefix)"


def base_interpreter() -> str:
    """The interpreter a virtual environment made by this one links to (venv uses the same)."""
    return str(getattr(sys, "_base_executable", "") or sys.executable)


def _problem(account: Account, python: str, paths: Sequence[str], detail: str) -> HookError:
    """Why ``account`` cannot run ``python``: the folder it may not enter, with the chmod that opens it."""
    closed = closed_folder(account, paths)
    if closed is not None:
        folder, st = closed
        return HookError(f"{account.who} cannot run {python}: it may not enter {folder} (mode "
                         f"{stat.S_IMODE(st.st_mode):04o}), so the hooks or the worker could not start",
                         f"give others search permission there, and nothing more: chmod o+x {folder}; or build "
                         "from an interpreter both users can run: PYTHON=/usr/bin/python3 ./install.sh ...")
    return HookError(f"{account.who} cannot run {python}: {detail}",
                     "set PYTHON to an interpreter both users can run, e.g. PYTHON=/usr/bin/python3 ./install.sh ...")


def check_interpreter(accounts: Sequence[Account], python: str | None = None) -> None:
    """Run the interpreter as each account: it must start and find its own standard library (one that cannot
    read its own silently takes another, or none)."""
    python = python or base_interpreter()
    stdlib = sysconfig.get_paths()["stdlib"]
    for account in accounts:
        result = run_as(account, [python, "-I", "-c", PROBE])
        if result.returncode != 0:
            last = (result.stderr.strip().splitlines() or ["it exited with status " + str(result.returncode)])[-1]
            raise _problem(account, python, [python, stdlib], last)
        if result.stdout.strip() != sys.base_prefix:
            raise _problem(account, python, [python, stdlib],
                           f"it starts with the standard library of {result.stdout.strip()}, not {sys.base_prefix}")


def check_environment(accounts: Sequence[Account], venv: str) -> None:
    """Import what the hooks and the worker import, from the environment, as each account."""
    python = os.path.join(venv, "bin", "python")
    code = "import gitea_hf_hook.push.pre_receive, gitea_hf_hook.admin.cli, gitea_hf_hook.worker.hub_client, yaml"
    for account in accounts:
        result = run_as(account, [python, "-I", "-B", "-c", code])
        if result.returncode != 0:
            last = (result.stderr.strip().splitlines() or ["it exited with status " + str(result.returncode)])[-1]
            raise _problem(account, python, [python, os.path.join(venv, "lib")], last)
