"""The worker's housekeeping: prune old done/ jobs and passed model cards, settle prepared jobs, drop stale files.

It runs from :func:`.loop.loop`, at most every ``HOUSEKEEPING_EVERY`` seconds across all workers
(a stamp file in ``state/`` says when it last ran).
"""

from __future__ import annotations

import logging
import os

from ..config.model import Config
from ..errors import GitError, JobError
from ..gitea import git
from ..gitea.hook_input import is_zero
from ..redact import redact
from ..spool import claims, layout
from ..spool.job import parse

log = logging.getLogger("gitea_hf_hook.worker")
HOUSEKEEPING_EVERY = 600.0  # seconds between sweeps of done/, tmp/ and old lock files
STALE_TMP = 3600.0  # a tmp/ file this old belongs to a writer that died
# A prepared job still in tmp/ this long after pre-receive wrote it missed its post-receive (which runs seconds
# after pre-receive); only then is its ref compared with its commit, so a push in progress is never judged.
PREPARED_GRACE = 600.0
CARD_MARKERS_DAYS = 30.0  # a passed model card not seen since is checked again on its next push


def _say(message: str, level: int = logging.INFO) -> None:
    log.log(level, redact(message))


def sweep(config: Config, now: float) -> None:
    """At most every few minutes: prune old done/ jobs, settle tmp/ and delete unused lock files."""
    root, stamp = config.spool, os.path.join(config.spool, "state", "housekeeping")
    try:
        if os.stat(stamp).st_mtime > now - HOUSEKEEPING_EVERY:
            return
    except FileNotFoundError:
        pass
    for folder in ("done", "tmp"):
        for name in os.listdir(os.path.join(root, folder)):
            path = os.path.join(root, folder, name)
            try:
                mtime = os.stat(path).st_mtime
                if folder == "tmp" and name.startswith(layout.PREPARED) and name.endswith(".json"):
                    if mtime < now - PREPARED_GRACE:
                        _settle_prepared(root, name)
                elif mtime < now - (config.worker.keep_done_days * 86400 if folder == "done" else STALE_TMP):
                    os.unlink(path)
            except FileNotFoundError:
                pass  # promoted or removed by someone else meanwhile
    cards = os.path.join(root, "cards")
    for name in os.listdir(cards) if os.path.isdir(cards) else ():
        try:
            if os.stat(os.path.join(cards, name)).st_mtime < now - CARD_MARKERS_DAYS * 86400:
                os.unlink(os.path.join(cards, name))
        except FileNotFoundError:
            pass
    claims.remove_stale_locks(root, now, STALE_TMP)
    with open(stamp, "a"):
        pass
    os.utime(stamp, (now, now))


def _settle_prepared(root: str, name: str) -> None:
    """A job pre-receive prepared but post-receive never queued: queue it if its push landed, else drop it."""
    path = os.path.join(root, "tmp", name)
    with open(path, "rb") as f:
        data = f.read()
    try:
        job = parse(layout.job_file_name(name), data)
    except JobError as exc:
        _remove_prepared(path)
        _say(f"dropped unreadable prepared job tmp/{name}: {exc}", logging.WARNING)
        return
    ref, new, repo_dir, job_id = job.request.ref, job.request.new, job.request.repo_dir, job.id

    try:
        proc = git.run("rev-parse", "--verify", "--quiet", ref, cwd=repo_dir, ok_codes=(0, 1))
        current: str | None = proc.stdout.decode().strip() or None
    except (GitError, OSError):
        current = "unreadable"  # the repository is gone: nothing left to publish
    if current == new or (current is None and is_zero(new)):
        try:
            layout.queue_prepared(root, name)
        except FileNotFoundError:
            return  # post-receive got there after all
        layout.fsync_dir(os.path.join(root, "queue"))
        _say(f"queued job {job_id} ({ref} at {new[:7]} in {repo_dir}), which post-receive did not queue")
    else:
        _remove_prepared(path)
        _say(f"dropped prepared job {job_id}: {ref} in {repo_dir} is not at {new[:7]} (the push was refused "
             "after pre-receive, or the repository is gone)", logging.WARNING)


def _remove_prepared(path: str) -> None:
    """A prepared job and its notice."""
    for leftover in (path, path.removesuffix(".json") + ".notice"):
        try:
            os.unlink(leftover)
        except FileNotFoundError:
            pass
