"""The entry point ``install.sh`` starts: one line per change as it happens, then the closing lines; a failure is
one line on standard error naming what to fix, as every command of the package reports it."""

from __future__ import annotations

import os
import sys

from ...errors import HookError
from ..errors import report
from . import deploy, options, remove


def _say(line: str) -> None:
    print(line, flush=True)


def main(argv: list[str], checkout: str) -> int:
    """Run ``install.sh ARGS`` from the checkout at ``checkout``; returns the exit status."""
    # Whatever root's umask, what is installed must be readable by both users.
    os.umask(0o022)
    try:
        request = options.parse(argv)
        if os.geteuid() != 0:
            raise HookError("a production install must run as root", "sudo ./install.sh ...; for a development "
                            "copy in ./.venv, run ./install.sh --test")
        if request.uninstall:
            closing = remove.uninstall(request, _say)
        else:
            closing = deploy.install(request, checkout, _say)
    except Exception as exc:  # noqa: BLE001 - one line and an exit code, as every command reports
        line, code = report(exc)
        print("install.sh:" + line.partition(":")[2], file=sys.stderr, flush=True)
        return code
    for line in closing:
        _say(line)
    return 0
