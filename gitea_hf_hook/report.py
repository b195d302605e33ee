"""What a pusher reads: one header per rejected ref, then one ``path: problem (hint)`` line per problem."""

from __future__ import annotations

from typing import NamedTuple

PREFIX = "hf-publish:"
MAX_LINES = 20


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


def render(repo: str, ref: str, target: str, problems: list[Problem], *, enforce: bool) -> list[str]:
    """The lines for one ref with problems; ``enforce`` false turns "rejected" into "would reject"."""
    if enforce:
        head = f"{PREFIX} rejected {ref} of {repo}, which publishes to {target}:"
    else:
        head = f"{PREFIX} would reject {ref} of {repo}, which publishes to {target} (enforce is off, so it lands):"
    lines = [head]
    shown = problems if len(problems) <= MAX_LINES else problems[:MAX_LINES - 1]
    lines += [f"  {p}" for p in shown]
    if len(shown) < len(problems):
        lines.append(f"  … and {len(problems) - len(shown)} more")
    return lines
