"""Claims: which worker may move a job out of ``queue/`` and publish it, and which may publish a target.

A claim is an exclusive, non-blocking OS lock (``flock`` through ``filelock.UnixFileLock``, never a soft lock) on
``state/locks/job-<id>.lock``, followed by ``os.rename(queue/<id>.json, active/<id>.json)``. The claimer keeps
the lock for the whole publish, and moves the job on (``done/``, ``failed/``, back to ``queue/``) before letting
go. The lock file records the holder (host, pid, started) for ``status``.

Nothing here uses timeouts. The kernel drops a lock when its process dies, even by ``kill -9``, so a job left in
``active/`` whose lock can be taken belongs to a dead worker, and :func:`reclaim` hands it to the caller. A
second lock per target, ``state/locks/target-<hash>.lock``, keeps two workers from publishing the same Hub
branch or tag at once.

Several hosts may share one spool over a network file system whose locks reach the server: NFSv4, or NFSv3 with
``lockd``/``statd`` running, mounted without ``nolock`` and without ``local_lock=flock``/``local_lock=all`` (Linux
then carries ``flock`` to the server as a POSIX lock). When a host dies, its locks end when the server notices
(the NFSv4 lease, about 90 s, or NLM's reboot notice), and its jobs are reclaimed then. A file system without
working locks makes every claim fail with a SpoolError; it is never silently unsafe.

Only workers and admin commands import this module: :mod:`filelock` is imported lazily, off the hook path.
"""

from __future__ import annotations

import errno
import json
import os
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

from ..errors import SpoolError
from . import layout
from .job import Job, dump


@dataclass(frozen=True)
class Holder:
    """Who holds a claim: written into the lock file when it is taken."""

    host: str
    pid: int
    started: float

    def describe(self) -> str:
        return f"{self.host} pid {self.pid}"


def me(now: float) -> Holder:
    """This process, as a holder claiming at ``now``."""
    return Holder(socket.gethostname(), os.getpid(), now)


def lock_path(spool: str, job_id: str) -> str:
    return os.path.join(spool, "state", "locks", f"job-{job_id}.lock")


def target_lock_path(spool: str, key: str) -> str:
    return os.path.join(spool, "state", "locks", f"target-{key}.lock")


def try_lock(path: str, holder: Holder | None) -> Any | None:
    """Take the lock at ``path`` without waiting (recording ``holder`` in it); None when someone else holds it."""
    from filelock import Timeout, UnixFileLock  # lazily: hooks import the spool, and must not pay for this

    os.makedirs(os.path.dirname(path), exist_ok=True)
    _create(path)
    data = json.dumps(asdict(holder), sort_keys=True).encode() if holder else b""

    def record(fd: int) -> None:
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)

    # fallback_to_soft=False: a soft lock outlives a killed worker and would need the timeouts we refuse to use.
    lock = UnixFileLock(path, mode=0o660, thread_local=False, fallback_to_soft=False,
                        on_acquired=record if holder else None)
    try:
        lock.acquire(blocking=False)
    except Timeout:
        return None
    except OSError as exc:
        if exc.errno in (errno.ENOSYS, errno.ENOLCK, errno.EOPNOTSUPP):
            raise SpoolError(f"the file system holding {os.path.dirname(path)} does not support file locks "
                             f"({exc.strerror}), so workers cannot claim jobs safely",
                             "keep the spool on a local file system, or on NFS with working locks: "
                             "that is NFSv4, or NFSv3 with lockd, mounted without nolock or local_lock=flock") from None
        raise
    return lock


