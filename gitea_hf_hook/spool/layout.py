"""The spool's folders: a Maildir-style directory that git hooks write and workers drain.

Layout: ``tmp/`` (being written), ``queue/`` (waiting), ``active/`` (claimed by a worker), ``done/``,
``failed/`` (dead letter) and ``state/``. A job is written to ``tmp/``, fsynced, then renamed into ``queue/``
and the directory fsynced, so a reader never sees half a job and a crash loses none. Queueing takes no lock;
only claims do. This module stays light: post-receive imports it, and it must not pull in ``filelock``.
"""

from __future__ import annotations

import os

# typing costs a push 2 ms to import; annotations are strings here, so only type checkers need it.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from .job import Job

FOLDERS = ("tmp", "queue", "active", "done", "failed", "state")
STATE_FOLDERS = ("state/targets", "state/locks", "state/cards")


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


def enqueue(spool: str, job: Job) -> str:
    """Queue a job; returns its id. The job is in ``queue/`` whole, or not at all."""
    from .job import dump

    write_atomic(os.path.join(spool, "queue"), job.id + ".json", dump(job), spool)
    return job.id


def job_names(spool: str, folder: str) -> list[str]:
    """The job file names in ``spool/folder``, oldest id first; other files (``.reason``, dotfiles) are skipped."""
    try:
        names = os.listdir(os.path.join(spool, folder))
    except FileNotFoundError:
        return []
    return sorted(n for n in names if n.endswith(".json") and not n.startswith("."))
