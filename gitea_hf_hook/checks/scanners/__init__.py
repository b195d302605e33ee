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
# File names that are pickles by convention: torch checkpoints, joblib dumps and plain pickles.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".joblib")
MAX_FINDINGS = 20


class Findings:
    """The findings of one file: in order, itemised up to ``MAX_FINDINGS``, then only counted.

    A hostile file can hold millions of problems; neither the push output nor the scanner's memory may grow with
    them. ``unique`` drops a problem already itemised (the same bad import named twice).
    """

    def __init__(self, what: str, hint: str = "fix the ones above first", *, unique: bool = True,
                 counted: bool = True) -> None:
        # counted=False: the scanner stops at the first problem past the cap, so the rest cannot be counted.
        self.what, self.hint, self.unique, self.counted = what, hint, unique, counted
        self.items: list[Finding] = []
        self.hidden = 0

    def add(self, problem: str, hint: str | None = None, line: int | None = None) -> None:
        """Itemise or count one problem; without a hint it gets the list's own."""
        if hint is None:
            hint = self.hint
        if self.unique and any(item.problem == problem for item in self.items):
            return
        if len(self.items) < MAX_FINDINGS:
            self.items.append(Finding(problem, hint, line))
        else:
            self.hidden += 1

    def extend(self, findings: list[Finding]) -> None:
        for finding in findings:
            self.add(*finding)

    @property
    def full(self) -> bool:
        """Whether a problem past the cap was seen: a scanner that need not count the rest may stop looking."""
        return self.hidden > 0

    def result(self) -> list[Finding]:
        if not self.hidden:
            return list(self.items)
        more = f"{self.hidden} more" if self.counted else "more"
        return [*self.items, Finding(f"{more} {self.what} not listed", self.hint)]


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
