"""The publish queue: a Maildir-style directory that git hooks write and workers drain.

Layout: ``tmp/`` (being written), ``queue/`` (waiting), ``active/`` (claimed by a worker), ``done/``,
``failed/`` (dead letter) and ``state/``. A job is written to ``tmp/``, fsynced, then renamed into ``queue/``
and the directory fsynced, so a reader never sees half a job and a crash loses none. Queueing takes no lock;
only claims do. This module stays light: hooks import it, and it must not pull in ``filelock``.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

FOLDERS = ("tmp", "queue", "active", "done", "failed", "state")
JOB_VERSION = 1


def ensure_layout(spool: str) -> None:
    """Create the spool's folders if they are missing."""
    for name in FOLDERS:
        os.makedirs(os.path.join(spool, name), exist_ok=True)


def writable_problem(spool: str) -> tuple[str, str] | None:
    """Why a hook could not queue a job in ``spool`` (problem, hint), or None when it can."""
    for name in ("tmp", "queue"):
        folder = os.path.join(spool, name)
        if not os.path.isdir(folder):
            return (f"the publish queue {folder} does not exist, so this push could not be published",
                    "an admin must run: gitea-hf-hook install (it creates the spool)")
        if not os.access(folder, os.W_OK | os.X_OK):
            return (f"the publish queue {folder} is not writable by the Gitea server, so this push could not be "
                    "published", "an admin must make the spool writable by the user Gitea runs as")
    return None


def new_job_id(now: float | None = None) -> str:
    """A unique, time-ordered job id such as ``20261125-205226-3f9a1c0b``."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(time.time() if now is None else now))
    return f"{stamp}-{os.urandom(4).hex()}"


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(folder: str, name: str, data: bytes, spool: str) -> str:
    """Write ``data`` to ``spool/tmp``, fsync it, rename it to ``folder/name`` and fsync ``folder``."""
    tmp = os.path.join(spool, "tmp", f"{name}.{os.getpid()}.{os.urandom(4).hex()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    final = os.path.join(folder, name)
    os.rename(tmp, final)
    _fsync_dir(folder)
    return final


def enqueue(spool: str, job: dict[str, Any]) -> str:
    """Queue a job; returns its id. The job is in ``queue/`` whole, or not at all."""
    job = {"version": JOB_VERSION, **job}
    job.setdefault("id", new_job_id())
    data = json.dumps(job, sort_keys=True, indent=1).encode()
    write_atomic(os.path.join(spool, "queue"), job["id"] + ".json", data, spool)
    return job["id"]
