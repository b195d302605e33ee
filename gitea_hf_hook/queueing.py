"""Jobs for accepted updates of publishing refs, prepared by pre-receive and queued by post-receive."""

from __future__ import annotations

import os
import time
from typing import Any

from . import spool
from .config import Config
from .gitea import Push
from .policy import Verdict
from .report import PREFIX


def job_for(config: Config, push: Push, verdict: Verdict, repo_dir: str) -> dict[str, Any]:
    """The job record for one update. It holds names and ids only, never a credential."""
    update, target = verdict.update, verdict.target
    return {
        "id": spool.new_job_id(),
        "created": time.time(),
        "repo_dir": repo_dir,
        "gitea": {"owner": push.owner, "name": push.name, "repo_id": push.repo_id, "pusher": push.pusher,
                  "pusher_id": push.pusher_id, "deploy_key_id": push.deploy_key_id, "trigger": push.trigger,
                  "pr_id": push.pr_id},
        "ref": update.ref,
        "old": update.old,
        "new": update.new,
        "commit": verdict.commit,
        "target": {"hub_repo": target.hub_repo, "repo_type": target.repo_type, "kind": target.kind,
                   "name": target.name, "revision": target.revision, "url": target.url(config.hub_endpoint)},
        "attempts": 0,
        "not_before": 0,
    }


def notice(job: dict[str, Any]) -> str:
    """The line the pusher sees once the job is queued."""
    target = job["target"]
    if not job["new"].strip("0"):
        what = f"deletion of {target['kind']} {target['revision']}"
    else:
        what = f"{job['gitea']['owner']}/{job['gitea']['name']}@{job['commit'][:7]}"
    return f"{PREFIX} queued {what} -> {target['url']} ({target['revision']}), job {job['id']}"


def prepare_jobs(config: Config, push: Push, verdicts: list[Verdict]) -> None:
    """Write a prepared job per update that will publish (post-receive queues them once the refs moved)."""
    repo_dir = os.path.abspath(os.environ.get("GIT_DIR", "."))
    for verdict in verdicts:
        if verdict.update.deleted and not verdict.rule.allow_delete:
            continue
        job = job_for(config, push, verdict, repo_dir)
        spool.prepare(config.spool, job, notice(job))
