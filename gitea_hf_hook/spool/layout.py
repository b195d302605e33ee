"""The spool's folders: a Maildir-style directory that git hooks write and workers drain.

Layout: ``tmp/`` (being written), ``queue/`` (waiting), ``active/`` (claimed by a worker), ``done/``,
``failed/`` (dead letter), ``state/``, and ``audit/`` (the hooks' audit drops, which the worker chains). A job is
written to ``tmp/``, fsynced, then renamed into ``queue/`` and the directory fsynced, so a reader never sees half
a job and a crash loses none. Queueing takes no lock; only claims do. This module stays light: post-receive
imports it, and it must not pull in ``filelock``.

The hand-off between the two hooks lives here too. pre-receive, which has the config loaded and the commits
peeled, writes each accepted update's job to ``tmp/prepared-...`` (fsynced); post-receive, once git has updated
the refs, only renames it into ``queue/``. That keeps post-receive to a few milliseconds, and a job survives even a
post-receive that never ran: the worker promotes a prepared job whose ref now points at its commit, and drops one
whose push was refused after pre-receive.
"""

from __future__ import annotations

import os

# typing costs a push 2 ms to import; annotations are strings here, so only type checkers need it.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from .job import Job

# Who may write where. The hooks, running as Gitea's user, write only the hook folders; everything the worker
# decides from lives in folders only the spool's owner (the worker's user) can write. Both kinds are setgid so that
# files stay in the spool's group, which Gitea's user and the worker's user share.
HOOK_FOLDERS = ("tmp", "queue", "cards", "audit")  # audit/: the hooks' audit drops (spool/audit_drop.py)
WORKER_FOLDERS = ("active", "done", "failed", "state", "state/targets", "state/locks")
FOLDERS = ("tmp", "queue", "active", "done", "failed", "state")  # the job folders, as the queue commands list them
HOOK_FOLDER_MODE = 0o2770
WORKER_FOLDER_MODE = 0o2750
ROOT_MODE = 0o2750


def mode_of(name: str) -> int:
    """The mode a spool folder is created with: ``name`` is relative to the spool ('' for the spool itself)."""
    return HOOK_FOLDER_MODE if name in HOOK_FOLDERS else WORKER_FOLDER_MODE if name else ROOT_MODE


def ensure_layout(spool: str, *, repair: bool = False) -> None:
    """Create the spool's folders that are missing, each with its mode; ``repair`` resets the modes of existing ones
    too (``install`` does, so an upgrade from a layout where Gitea's user could write every folder is fixed).

    Run as root (by ``install``), what it creates belongs to the spool folder's owner and group, so that root never
    leaves a folder the worker's user cannot write.
    """
    if not os.path.isdir(spool):
        os.makedirs(spool, exist_ok=True)
        os.chmod(spool, ROOT_MODE)  # past the umask
    elif repair:
        os.chmod(spool, ROOT_MODE)
    owner = os.stat(spool)
    for name in HOOK_FOLDERS + WORKER_FOLDERS:
        path = os.path.join(spool, name)
        if os.path.islink(path):  # never chmod or chown through a link Gitea's user may have planted
            from ..errors import SpoolError

            raise SpoolError(f"the spool folder {path} is a symbolic link", f"remove it (rm {path}); it is recreated")
        created = not os.path.isdir(path)
        if created:
            os.makedirs(path, exist_ok=True)
        if created or repair:
            os.chmod(path, mode_of(name))
            if os.geteuid() == 0:
                os.chown(path, owner.st_uid, owner.st_gid)


def writable_problem(spool: str) -> tuple[str, str] | None:
    """Why a hook could not queue a job in ``spool`` (problem, hint), or None when it can."""
    for name in ("tmp", "queue"):
        folder = os.path.join(spool, name)
        if not os.path.isdir(folder):
            return (f"the publish queue {folder} does not exist, so this push could not be published",
                    "an admin must run gitea-hf-hook install, which creates the spool")
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


def _write(tmp: str, folder: str, name: str, data: bytes) -> str:
    """Write ``data`` to the new file ``tmp``, fsync it, rename it to ``folder/name`` and fsync ``folder``."""
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o640)
    try:
        adopt_ownership(fd, folder)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    final = os.path.join(folder, name)
    os.rename(tmp, final)
    fsync_dir(folder)
    return final


def write_atomic(folder: str, name: str, data: bytes, spool: str) -> str:
    """Write ``folder/name`` by way of ``spool/tmp``, as the hooks queue jobs."""
    return _write(os.path.join(spool, "tmp", f"{name}.{os.getpid()}.{os.urandom(4).hex()}"), folder, name, data)


