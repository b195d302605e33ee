"""What git and Gitea hand both hooks: the updated refs on standard input, and whether to look at them at all.

Both hooks import this, post-receive included, so it imports ``os`` alone: no ``typing``, no ``re``.
"""

from __future__ import annotations

# Annotations are strings here; importing collections.abc for them would cost post-receive milliseconds.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping


def is_zero(oid: str) -> bool:
    """True for the all-zeros id git uses for "no object", in sha1 or sha256 length."""
    return not oid.strip("0")


def zero_id(like: str) -> str:
    """The all-zeros id of the same length as ``like``: sha1 and sha256 repositories differ."""
    return "0" * len(like)


class Update(tuple[str, str, str]):
    """One line of a hook's standard input, ``<old> <new> <ref>``: a plain tuple with names."""

    __slots__ = ()

    def __new__(cls, old: str, new: str, ref: str) -> Update:
        return tuple.__new__(cls, (old, new, ref))

    @property
    def old(self) -> str:
        return self[0]

    @property
    def new(self) -> str:
        return self[1]

    @property
    def ref(self) -> str:
        return self[2]

    @property
    def created(self) -> bool:
        return is_zero(self[0])

    @property
    def deleted(self) -> bool:
        return is_zero(self[1])

    def __repr__(self) -> str:
        return f"Update(old={self[0]!r}, new={self[1]!r}, ref={self[2]!r})"


def parse_updates(text: str) -> list[Update]:
    """The hook's standard input as updates. Blank lines (Gitea's dispatcher adds one) and lines that are not
    ``<old> <new> <ref>`` are skipped: git itself never writes those."""
    updates = []
    # Split on newlines alone: git allows U+2028 and U+0085 in a ref name, and splitlines() would read
    # "refs/heads/main\u2028x" as a creation of refs/heads/main.
    for line in text.split("\n"):
        parts = line.removesuffix("\r").split(" ", 2)
        if len(parts) == 3 and all(parts):
            updates.append(Update(*parts))
    return updates


def _true(environ: Mapping[str, str], name: str) -> bool:
    return environ.get(name, "").strip().lower() == "true"


def is_internal(environ: Mapping[str, str]) -> bool:
    """Gitea's own bookkeeping push (``GITEA_INTERNAL_PUSH``): never checked, never published."""
    return _true(environ, "GITEA_INTERNAL_PUSH")


def is_wiki(environ: Mapping[str, str]) -> bool:
    """A push to a repository's wiki (``GITEA_REPO_IS_WIKI``): wikis never publish."""
    return _true(environ, "GITEA_REPO_IS_WIKI")


def passes_untouched(environ: Mapping[str, str]) -> bool:
    """Whether both hooks let this push through without reading any config: bookkeeping or a wiki."""
    return is_internal(environ) or is_wiki(environ)
