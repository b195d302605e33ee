"""Turning accepted updates of publishing refs into jobs in the spool (post-receive's work)."""

from __future__ import annotations

import os
import time
from typing import Any

from . import git, spool
from .config import Config
from .gitea import Push
from .policy import Verdict
from .report import PREFIX


def job_for(config: Config, push: Push, verdict: Verdict, commit: str, repo_dir: str) -> dict[str, Any]:
    """The job record for one update. It holds names and ids only, never a credential."""
    target = verdict.target
    return {
        "created": time.time(),
        "repo_dir": repo_dir,
        "gitea": {"owner": push.owner, "name": push.name, "repo_id": push.repo_id, "pusher": push.pusher,
                  "pusher_id": push.pusher_id, "deploy_key_id": push.deploy_key_id, "trigger": push.trigger,
                  "pr_id": push.pr_id},
        "ref": verdict.update.ref,
        "old": verdict.update.old,
        "new": verdict.update.new,
        "commit": commit,
        "target": {"hub_repo": target.hub_repo, "repo_type": target.repo_type, "kind": target.kind,
                   "name": target.name, "revision": target.revision},
        "attempts": 0,
        "not_before": 0,
    }


def queue_verdicts(config: Config, push: Push, verdicts: list[Verdict]) -> list[str]:
    """Queue a job per update and return the lines the pusher sees."""
    # Branch tips are always commits; only tags need peeling.
    live = [v for v in verdicts if not v.update.deleted and v.target.kind == "tag"]
    peeled = git.object_info([f"{v.update.new}^{{}}" for v in live]) if live else []
    commits = {v.update.new: (info[0] if info else v.update.new) for v, info in zip(live, peeled)}
    repo_dir = os.path.abspath(os.environ.get("GIT_DIR", "."))
    lines = []
    for verdict in verdicts:
        update, target = verdict.update, verdict.target
        if update.deleted and not verdict.rule.allow_delete:
            continue
        commit = commits.get(update.new, update.new)
        job_id = spool.enqueue(config.spool, job_for(config, push, verdict, commit, repo_dir))
        what = f"deletion of {target.kind} {target.revision}" if update.deleted else f"{push.full_name}@{commit[:7]}"
        lines.append(f"{PREFIX} queued {what} -> {target.url(config.hub_endpoint)} ({target.revision}), job {job_id}")
    return lines
