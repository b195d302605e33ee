"""A check's verdict on one file, as the line a pusher or an admin reads: ``path: problem (hint)``."""

from __future__ import annotations

from typing import NamedTuple


class Problem(NamedTuple):
    """One reason a ref may not publish, tied to a file (or to the ref itself)."""

    path: str
    problem: str
    hint: str = ""

    def __str__(self) -> str:
        return f"{self.path}: {self.problem} ({self.hint})" if self.hint else f"{self.path}: {self.problem}"


def show_path(raw: bytes | str) -> str:
    """A path as a pusher should see it: undecodable bytes and control characters escaped.

    A file name may hold a newline or a terminal escape; printed raw it could forge lines in the push output.
    """
    text = raw.decode("utf-8", "backslashreplace") if isinstance(raw, bytes) else raw
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
