"""What a broken config still says: whether a ref may publish, so that only publishing refs fail closed.

A broken config must fail closed for publishing refs and leave the others alone, yet the rules that say which
refs publish are in the broken file. This reads the routing keys of ``repos`` (``match``, ``branches``,
``tags``) with the schema's own validators, ignoring every other key, and routes with the same
:meth:`RepoRule.target` the hook uses. Where even that cannot be read, every branch and tag counts as publishing.
"""

from __future__ import annotations


def might_publish(path: str, owner: str, name: str, ref: str) -> bool:
    """For a config that does not load: whether ``ref`` of ``owner/name`` may publish, erring towards yes."""
    if not ref.startswith(("refs/heads/", "refs/tags/")):
        return False
    try:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8")
        from .schema import routing

        rules = routing(path, text)
    except Exception:  # noqa: BLE001 - whatever stops us reading it means "cannot tell", so: publishing
        return True
    for rule in rules:
        if rule.matches(f"{owner}/{name}"):
            return rule.target(owner, name, ref) is not None
    return False