def write_private(folder: str, name: str, data: bytes) -> str:
    """Write ``folder/name`` atomically, for the worker's own folders: the temporary file is a dotfile in
    ``folder`` itself, never in ``tmp/``, where Gitea's user could swap it before the rename."""
    return _write(os.path.join(folder, f".{name}.{os.getpid()}.{os.urandom(4).hex()}"), folder, name, data)


def adopt_ownership(fd: int, folder: str) -> None:
    """Give a file root just created to the owner and group of its folder, so root never locks the worker's user
    out of a file it needs (a worker started as root by mistake, an admin command run with sudo)."""
    if os.geteuid() == 0:
        info = os.stat(folder)
        os.fchown(fd, info.st_uid, info.st_gid)


MAX_FILE = 1 << 20  # a job or state file is a few KiB; anything this large is not one


def read_entry(folder: str, name: str) -> bytes:
    """The bytes of the regular file ``folder/name``, never through a link; raises OSError (ELOOP for a link,
    EFBIG for a file too large to be a job)."""
    import errno
    import stat

    fd = os.open(os.path.join(folder, name), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(errno.EINVAL, "not a regular file", name)
        if info.st_size > MAX_FILE:
            raise OSError(errno.EFBIG, f"larger than {MAX_FILE} bytes", name)
        return os.read(fd, MAX_FILE + 1)
    finally:
        os.close(fd)


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


# --- the hand-off between pre-receive and post-receive ---------------------------------------------------------

PREPARED = "prepared-"


def _identity(repo_dir: str, ref: str, new: str) -> str:
    # NUL cannot occur in a path or a ref name, so the three fields cannot run into each other.
    return f"{repo_dir}\0{ref}\0{new}"


def job_file_name(prepared: str) -> str:
    """``<id>.json`` for the prepared file ``prepared-<new>-<id>.json``: the name the job parser checks.

    Release 0.1 named them ``prepared-<checksums>-<new>.<id>.json``; those are still read, so that a job prepared
    just before an upgrade is not lost. Empty for a name of another shape, which the parser then refuses.
    """
    rest = prepared.removeprefix(PREPARED)
    if "." in rest.removesuffix(".json"):
        return rest.removesuffix(".json").rpartition(".")[2] + ".json"
    return rest.partition("-")[2]


def prepare(spool: str, job: Job, notice: str) -> str:
    """Write a job to ``tmp/`` for post-receive to queue, with the line to show then; returns the job's id.

    The job is ``tmp/prepared-<new>-<id>.json``. Beside it, ``.notice`` holds the update it belongs to
    (repository folder, ref and new id) and the line for the pusher, so that post-receive checks and moves it
    without parsing JSON.
    """
    from .job import dump

    request = job.request
    base = os.path.join(spool, "tmp", f"{PREPARED}{request.new}-{job.id}")
    with open(base + ".notice", "w", encoding="utf-8", errors="surrogateescape") as f:
        f.write(_identity(request.repo_dir, request.ref, request.new) + "\n" + notice)
    write_atomic(os.path.dirname(base), os.path.basename(base) + ".json", dump(job), spool)
    return job.id


def queue_prepared(spool: str, name: str) -> str:
    """Move the prepared job ``tmp/name`` into ``queue/``, dropping its notice; returns the job's id. The caller
    fsyncs queue/."""
    job_name = job_file_name(name)
    os.rename(os.path.join(spool, "tmp", name), os.path.join(spool, "queue", job_name))
    try:
        os.unlink(os.path.join(spool, "tmp", name.removesuffix(".json") + ".notice"))
    except FileNotFoundError:
        pass
    return job_name.removesuffix(".json")


def promote(spool: str, repo_dir: str, ref: str, new: str) -> list[tuple[str, str]]:
    """Queue the jobs prepared for exactly this update; returns each one's notice and id. The caller fsyncs queue/.

    A job is promoted only when its notice names this repository folder, ref and new id, compared whole: a
    prepared job of another update, or one whose notice is lost, is left for the worker's housekeeping, which
    reads the job itself.
    """
    tmp = os.path.join(spool, "tmp")
    start, identity = f"{PREPARED}{new}-", _identity(repo_dir, ref, new)
    notices = []
    for name in os.listdir(tmp):
        if not (name.startswith(start) and name.endswith(".json")):
            continue
        try:
            with open(os.path.join(tmp, name.removesuffix(".json") + ".notice"), encoding="utf-8",
                      errors="surrogateescape") as f:
                recorded, _, notice = f.read().partition("\n")
        except FileNotFoundError:
            continue
        if recorded == identity:
            notices.append((notice, queue_prepared(spool, name)))
    return notices
