"""Content scanners of the push-time path: pure functions from bytes (or a binary file) to findings.

Scanners know nothing of git, paths or configuration layout: the policy hands them content and turns each
``Finding`` into a pusher-facing line ``path[:line]: problem (hint)``.
"""

from __future__ import annotations

from typing import NamedTuple


class Finding(NamedTuple):
    """One problem in one file. ``problem`` and ``hint`` never contain the offending secret or raw bytes."""

    problem: str
    hint: str = ""
    line: int | None = None


SHOWN_LIMIT = 80


def shown(value: object, limit: int = SHOWN_LIMIT) -> str:
    """A name taken from a pushed file, safe to print: non-printable characters escaped, length capped.

    Such names are attacker-controlled and end up in the pusher's terminal, so newlines, escape sequences and
    bidi controls must not pass through verbatim, and a backslash is escaped so that an escape cannot be faked.
    """
    text = value if isinstance(value, str) else repr(value)
    out: list[str] = []
    length = 0
    for ch in text:
        piece = ch if ch.isprintable() and ch != "\\" else ch.encode("unicode_escape").decode("ascii")
        if length + len(piece) > limit:
            out.append("...")
            break
        out.append(piece)
        length += len(piece)
    return "".join(out)
