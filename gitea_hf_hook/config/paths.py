"""Where a git path lands on the Hub: the one mapping push time and the worker share.

A path publishes when it lies under the rule's ``subdir`` and passes ``include`` and ``exclude``. Such a path
must then be one the Hub can hold; the pre-receive hook rejects a push that carries one it cannot, so that no
file passes every check and is then never published.
"""

from __future__ import annotations

from .model import RepoRule

# The client refuses these path segments (huggingface_hub's _validate_path_in_repo and FORBIDDEN_FOLDERS).
FORBIDDEN_SEGMENTS = (".git", ".cache")


def hub_path(rule: RepoRule, raw: bytes) -> str | None:
    """The Hub path of a git path under ``rule``, or None when the rule does not publish it.

    Undecodable bytes survive as surrogates, so the caller can still name the path; :func:`unfit` refuses it.
    """
    path = raw.decode("utf-8", "surrogateescape")
    if rule.subdir:
        if not path.startswith(rule.subdir + "/"):
            return None
        path = path[len(rule.subdir) + 1:]
    return path if rule.publishes(path) else None


def unfit(path: str) -> str | None:
    """Why the Hub cannot hold ``path`` (a Hub path from :func:`hub_path`), or None when it can."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return "file name is not valid UTF-8, which the Hub requires"
    for segment in path.split("/"):
        if not segment:
            return "the Hub cannot hold a path with an empty segment"
        if segment in (".", ".."):
            return f"the Hub cannot hold a path with a '{segment}' segment"
        if segment in FORBIDDEN_SEGMENTS:
            return f"the Hub cannot hold files under a {segment}/ folder"
    return None
