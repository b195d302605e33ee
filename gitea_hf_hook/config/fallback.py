"""What a broken config still decides: which refs published under the last valid one, so that only those fail closed.

Every valid load leaves its routing (each rule's ``match``, ``branches`` and ``tags``) in the hook user's cache
(:func:`.cache.routing`). While the file does not load, a ref publishes when that routing publishes it, as
:meth:`RepoRule.target` routes it for the hook. With no valid config on record, or a record that does not read
back whole, every branch and tag counts as publishing. The broken file itself is never read for routing: what it
says is what failed to load.
"""

from __future__ import annotations

from . import cache
from .globs import compile_name_glob
from .model import RepoRule


def _text(value: object) -> bool:
    return isinstance(value, str) and value != ""


def _rule(position: int, entry: object) -> RepoRule:
    """One rule of the routing record, checked value by value; raises ValueError for anything a load never wrote."""
    if not isinstance(entry, dict):
        raise ValueError("not an object")
    match, branches, tags = entry.get("match"), entry.get("branches"), entry.get("tags")
    if not (_text(match) and isinstance(branches, list) and isinstance(tags, list)
            and all(isinstance(b, list) and len(b) == 2 and all(_text(p) for p in b) for b in branches)
            and all(_text(t) for t in tags)):
        raise ValueError("not a rule")
    # What routing will do with each value, done now: a value no load wrote fails here, not in the middle of a push.
    import re

    try:
        for pattern in (match, *(p for p, _ in branches), *tags):
            compile_name_glob(pattern)
        for _, revision in branches:
            revision.format(branch="b")
    except (re.error, AttributeError, KeyError, IndexError, ValueError) as exc:
        raise ValueError(str(exc)) from None
    return RepoRule(position=position, match=str(match), branches=tuple((p, r) for p, r in branches),
                    tags=tuple(tags))


def last_valid_rules(path: str) -> tuple[RepoRule, ...] | None:
    """The routing of the last valid load of the config at ``path``, as rules that route only; None when there is
    no record, or none that reads back whole (see :func:`.cache.routing` for when one is trusted)."""
    repos = cache.routing(path)
    if repos is None:
        return None
    try:
        return tuple(_rule(i, entry) for i, entry in enumerate(repos))
    except ValueError:
        return None


def publishes(rules: tuple[RepoRule, ...] | None, owner: str, name: str, ref: str) -> bool:
    """Whether ``ref`` of ``owner/name`` publishes under ``rules``, the first that matches deciding, as
    :meth:`Config.rule_for` does; with no rules on record (None), every branch and tag does."""
    if not ref.startswith(("refs/heads/", "refs/tags/")):
        return False
    if rules is None:
        return True
    for rule in rules:
        if rule.matches(f"{owner}/{name}"):
            return rule.target(owner, name, ref) is not None
    return False
