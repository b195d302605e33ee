"""The push-time policy: which updated refs publish, and whether each may.

``evaluate`` is the whole decision. It is shared by the pre-receive hook and ``gitea-hf-hook check``, so the
offline dry run prints exactly what a pusher would see.
"""

from __future__ import annotations

from typing import NamedTuple

from ..checks.problems import Problem
from ..config.model import Config, RepoRule, Target
from ..gitea.environment import Push
from ..gitea.hook_input import Update
from ..spool.layout import writable_problem


class Verdict(NamedTuple):
    """The decision for one publishing ref."""

    update: Update
    rule: RepoRule
    target: Target
    problems: list[Problem]  # filled in by evaluate
    commit: str = ""  # the commit that would publish (a tag peeled); empty for deletions


def publishing(config: Config, push: Push, updates: list[Update]) -> list[Verdict]:
    """The updates that map to a Hub target, each with an empty verdict. Everything else passes untouched."""
    if push.is_wiki:  # wikis never publish
        return []
    rule = config.rule_for(push.full_name)
    if rule is None:
        return []
    verdicts = []
    for update in updates:
        target = rule.target(push.owner, push.name, update.ref)
        if target is not None:
            verdicts.append(Verdict(update, rule, target, []))
    return verdicts


def _may_publish(config: Config, rule: RepoRule, who: str) -> bool:
    who = who.lower()
    for entry in rule.publishers:
        if entry == "*":
            return True
        if entry.startswith("@"):
            if who in (m.lower() for m in config.groups.get(entry[1:], ())):
                return True
        elif entry.lower() == who:
            return True
    return False


def check_pusher(config: Config, push: Push, verdict: Verdict) -> list[Problem]:
    """Who may publish: Gitea's authenticated pusher, deploy keys, and the pull-request-only rule."""
    rule, ref, hub = verdict.rule, verdict.update.ref, verdict.target.hub_repo
    if not push.pusher:
        return [Problem(ref, "no Gitea pusher identity", "push through Gitea over SSH or HTTP so it knows who you are")]
    problems = []
    if rule.require_merge and verdict.target.kind == "branch" and not push.is_pr_merge and not verdict.update.deleted:
        problems.append(Problem(ref, f"only pull-request merges made in Gitea publish to {hub}",
                                "open a pull request and merge it in Gitea"))
    if push.is_deploy_key:
        if not rule.allow_deploy_keys:
            problems.append(Problem(ref, f"deploy keys may not publish to {hub}",
                                    "push as a person listed in publishers, or ask an admin to set allow_deploy_keys"))
        # An allowed deploy key is a grant of its own: Gitea names the repository owner as its "pusher".
        return problems
    if not _may_publish(config, rule, push.pusher):
        listed = ", ".join(rule.publishers) or "nobody"
        problems.append(Problem(ref, f"{push.pusher} may not publish to {hub}",
                                f"publishers: {listed}; ask a Gitea admin to add you"))
    return problems


def check_ref(verdict: Verdict, peeled: tuple[str, str] | None, branch_tips: dict[str, str]) -> list[Problem]:
    """Deletion, force-push, what a tag points at, and whether a tag's commit is on a publishing branch."""
    from ..gitea import git

    update, rule, target = verdict.update, verdict.rule, verdict.target
    ref = update.ref
    if update.deleted:
        if rule.allow_delete:
            return []
        return [Problem(ref, f"deleting it would delete Hub {target.kind} {target.revision} of {target.hub_repo}",
                        "ask an admin to set allow_delete if that is intended")]
    if peeled is None or peeled[1] != "commit":
        kind = "an object that does not exist" if peeled is None else f"a {peeled[1]}"
        return [Problem(ref, f"points at {kind}, not a commit", "tag a commit: git tag -a NAME COMMIT")]
    if not update.created and not rule.allow_force_push:
        if target.kind == "tag" and update.old != update.new:
            return [Problem(ref, f"moving a published tag rewrites {target.hub_repo}'s tag {target.name}",
                            "create a new tag instead, or ask an admin to set allow_force_push")]
        if target.kind == "branch" and not git.is_ancestor(update.old, update.new):
            return [Problem(ref, f"force-push would rewrite history already published to {target.hub_repo}",
                            "push a new commit on top instead, or ask an admin to set allow_force_push")]
    if target.kind == "tag" and not git.reachable_from_any(peeled[0], branch_tips.values()):
        return [Problem(ref, f"tagged commit {peeled[0][:12]} is not on a publishing branch",
                        f"push it to {', '.join(b for b, _ in rule.branches)} first, or in the same push")]
    return []


