"""The worker's housekeeping: prune old done/ jobs and passed model cards, settle prepared jobs, drop stale files.

It runs from :func:`.loop.loop`, at most every ``HOUSEKEEPING_EVERY`` seconds across all workers
(a stamp file in ``state/`` says when it last ran).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

from ..config.model import Config
from ..errors import GitError, JobError, PublishError
from ..gitea import git
from ..gitea.hook_input import is_zero
from ..spool import claims, layout
from ..spool.job import parse
from . import audit
from .derive import repository_folder, route
from .logs import say as _say

HOUSEKEEPING_EVERY = 600.0  # seconds between sweeps of done/, tmp/ and old lock files
STALE_TMP = 3600.0  # a tmp/ file this old belongs to a writer that died
# A prepared job still in tmp/ this long after pre-receive wrote it missed its post-receive (which runs seconds
# after pre-receive); only then is its ref compared with its commit, so a push in progress is never judged.
PREPARED_GRACE = 600.0
CARD_MARKERS_DAYS = 30.0  # a passed model card not seen since is checked again on its next push



def _open_folder(path: str) -> int:
    """A descriptor for a spool folder, refusing a link (ELOOP): every entry is then reached through it."""
    return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)


def _prune(folder: int, older_than: float, keep: Callable[[str], bool] = lambda name: False) -> None:
    """Remove the entries of ``folder`` last changed before ``older_than``; a link is removed, never followed."""
    for name in os.listdir(folder):
        if keep(name):
            continue
        try:
            if os.stat(name, dir_fd=folder, follow_symlinks=False).st_mtime < older_than:
                os.unlink(name, dir_fd=folder)
        except FileNotFoundError:
            pass  # promoted or removed by someone else meanwhile
        except IsADirectoryError:
            pass  # not ours to remove: a folder someone made here


def sweep(config: Config, now: float) -> None:
    """At most every few minutes: prune old done/ jobs, settle tmp/ and delete unused lock files."""
    root, stamp = config.spool, os.path.join(config.spool, "state", "housekeeping")
    try:
        if os.stat(stamp).st_mtime > now - HOUSEKEEPING_EVERY:
            return
    except FileNotFoundError:
        pass
    done = _open_folder(os.path.join(root, "done"))
    try:
        _prune(done, now - config.worker.keep_done_days * 86400)
    finally:
        os.close(done)
    tmp = _open_folder(os.path.join(root, "tmp"))
    try:
        def prepared(name: str) -> bool:
            return name.startswith(layout.PREPARED) and name.endswith(".json")

        for name in [n for n in os.listdir(tmp) if prepared(n)]:
            try:
                info = os.stat(name, dir_fd=tmp, follow_symlinks=False)
                if info.st_mtime < now - PREPARED_GRACE:
                    _settle_prepared(config, tmp, name)
            except FileNotFoundError:
                pass
        # A prepared job's notice waits for its job; anything else this old belongs to a writer that died.
        _prune(tmp, now - STALE_TMP, keep=lambda n: prepared(n) or (
            n.startswith(layout.PREPARED) and n.endswith(".notice") and _exists(tmp, n[:-len(".notice")] + ".json")))
    finally:
        os.close(tmp)
    cards = _open_folder(os.path.join(root, "cards"))
    try:
        _prune(cards, now - CARD_MARKERS_DAYS * 86400)
    finally:
        os.close(cards)
    claims.remove_stale_locks(root, now, STALE_TMP)
    fd = os.open(stamp, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o640)
    try:
        layout.adopt_ownership(fd, os.path.dirname(stamp))
        os.utime(fd, (now, now))
    finally:
        os.close(fd)


def _exists(folder: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=folder, follow_symlinks=False)
        return True
    except FileNotFoundError:
        return False


def _settle_prepared(config: Config, tmp: int, name: str) -> None:
    """A job pre-receive prepared but post-receive never queued: queue it if its push landed, else drop it.

    The job is Gitea's user's to write, so its repository folder is derived from the config, never read from it.
    """
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=tmp)
        try:
            data = os.read(fd, layout.MAX_FILE + 1)
        finally:
            os.close(fd)
        job = parse(layout.job_file_name(name), data)
    except (JobError, OSError) as exc:
        _remove_prepared(tmp, name)
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        _say(f"dropped unreadable prepared job tmp/{name}: {why}", logging.WARNING)
        return
    ref, new, job_id = job.request.ref, job.request.new, job.id
    try:
        owner, repo, _rule, _target = route(config, job)
        folder = repository_folder(config, owner, repo)
        current = git.rev_parse(ref, cwd=folder)
    except (PublishError, GitError) as exc:
        _remove_prepared(tmp, name)
        _say(f"dropped prepared job {job_id} ({job.request.repository} {ref}): {exc}", logging.WARNING)
        return
    if current == new or (current is None and is_zero(new)):
        queue = _open_folder(os.path.join(config.spool, "queue"))
        try:
            os.rename(name, layout.job_file_name(name), src_dir_fd=tmp, dst_dir_fd=queue)
            os.fsync(queue)
        except FileNotFoundError:
            return  # post-receive got there after all
        finally:
            os.close(queue)
        _remove_prepared(tmp, name, job=False)
        audit.job_queued(config, job)
        _say(f"queued job {job_id} ({ref} at {new[:7]} in {job.request.repository}), which post-receive did not "
             "queue")
    else:
        _remove_prepared(tmp, name)
        _say(f"dropped prepared job {job_id}: {ref} of {job.request.repository} is not at {new[:7]} (the push was "
             "refused after pre-receive)", logging.WARNING)


def _remove_prepared(tmp: int, name: str, *, job: bool = True) -> None:
    """A prepared job (unless ``job`` is false) and its notice."""
    for leftover in ((name,) if job else ()) + (name.removesuffix(".json") + ".notice",):
        try:
            os.unlink(leftover, dir_fd=tmp)
        except FileNotFoundError:
            pass
        except OSError as exc:  # a folder Gitea's user made under that name: not ours to remove
            _say(f"cannot remove tmp/{leftover}: {exc.strerror}", logging.WARNING)