def _create(path: str) -> None:
    """Make sure the lock file exists, with the spool's group and a mode the group may use; raise SpoolError naming
    the file, its owner and the fix when this user cannot open it (say, root made it)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o660)
    except PermissionError:
        try:
            import pwd

            info = os.stat(path)
            owner = pwd.getpwuid(info.st_uid).pw_name
        except (OSError, KeyError):
            owner = "another user"
        folder = os.stat(os.path.dirname(path))
        try:
            import pwd

            spool_owner = pwd.getpwuid(folder.st_uid).pw_name
        except KeyError:
            spool_owner = str(folder.st_uid)
        raise SpoolError(f"cannot open the lock file {path}, which belongs to {owner}",
                         f"chown {spool_owner} {path} (or remove it); run the worker as {spool_owner}, "
                         "not as root") from None
    try:
        layout.adopt_ownership(fd, os.path.dirname(path))
    finally:
        os.close(fd)


def read_holder(path: str) -> Holder | None:
    """The holder last recorded in a lock file (it may have died since), or None."""
    try:
        with open(path, "rb") as f:
            data = json.loads(f.read() or b"null")
        return Holder(str(data["host"]), int(data["pid"]), float(data["started"]))
    except (OSError, ValueError, TypeError, KeyError):
        return None


def is_held(path: str) -> bool:
    """Whether a live process holds the lock at ``path`` (probed by trying it, which leaves its record alone)."""
    if not os.path.exists(path):
        return False
    lock = try_lock(path, None)
    if lock is None:
        return True
    lock.release()
    return False


@contextmanager
def holding(path: str, holder: Holder | None = None) -> Iterator[bool]:
    """Hold the lock at ``path`` for a ``with`` block if it is free; yields whether it was taken."""
    lock = try_lock(path, holder)
    try:
        yield lock is not None
    finally:
        if lock is not None:
            lock.release()


@dataclass
class Claim:
    """A job in ``active/`` held by this process. :meth:`finish` moves it on and lets it go."""

    spool: str
    name: str  # the file name, <id>.json
    lock: Any
    previous: Holder | None = None  # for a reclaimed job: the worker that died holding it
    released: bool = False

    @property
    def job_id(self) -> str:
        return self.name.removesuffix(".json")

    @property
    def path(self) -> str:
        return os.path.join(self.spool, "active", self.name)

    def read(self) -> bytes:
        """The claimed job's bytes, read once: Gitea's user may own the file, so it is parsed from this copy."""
        return layout.read_entry(os.path.join(self.spool, "active"), self.name)

    def finish(self, folder: str, job: Job | None = None, *, note: str | None = None) -> None:
        """Rewrite the job (when given), move it to ``folder`` and release the claim.

        ``note`` becomes ``folder/<id>.reason``, for files that cannot carry their own reason (unreadable JSON).
        Every step is an atomic rename: a crash leaves the job whole in ``active/`` or in ``folder``.
        """
        destination = os.path.join(self.spool, folder)
        if job is not None:
            layout.write_private(os.path.join(self.spool, "active"), self.name, dump(job))
        if note is not None:
            layout.write_private(destination, self.job_id + ".reason", note.encode(errors="backslashreplace") + b"\n")
        os.rename(self.path, os.path.join(destination, self.name))
        layout.fsync_dir(destination)
        self.release()

    def release(self) -> None:
        """Let go of the lock (idempotent). A job still in ``active/`` is then reclaimed by the next pass."""
        if not self.released:
            self.released = True
            self.lock.release()


def claim(spool: str, name: str, now: float) -> Claim | None:
    """Claim the queued job ``name``: lock it, then move it to ``active/``. None when it is taken or gone."""
    lock = try_lock(lock_path(spool, name.removesuffix(".json")), me(now))
    if lock is None:
        return None
    try:
        os.rename(os.path.join(spool, "queue", name), os.path.join(spool, "active", name))
    except FileNotFoundError:
        # Another worker took it and finished between our listing and our lock.
        lock.release()
        return None
    except OSError as exc:
        # A folder or other entry Gitea's user made there, which cannot be moved: never a reason to stop the pass.
        lock.release()
        raise SpoolError(f"cannot claim {os.path.join(spool, 'queue', name)}: {exc.strerror}",
                         "it is not a job file: remove it") from None
    except BaseException:
        lock.release()
        raise
    # No fsync of active/: a claim lost in a crash leaves the job in queue/, where it is taken again.
    return Claim(spool, name, lock)


def reclaim(spool: str, now: float, on_error: Callable[[SpoolError], None] | None = None) -> list[Claim]:
    """Claims on every job in ``active/`` whose worker is gone (its lock was free). The caller moves them on.

    A lock this user cannot open is handed to ``on_error`` (or raised without one), and the others are still
    looked at.
    """
    found = []
    for name in layout.job_names(spool, "active"):
        path = lock_path(spool, name.removesuffix(".json"))
        previous = read_holder(path)  # before our own record overwrites it
        try:
            lock = try_lock(path, me(now))
        except SpoolError as exc:
            if on_error is None:
                raise
            on_error(exc)
            continue
        if lock is None:
            continue  # a live worker is publishing it
        if not os.path.exists(os.path.join(spool, "active", name)):
            lock.release()  # its worker finished it between our listing and our lock
            continue
        found.append(Claim(spool, name, lock, previous))
    return found


def lock_target(spool: str, key: str, now: float) -> Any | None:
    """The per-target lock (release it with ``.release()``), or None while another worker publishes there."""
    return try_lock(target_lock_path(spool, key), me(now))


def remove_stale_locks(spool: str, now: float, older_than: float) -> int:
    """Delete job lock files whose job left ``queue/`` and ``active/`` more than ``older_than`` seconds ago.

    Each is deleted while held, and only after checking again that its job is not back (``queue retry`` takes
    the same lock), so no claimer can be left holding a lock on a deleted file while another holds a new one.
    """
    folder = os.path.join(spool, "state", "locks")
    removed = 0
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return 0
    for name in names:
        if not (name.startswith("job-") and name.endswith(".lock")):
            continue
        path = os.path.join(folder, name)
        job = name[len("job-"):-len(".lock")] + ".json"
        try:
            if os.stat(path).st_mtime > now - older_than:
                continue
        except FileNotFoundError:
            continue
        with holding(path) as held:
            if held and not any(os.path.exists(os.path.join(spool, f, job)) for f in ("queue", "active")):
                os.unlink(path)
                removed += 1
    return removed
