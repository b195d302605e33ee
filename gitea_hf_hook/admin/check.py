"""``gitea-hf-hook check``: the pre-receive evaluation run offline against a repository on disk."""

from __future__ import annotations

import os

from ..config.model import Config
from ..errors import HookError
from ..gitea import git
from ..gitea.environment import PR_MERGE, Push, repo_dir
from ..gitea.hook_input import Update, zero_id
from ..push.policy import Verdict, check_ref, evaluate
from ..push.report import PREFIX, render


def _resolve_ref(ref: str) -> tuple[str, str | None]:
    """A full ref name and its current value, accepting short branch and tag names."""
    if ref.startswith("refs/"):
        candidates = [ref]
    else:
        candidates = [f"refs/heads/{ref}", f"refs/tags/{ref}"]
    for name in candidates:
        current = git.refs(name).get(name)
        if current is not None:
            return name, current
    return candidates[0], None


def dry_run(config: Config, repo: str, ref: str, rev: str | None, user: str, *, deploy_key: bool = False,
            pr_merge: bool = False) -> tuple[list[str], int]:
    """Lines a pusher of ``rev`` to ``ref`` would see, and the hook's exit code.

    An admin runs this, as root or as any user, in a repository Gitea's user writes: git is confined, so the
    repository's own config runs nothing.
    """
    with git.confined():
        return _dry_run(config, repo, ref, rev, user, deploy_key=deploy_key, pr_merge=pr_merge)


def _dry_run(config: Config, repo: str, ref: str, rev: str | None, user: str, *, deploy_key: bool,
             pr_merge: bool) -> tuple[list[str], int]:
    owner, _, name = repo.lower().partition("/")
    path = repo_dir(config.repo_root, owner, name)
    if not os.path.isdir(path):
        raise HookError(f"{repo}: no repository at {path}", "check the name and gitea.repo_root in the config")
    os.chdir(path)
    ref, current = _resolve_ref(ref)
    if rev is None:
        if current is None:
            raise HookError(f"{ref} does not exist in {repo}", "name an existing ref, or give a REV to check")
        # The ref's tip as if pushed for the first time: every file is checked.
        update = Update(zero_id(current), current, ref)
    else:
        out = git.run("rev-parse", "--verify", "--quiet", "--end-of-options", f"{rev}^{{object}}",
                      ok_codes=(0, 1)).stdout.decode().strip()
        if not out:
            raise HookError(f"{repo} has no revision {rev}", "give a commit id, branch or tag of that repository")
        update = Update(current or zero_id(out), out, ref)
    push = Push(owner=owner, name=name, is_wiki=False, repo_id="", pusher=user, pusher_id="",
                deploy_key_id="dry-run" if deploy_key else "", trigger=PR_MERGE if pr_merge else "", pr_id="")
    verdicts = evaluate(config, push, [update])
    if not verdicts:
        return [f"{PREFIX} {ref} of {repo} does not publish: no repos entry maps it to the Hub"], 0
    return _lines(config, repo.lower(), verdicts), 1 if config.enforce and any(v.problems for v in verdicts) else 0


def _lines(config: Config, repo: str, verdicts: list[Verdict]) -> list[str]:
    """What a pusher reads for each verdict: the rejection as the hook renders it, or one accepted line."""
    lines: list[str] = []
    for v in verdicts:
        where = v.target.describe(config.hub_endpoint)
        if v.problems:
            lines += render(repo, v.update.ref, where, v.problems, enforce=config.enforce)
        else:
            lines.append(f"{PREFIX} accepted {v.update.ref} of {repo}, which publishes to {where}")
    return lines


def existing_refs(config: Config, path: str) -> tuple[list[str], int]:
    """:func:`_existing_refs` with git confined, as in :func:`dry_run`."""
    with git.confined():
        return _existing_refs(config, path)


def _existing_refs(config: Config, path: str) -> tuple[list[str], int]:
    """Every publishing branch and tag of the bare repository at ``path``, checked as its first publish would be:
    the lines a pusher would see, and how many of those refs have problems.

    Content pushed before the hooks were installed, or while no rule covered its ref, was never checked, and a
    first publish uploads the whole tree, so each ref is checked as if pushed for the first time. Who pushed it
    is not asked: whoever pushes next passes the hook's own pusher checks. One ``git for-each-ref`` lists the
    refs; the rest are the checks' own processes.
    """
    owner, name = os.path.basename(os.path.dirname(path)), os.path.basename(path).removesuffix(".git")
    repo = f"{owner}/{name}".lower()
    rule = config.rule_for(repo)
    if rule is None:
        return [], 0
    from ..checks import content

    out = git.run("for-each-ref", "--format=%(objectname) %(refname)", "refs/heads/", "refs/tags/", cwd=path).stdout
    verdicts = []
    for line in out.decode(errors="surrogateescape").splitlines():
        oid, _, ref = line.partition(" ")
        target = rule.target(owner, name, ref)
        if target is not None:
            verdicts.append(Verdict(Update(zero_id(oid), oid, ref), rule, target, []))
    if not verdicts:
        return [], 0
    # Git points branches at commits only; tags are peeled, all in one batch.
    tags = [v.update.new for v in verdicts if v.target.kind == "tag"]
    peeled: dict[str, tuple[str, str] | None] = {v.update.new: (v.update.new, "commit") for v in verdicts
                                                 if v.target.kind == "branch"}
    tips = {v.update.ref: v.update.new for v in verdicts if v.target.kind == "branch"}
    # The checks ask git about the current directory, as they do in the hook.
    here = os.getcwd()
    os.chdir(path)
    try:
        if tags:
            infos = git.object_info([f"{oid}^{{}}" for oid in tags])
            peeled.update((oid, None if info is None else info[:2]) for oid, info in zip(tags, infos, strict=True))
        for v in verdicts:
            info = peeled[v.update.new]
            v.problems.extend(check_ref(v, info, tips))
            if not v.problems and info is not None:
                v.problems.extend(content.check(config, rule, info[0], None, markers=False))
    finally:
        os.chdir(here)
    return _lines(config, repo, verdicts), sum(1 for v in verdicts if v.problems)
