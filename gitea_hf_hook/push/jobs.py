"""Jobs for accepted updates of publishing refs, prepared by pre-receive for post-receive to queue."""

from __future__ import annotations

import os
import time

from ..config.model import Config
from ..gitea.environment import Push
from ..spool import layout
from ..spool.job import Job, PushRecord, Request, new_id
from .policy import Verdict
from .report import PREFIX


def job_for(push: Push, verdict: Verdict, repo_dir: str, commit: str) -> Job:
    """The job for one update. It holds names and ids only, never a credential."""
    update = verdict.update
    pushed = PushRecord(owner=push.owner, name=push.name, repo_id=push.repo_id, pusher=push.pusher,
                        pusher_id=push.pusher_id, deploy_key_id=push.deploy_key_id, trigger=push.trigger,
                        pr_id=push.pr_id)
    request = Request(repository=push.full_name, repo_dir=repo_dir, ref=update.ref, old=update.old, new=update.new,
                      commit=commit, target=verdict.target)
    return Job(id=new_id(), created=time.time(), pushed=pushed, request=request)


def notice(config: Config, job: Job) -> str:
    """The line the pusher sees once the job is queued."""
    target = job.target
    if job.request.commit:
        what = f"{job.request.repository}@{job.request.commit[:7]}"
    else:
        what = f"deletion of {target.kind} {target.revision}"
    from ..checks.problems import show_path  # a tag name may hold bidi controls

    return show_path(f"{PREFIX} queued {what} -> {target.url(config.hub_endpoint)} ({target.revision}), job {job.id}")


def prepare_jobs(config: Config, push: Push, verdicts: list[Verdict]) -> dict[str, str]:
    """Write a prepared job per update that passed every rule (post-receive queues them once the refs moved);
    returns each prepared job's id by its ref, for the audit drop.

    A verdict with problems never publishes, even when ``enforce`` is off and its push lands.
    """
    repo_dir = os.path.abspath(os.environ.get("GIT_DIR", "."))
    prepared: dict[str, str] = {}
    for verdict in verdicts:
        update = verdict.update
        if verdict.problems or (update.deleted and not verdict.rule.allow_delete):
            continue
        commit = "" if update.deleted else verdict.commit
        if not update.deleted and not commit:
            continue  # names no commit: git refused the update already, or will
        job = job_for(push, verdict, repo_dir, commit)
        prepared[update.ref] = layout.prepare(config.spool, job, notice(config, job))
    return prepared
