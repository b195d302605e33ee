"""The command line's one error handler: a known failure is one line and exit 1; anything else is one line
naming the log file that holds the traceback, and exit 3."""

from __future__ import annotations

import os
import stat
import tempfile
import time
import traceback

from ..errors import HookError
from ..redact import escape, redact

UNEXPECTED = 3


def log_file() -> str:
    """Where unexpected failures are written: the user's cache folder, else the temporary folder."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "gitea-hf-hook", "cli.log")


def _log(exc: BaseException) -> str:
    # Line by line: a traceback is many lines, but one line of it (an exception's text) may quote a Hub answer
    # or a file name, with line breaks or terminal escapes of its own.
    lines = redact("".join(traceback.format_exception(exc))).rstrip("\n").split("\n")
    record = (f"--- {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} pid {os.getpid()}\n"
              + "".join(escape(line) + "\n" for line in lines))
    for path in (log_file(), os.path.join(tempfile.gettempdir(), f"gitea-hf-hook-{os.getuid()}.log")):
        try:
            os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o600)
            info = os.fstat(fd)
            if info.st_uid != os.geteuid() or not stat.S_ISREG(info.st_mode):
                # Another user's file in the shared temporary folder would be handed our tracebacks.
                os.close(fd)
                continue
            with os.fdopen(fd, "a", encoding="utf-8") as f:
                f.write(record)
            return path
        except OSError:
            continue
    return "no log: neither the cache folder nor the temporary folder is writable"


def _printable(line: str) -> str:
    """``line`` as a terminal may show it: a message may name a path, a ref or a job file's text, which may hold
    line breaks, terminal escapes, bidi controls or bytes that are not UTF-8 (lone surrogates): all escaped."""
    return escape(line)


def report(exc: BaseException) -> tuple[str, int]:
    """The line to print for ``exc`` and the exit code."""
    if isinstance(exc, HookError):
        return _printable(f"gitea-hf-hook: error: {exc}"), exc.exit_code
    if isinstance(exc, OSError) and exc.strerror:
        where = f"{exc.filename}: " if exc.filename else ""
        return _printable(f"gitea-hf-hook: error: {where}{exc.strerror}"), 1
    where = _log(exc)
    return (_printable(f"gitea-hf-hook: internal error: {type(exc).__name__} (the traceback is in {where}; "
                       "please report it)"), UNEXPECTED)
