"""The publish queue: a Maildir-style directory that git hooks write and workers drain.

Layout: ``tmp/`` (being written), ``queue/`` (waiting), ``active/`` (claimed by a worker), ``done/``,
``failed/`` (dead letter) and ``state/``. A job is written to ``tmp/``, fsynced, then renamed into ``queue/``
and the directory fsynced, so a reader never sees half a job and a crash loses none. Queueing takes no lock;
only claims do. This module stays light: hooks import it, and it must not pull in ``filelock``.

Jobs are written in two steps across the two hooks. pre-receive, which has the config loaded and the
commits peeled, writes each accepted update's job to ``tmp/prepared-...`` (fsynced); post-receive, once git
has updated the refs, only renames it into ``queue/``. That keeps post-receive to a few milliseconds, and a
job survives even a post-receive that never ran: the worker promotes a prepared job whose ref now points at
its commit, and drops one whose push was refused after pre-receive.
"""

from __future__ import annotations

import os
import time
import zlib

# typing costs a push 2 ms to import; annotations are strings here, so only type checkers need it.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

FOLDERS = ("tmp", "queue", "active", "done", "failed", "state")
STATE_FOLDERS = ("state/targets", "state/locks", "state/cards")
JOB_VERSION = 1


# Gitea (the hooks) and the worker run as different users sharing a group, so the worker alone can read the
# Hub tokens: folders the group can write, and setgid so that what either creates stays in that group.
FOLDER_MODE = 0o2770


def ensure_layout(spool: str) -> None:
    """Create the spool's folders if they are missing, writable by the owner's group."""
    for path in (spool, *(os.path.join(spool, name) for name in FOLDERS + STATE_FOLDERS)):
        if not os.path.isdir(path):
            os.makedirs(path, exist_ok=True)
            os.chmod(path, FOLDER_MODE)  # past the umask


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


def fsync_dir(path: str) -> None:
    """Make renames into ``path`` durable."""
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
    fsync_dir(folder)
    return final


def enqueue(spool: str, job: dict[str, Any]) -> str:
    """Queue a job; returns its id. The job is in ``queue/`` whole, or not at all."""
    import json

    job = {"version": JOB_VERSION, **job}
    job.setdefault("id", new_job_id())
    data = json.dumps(job, sort_keys=True, indent=1).encode()
    write_atomic(os.path.join(spool, "queue"), job["id"] + ".json", data, spool)
    return job["id"]


# --- reading and moving jobs (worker side; still standard library only) ----------------------------------------

class BadJob(ValueError):
    """A file in the spool that is not a job this version can publish; the message says why."""


def job_bytes(job: dict[str, Any]) -> bytes:
    """A job as stored: sorted, indented JSON (``default=str`` so a stray value never loses the job)."""
    import json

    return json.dumps(job, sort_keys=True, indent=1, default=str).encode()


def job_names(spool: str, folder: str) -> list[str]:
    """The job file names in ``spool/folder``, oldest id first; other files (``.reason``, dotfiles) are skipped."""
    try:
        names = os.listdir(os.path.join(spool, folder))
    except FileNotFoundError:
        return []
    return sorted(n for n in names if n.endswith(".json") and not n.startswith("."))


def parse_job(name: str, data: bytes) -> dict[str, Any]:
    """The job stored as ``name``, checked; raises BadJob saying what is wrong with it."""
    import json

    try:
        job = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadJob(f"not valid JSON ({exc})") from None
    if not isinstance(job, dict):
        raise BadJob("not a JSON object")
    if job.get("version") != JOB_VERSION:
        raise BadJob(f"job format version {job.get('version')!r} is not the one this worker reads ({JOB_VERSION}); "
                     "run the same gitea-hf-hook version on the Gitea server and the workers")
    # The id names lock and state files: it must be the file's own name, never a path taken from the content.
    if job.get("id") != name.removesuffix(".json"):
        raise BadJob(f"its id {job.get('id')!r} does not match its file name {name}")
    target = job.get("target")
    if not isinstance(target, dict) or not all(isinstance(target.get(k), str) and target.get(k)
                                               for k in ("hub_repo", "repo_type", "kind", "revision")):
        raise BadJob("its target (hub_repo, repo_type, kind, revision) is missing or incomplete")
    for key, kind in (("created", (int, float)), ("commit", str), ("attempts", int), ("not_before", (int, float))):
        if key in ("attempts", "not_before") and key not in job:
            continue
        if not isinstance(job.get(key), kind) or isinstance(job.get(key), bool):
            raise BadJob(f"its {key!r} is missing or of the wrong type")
    job.setdefault("attempts", 0)
    job.setdefault("not_before", 0)
    job.setdefault("errors", [])
    return job


PREPARED = "prepared-"


def prepared_prefix(repo_dir: str, ref: str, new: str) -> str:
    """The name both hooks derive for one update's prepared job, from what each reads on its standard input."""
    where = zlib.crc32(os.fsencode(repo_dir))
    which = zlib.crc32(os.fsencode(ref))
    return f"{PREPARED}{where:08x}{which:08x}-{new}."


def prepare(spool: str, job: dict[str, Any], notice: str) -> str:
    """Write a job to ``tmp/`` for post-receive to queue, with the line to show then; returns the job's id.

    The job is ``tmp/<prefix><id>.json``; the line sits beside it in ``<prefix><id>.notice``, so that
    post-receive moves and prints without parsing JSON.
    """
    import json

    job = {"version": JOB_VERSION, **job}
    job.setdefault("id", new_job_id())
    base = prepared_prefix(job["repo_dir"], job["ref"], job["new"]) + job["id"]
    tmp = os.path.join(spool, "tmp")
    with open(os.path.join(tmp, base + ".notice"), "w", encoding="utf-8") as f:
        f.write(notice)
    write_atomic(tmp, base + ".json", json.dumps(job, sort_keys=True, indent=1).encode(), spool)
    return str(job["id"])


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
