"""``gitea-hf-hook config check``: validate a config file before it goes live, and say what publishes where.

The file is read as the worker reads it, itself and never through a cache, and nothing is installed or
remembered: an admin runs this on a new file before it replaces the live one that every hook and the worker read.
"""

from __future__ import annotations

from ..config.load import load
from ..config.model import Config, RepoRule, hub_repo_path
from ..redact import escape


def check(path: str) -> list[str]:
    """The summary of the config at ``path``; raises ConfigError naming the file, line and key of its first problem."""
    return summary(load(path, cached=False))


def summary(config: Config) -> list[str]:
    """Each rule in the order they apply, its targets (git branches and tags -> Hub repository) and its publishers.

    Every line is escaped: the file is the one being checked, and its strings may hold anything.
    """
    count = len(config.repos)
    if count:
        lines = [f"{config.path}: valid, {count} rule{'' if count == 1 else 's'} "
                 "(the first that matches a repository applies)"]
    else:
        lines = [f"{config.path}: valid, no rules: nothing publishes"]
    for rule in config.repos:
        lines += _rule(config, rule)
    if not config.enforce:
        lines.append("enforce: false: pushes that fail the checks land in Gitea, and are not published")
    return [escape(line) for line in lines]


def _rule(config: Config, rule: RepoRule) -> list[str]:
    hub = f"{config.hub_endpoint}/{hub_repo_path(rule.repo_type, rule.hub_repo)}"
    lines = [f"repos[{rule.position}] {rule.match}:"]
    lines += [f"  branch {pattern} -> {hub} (branch {revision})" for pattern, revision in rule.branches]
    lines += [f"  tag {pattern} -> {hub} (tag of the same name)" for pattern in rule.tags]
    if not rule.branches and not rule.tags:
        lines.append("  no branch or tag publishes")
    lines.append(f"  publishers: {_publishers(config, rule)}")
    return lines


def _publishers(config: Config, rule: RepoRule) -> str:
    names = []
    for who in rule.publishers:
        if who == "*":
            names.append("anyone who may push")
        elif who.startswith("@"):
            names.append(f"{who} ({', '.join(config.groups.get(who[1:], ())) or 'no members'})")
        else:
            names.append(who)
    if rule.allow_deploy_keys:
        names.append("deploy keys")
    text = ", ".join(names) or "nobody, so every push to these refs is rejected"
    if rule.require_merge:
        text += "; branches only through pull-request merges made in Gitea"
    return text
