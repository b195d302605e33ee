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
    return f"{PREFIX} queued {what} -> {target.url(config.hub_endpoint)} ({target.revision}), job {job.id}"


def _peeled(verdicts: list[Verdict]) -> dict[str, str]:
    """The commit each update publishes. Verdicts carry it once evaluated; the internal-error path has none, so
    tags are peeled here (one git process) rather than published as the tag object's id."""
    missing = sorted({v.update.new for v in verdicts if not v.commit and not v.update.deleted})
    found = {v.update.new: v.commit for v in verdicts if v.commit}
    if missing:
        from ..gitea import git

        for oid, info in zip(missing, git.object_info([f"{oid}^{{commit}}" for oid in missing]), strict=True):
            if info is not None:
                found[oid] = info[0]
    return found


def prepare_jobs(config: Config, push: Push, verdicts: list[Verdict]) -> None:
    """Write a prepared job per update that will publish (post-receive queues them once the refs moved)."""
    repo_dir = os.path.abspath(os.environ.get("GIT_DIR", "."))
    commits = _peeled(verdicts)
    for verdict in verdicts:
        update = verdict.update
        if update.deleted and not verdict.rule.allow_delete:
            continue
        commit = "" if update.deleted else commits.get(update.new)
        if commit is None:
            continue  # names no commit: git refused the update already, or will
        job = job_for(push, verdict, repo_dir, commit)
        layout.prepare(config.spool, job, notice(config, job))
