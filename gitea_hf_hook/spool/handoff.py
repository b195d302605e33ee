"""The handoff between the two hooks: pre-receive prepares each accepted update's job, post-receive queues it.

pre-receive, which has the config loaded and the commits peeled, writes each job to ``tmp/prepared-...``
(fsynced); post-receive, once git has updated the refs, only renames it into ``queue/``. That keeps post-receive
to a few milliseconds, and a job survives even a post-receive that never ran: the worker promotes a prepared
job whose ref now points at its commit, and drops one whose push was refused after pre-receive.

post-receive imports this module, so it imports ``os`` and ``zlib`` alone.
"""

from __future__ import annotations

import os
import zlib

from .layout import write_atomic

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .job import Job

PREPARED = "prepared-"


def prepared_prefix(repo_dir: str, ref: str, new: str) -> str:
    """The name both hooks derive for one update's prepared job, from what each reads on its standard input."""
    where = zlib.crc32(os.fsencode(repo_dir))
    which = zlib.crc32(os.fsencode(ref))
    return f"{PREPARED}{where:08x}{which:08x}-{new}."


def job_file_name(prepared: str) -> str:
    """``<id>.json`` for the prepared file ``<prefix><id>.json``: the name the job parser checks the id against."""
    return prepared[prepared.rindex(".", 0, -len(".json")) + 1:]


def prepare(spool: str, job: Job, notice: str) -> str:
    """Write a job to ``tmp/`` for post-receive to queue, with the line to show then; returns the job's id.

    The job is ``tmp/<prefix><id>.json``; the line sits beside it in ``<prefix><id>.notice``, so that
    post-receive moves and prints without parsing JSON.
    """
    from .job import dump

    request = job.request
    base = prepared_prefix(request.repo_dir, request.ref, request.new) + job.id
    tmp = os.path.join(spool, "tmp")
    with open(os.path.join(tmp, base + ".notice"), "w", encoding="utf-8") as f:
        f.write(notice)
    write_atomic(tmp, base + ".json", dump(job), spool)
    return job.id


def promote(spool: str, repo_dir: str, ref: str, new: str) -> list[str]:
    """Move the jobs prepared for one update into ``queue/``; returns their notices. The caller fsyncs queue/."""
    prefix = prepared_prefix(repo_dir, ref, new)
    tmp = os.path.join(spool, "tmp")
    notices = []
    for name in os.listdir(tmp):
        if not (name.startswith(prefix) and name.endswith(".json")):
            continue
        job_id = name[len(prefix):-len(".json")]
        os.rename(os.path.join(tmp, name), os.path.join(spool, "queue", f"{job_id}.json"))
        notice_file = os.path.join(tmp, f"{prefix}{job_id}.notice")
        try:
            with open(notice_file, encoding="utf-8") as f:
                notices.append(f.read())
            os.unlink(notice_file)
        except OSError:
            notices.append(f"hf-publish: queued job {job_id}")
    return notices
