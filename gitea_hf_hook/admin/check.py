"""``gitea-hf-hook check``: the pre-receive evaluation run offline against a repository on disk."""

from __future__ import annotations

import os

from ..config.model import Config
from ..errors import HookError
from ..gitea import git
from ..gitea.environment import PR_MERGE, Push, repo_dir
from ..gitea.hook_input import Update, zero_id
from ..push.policy import evaluate
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
    """Lines a pusher of ``rev`` to ``ref`` would see, and the hook's exit code."""
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
    lines: list[str] = []
    for v in verdicts:
        where = v.target.describe(config.hub_endpoint)
        if v.problems:
            lines += render(repo.lower(), ref, where, v.problems, enforce=config.enforce)
        else:
            lines.append(f"{PREFIX} accepted {ref} of {repo.lower()}, which publishes to {where}")
    return lines, 1 if config.enforce and any(v.problems for v in verdicts) else 0