def _publishing_tips(push: Push, verdicts: list[Verdict]) -> dict[str, str]:
    """Tips of the publishing branches as they will be if this push lands (its branch verdicts included)."""
    from ..gitea import git

    rule = verdicts[0].rule
    tips = {ref: oid for ref, oid in git.refs("refs/heads/").items()
            if rule.target(push.owner, push.name, ref) is not None}
    for verdict in verdicts:
        if verdict.target.kind == "branch":
            if verdict.update.deleted:
                tips.pop(verdict.update.ref, None)
            else:
                tips[verdict.update.ref] = verdict.update.new
    return tips


def evaluate(config: Config, push: Push, updates: list[Update]) -> list[Verdict]:
    """Decide every publishing ref of a push. Verdicts with problems are rejections.

    Who and which ref come first, and content only for the refs that pass them: a pusher who may not publish,
    read-only users included, learns nothing of what the server holds. The whole evaluation runs under
    ``config.limits``.
    """
    verdicts = publishing(config, push, updates)
    if not verdicts:
        return []
    limits = config.limits
    if len(verdicts) > limits.max_refs:
        # Nothing is read: the count alone decides.
        return [v._replace(problems=[Problem(v.update.ref, f"this push updates {len(verdicts)} publishing refs, "
                                             f"over the {limits.max_refs} one push may",
                                             "push them in smaller groups, or ask a Gitea admin to raise "
                                             "limits.max_refs")]) for v in verdicts]
    from ..checks.budget import Exhausted, deadline

    try:
        with deadline(limits):
            return _evaluate(config, push, verdicts)
    except Exhausted as over:
        # The verdicts share their problem lists with the evaluation's: what it found stays, and every ref it
        # had not yet found wanting fails closed.
        for verdict in verdicts:
            if not verdict.problems:
                verdict.problems.append(Problem(verdict.update.ref, over.problem, over.hint))
        return verdicts


def _evaluate(config: Config, push: Push, verdicts: list[Verdict]) -> list[Verdict]:
    # Imported here, as below: a push that publishes nothing never pays for git plumbing or the checks.
    from ..checks import content
    from ..checks.budget import Budget
    from ..gitea import git

    for verdict in verdicts:
        verdict.problems.extend(check_pusher(config, push, verdict))
    # Tags are peeled to what they name. Git refuses to point a branch at anything but a commit, so
    # branches need no look-up: one git process less on every push.
    tags = [v for v in verdicts if not v.update.deleted and v.target.kind == "tag"]
    peeled: dict[str, tuple[str, str, int] | None] = {v.update.new: (v.update.new, "commit", 0) for v in verdicts
                                                       if not v.update.deleted and v.target.kind == "branch"}
    if tags:
        peeled.update(zip((v.update.new for v in tags), git.object_info([f"{v.update.new}^{{}}" for v in tags]),
                          strict=True))
    verdicts = [v._replace(commit=info[0]) if (info := peeled.get(v.update.new)) else v for v in verdicts]
    live = [v for v in verdicts if not v.update.deleted and not v.problems]
    tips = _publishing_tips(push, verdicts) if any(v.target.kind == "tag" for v in live) else {}
    # No push may land that post-receive could not queue.
    spool_problem = writable_problem(config.spool)
    wanted: list[content.Wanted] = []
    for verdict in verdicts:
        info = peeled.get(verdict.update.new)
        if not verdict.problems:  # ref rules only for a pusher who may publish
            verdict.problems.extend(check_ref(verdict, None if info is None else info[:2], tips))
        if spool_problem:
            verdict.problems.append(Problem(verdict.update.ref, *spool_problem))
        if not verdict.update.deleted and not verdict.problems and info is not None:
            wanted.append(content.Wanted(verdict.update.ref, info[0], None if verdict.update.created
                                         else verdict.update.old))
    if wanted:
        found = content.check_refs(config, verdicts[0].rule, wanted, Budget(config.limits))
        for verdict in verdicts:
            verdict.problems.extend(found.get(verdict.update.ref, ()))
    return verdicts
