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
