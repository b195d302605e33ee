"""What one push may cost the checks: files listed, bytes scanned and seconds spent, from ``config.limits``.

Anyone who may push reaches the checks, read-only users included, so each cap fails the push closed with a line
that names it and the key that raises it, rather than letting a crafted push hold the server.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, BinaryIO

from ..config.model import Limits

MIB = 1024 * 1024
_RAISE = "push less at once, or ask a Gitea admin to raise limits.{key}"


class Exhausted(BaseException):
    """A push went over one of the limits. A BaseException, like KeyboardInterrupt, so that no scanner's
    ``except Exception`` can swallow it and go on reading."""

    def __init__(self, problem: str, hint: str) -> None:
        super().__init__(problem)
        self.problem, self.hint = problem, hint


class Budget:
    """The files and bytes a push has left. The worker, which trusts its own time, passes ``limits=None``."""

    def __init__(self, limits: Limits | None) -> None:
        self.limits = limits
        self.files = 0
        self.scanned = 0

    def remaining_files(self) -> int | None:
        return None if self.limits is None else self.limits.max_files - self.files

    def list_files(self, count: int) -> None:
        self.files += count
        if self.limits is not None and self.files > self.limits.max_files:
            raise Exhausted(f"this push lists more than {self.limits.max_files} files to check",
                            _RAISE.format(key="max_files"))

    def scan(self, size: int) -> None:
        """Count ``size`` more bytes read for checking."""
        self.scanned += size
        if self.limits is not None and self.scanned > self.limits.max_scan_mb * MIB:
            raise Exhausted(f"this push holds more than {self.limits.max_scan_mb:g} MiB to check",
                            _RAISE.format(key="max_scan_mb"))

    @contextmanager
    def metered(self, f: BinaryIO) -> Iterator[BinaryIO]:
        """``f``, with every byte a scanner reads from it counted."""
        yield _Metered(f, self)  # type: ignore[misc]  # duck-typed: the scanners use read, seek and tell


class _Metered:
    def __init__(self, f: BinaryIO, budget: Budget) -> None:
        self._f, self._budget = f, budget

    def read(self, size: int = -1) -> bytes:
        data = self._f.read(size)
        self._budget.scan(len(data))
        return data

    def readinto(self, buffer: Any) -> int:
        count = self._f.readinto(buffer)  # type: ignore[attr-defined]
        self._budget.scan(count or 0)
        return count or 0

    def __getattr__(self, name: str) -> Any:  # seek, tell, seekable...: nothing that reads
        return getattr(self._f, name)


@contextmanager
def deadline(limits: Limits) -> Iterator[None]:
    """Raise :class:`Exhausted` in this thread when the evaluation runs over ``limits.deadline_seconds``.

    A timer signal, because the slow part can be a single regular expression or parse, which checks for
    signals as it goes. Only the main thread can take one: elsewhere (an admin command run from a thread) the
    block runs without a deadline. ``_signal`` is the C module: the ``signal`` wrapper costs a push an import.
    """
    import _signal  # type: ignore[import-not-found]

    def expired(*_args: object) -> None:
        raise Exhausted(f"checking this push took over {limits.deadline_seconds:g} s",
                        _RAISE.format(key="deadline_seconds"))

    try:
        previous = _signal.signal(_signal.SIGALRM, expired)
    except ValueError:  # not the main thread
        yield
        return
    _signal.setitimer(_signal.ITIMER_REAL, limits.deadline_seconds)
    try:
        yield
    finally:
        _signal.setitimer(_signal.ITIMER_REAL, 0)
        _signal.signal(_signal.SIGALRM, previous)

