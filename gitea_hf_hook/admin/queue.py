"""What ``gitea-hf-hook queue list|show|retry|cancel|purge`` and ``gitea-hf-hook status`` read and do.

Each view is data first (JSON-able dicts, for ``--json``) and lines of text second. Reading takes no lock;
``retry`` takes the job's claim lock, and ``cancel`` claims the job as a worker does, so neither races a worker or
the lock-file sweep. Both write only the worker's folders, as the worker would: they run as the spool's owner or
root, and what root creates is given to the spool's owner.

A cancelled job ends in ``cancelled/``, a folder of the worker's beside ``done/`` and ``failed/``: rewritten as the
spool owner's file, its history ending with the admin's reason. The worker never reads that folder, housekeeping
never prunes it, and ``queue purge`` empties it.
"""

from __future__ import annotations

import errno
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..config.model import Config
from ..errors import JobError, SpoolError
from ..redact import clean, escape
from ..spool import claims, layout
from ..spool.codec import to_data
from ..spool.job import Attempt, Job, dump, parse
from ..worker import metrics

STATES = {"queue": "queued", "active": "active", "failed": "failed", "cancelled": "cancelled", "done": "done"}
CANCELLED = "cancelled"
CANCELLED_BY = "cancelled by an admin: "  # how a cancellation starts in the job's history
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*\Z")


@dataclass
class Entry:
    """One job file as found: ``job`` is None when it cannot be read, and ``problem`` says why."""

    id: str
    folder: str
    job: Job | None
    problem: str = ""
    holder: claims.Holder | None = None
    held: bool = False

    @property
    def state(self) -> str:
        return STATES[self.folder]


def when(stamp: float) -> str:
    """A time as the commands show it: ``2026-11-25T20:52:26Z``."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(stamp))


def age(seconds: float) -> str:
    """A duration in its two largest units, rounded down: ``42s``, ``3m07s``, ``5h00m``, ``2d04h``."""
    s = max(int(seconds), 0)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def target_text(job: Job | None) -> str:
    return "?" if job is None else job.target.label


_WHY = {errno.ELOOP: "a symbolic link, which is never followed", errno.EINVAL: "not a regular file",
        errno.EFBIG: f"larger than {layout.MAX_FILE} bytes, so not a job"}


def _why(exc: OSError) -> str:
    return _WHY.get(exc.errno or 0) or f"cannot be read: {exc.strerror}"


def unreadable(name: str, exc: OSError) -> str:
    """Why the spool file ``name`` could not be read, as one line. Gitea's user may put a link, a FIFO or a huge
    file in ``queue/`` under a job's name: it is reported, never followed or read."""
    hint = "delete it" if exc.errno in _WHY else "run this as the worker's user or root"
    return f"job file {name}: {_why(exc)} ({hint})"


def _reason(root: str, job_id: str) -> str | None:
    """The worker's note on why a job in ``failed/`` could not be parsed, or None when there is none it wrote."""
    try:
        return layout.read_entry(os.path.join(root, "failed"), job_id + ".reason").decode("utf-8", "replace").strip()
    except OSError:
        return None


def _read(root: str, folder: str, name: str) -> Entry:
    """The job file ``folder/name``; FileNotFoundError when it has moved on. A file that cannot be read or parsed is
    an entry whose ``problem`` says why."""
    job_id = name.removesuffix(".json")
    try:
        data = layout.read_entry(os.path.join(root, folder), name)
    except FileNotFoundError:
        raise
    except OSError as exc:
        return Entry(job_id, folder, None, unreadable(name, exc))
    try:
        entry = Entry(job_id, folder, parse(name, data))
    except JobError as exc:
        # The worker notes why beside a job it could not parse, in failed/ alone: Gitea's user cannot write there.
        entry = Entry(job_id, folder, None, (_reason(root, job_id) if folder == "failed" else None) or str(exc))
    if folder == "active":
        lock = claims.lock_path(root, job_id)
        entry.holder, entry.held = claims.read_holder(lock), claims.is_held(lock)
    return entry


def check_spool(root: str) -> None:
    """SpoolError unless ``root`` is a spool: an empty report on a mistyped path would mislead."""
    if not os.path.isdir(os.path.join(root, "queue")):
        raise SpoolError(f"there is no spool at {root}",
                         "run gitea-hf-hook install, which creates the spool, or fix spool: in config.yaml")


def entries(root: str, folders: tuple[str, ...] = ("queue", "active", "failed")) -> list[Entry]:
    """The jobs in ``folders``, in that order, oldest id first in each."""
    check_spool(root)
    found = []
    for folder in folders:
        for name in layout.job_names(root, folder):
            try:
                found.append(_read(root, folder, name))
            except FileNotFoundError:
                pass  # a worker moved it while we looked
    return found


def _check_id(job_id: str) -> None:
    if not _ID.match(job_id) or job_id.endswith(".json"):
        raise SpoolError(f"{job_id!r} is not a job id",
                         "job ids look like 20261125-205226-3f9a1c0b; gitea-hf-hook queue list shows them")


def find(root: str, job_id: str) -> Entry:
    """The job ``job_id`` wherever it is; SpoolError when there is none."""
    _check_id(job_id)
    check_spool(root)
    # A job moves queue -> active -> done/failed/queue while we look: a second round catches it.
    for _ in range(3):
        for folder in STATES:
            try:
                return _read(root, folder, job_id + ".json")
            except FileNotFoundError:
                continue
    raise SpoolError(f"no job {job_id} in {root}", "gitea-hf-hook queue list --all shows every job")


def note(entry: Entry, now: float) -> str:
    """The one-line remark on a job in ``queue list``."""
    job = entry.job
    if job is None:
        return entry.problem
    if entry.folder == "queue":
        return "due" if job.not_before <= now else f"retry at {when(job.not_before)}"
    if entry.folder == "active":
        who = f"{entry.holder.describe()} since {when(entry.holder.started)}" if entry.holder else "an unknown worker"
        return f"held by {who}" if entry.held else f"orphaned (was {who}); the next worker pass takes it again"
    if entry.folder == CANCELLED:
        return cancel_reason(job)
    outcome = job.outcome
    if outcome is None:
        return ""
    if entry.folder == "failed":
        return outcome.reason
    if outcome.state == "superseded":
        return f"superseded by {outcome.superseded_by}"
    return outcome.state


def summary(entry: Entry, now: float) -> dict[str, Any]:
    """One job for ``queue list --json``."""
    job = entry.job
    if job is None:
        return {"id": entry.id, "state": entry.state, "target": None, "commit": None, "attempts": None,
                "created": None, "not_before": None, "note": note(entry, now)}
    return {"id": entry.id, "state": entry.state, "target": to_data(job.target), "commit": job.commit,
            "attempts": job.attempts, "created": job.created, "not_before": job.not_before, "note": note(entry, now)}


def _columns(rows: Sequence[tuple[str, ...]], indent: str = "") -> list[str]:
    """Rows as aligned columns; the last column is not padded. Cells are escaped, then aligned: job files are
    written by Gitea's user, and a ref or an error may hold terminal escapes or line breaks that would forge rows or
    shift columns."""
    rows = [tuple(escape(cell) for cell in row) for row in rows]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)] if rows else []
    return [indent + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1] for r in rows]


def format_list(found: list[Entry], now: float, empty: str = "no jobs") -> list[str]:
    """``queue list`` as an aligned table, or ``empty``."""
    if not found:
        return [empty]
    rows: list[tuple[str, ...]] = [("ID", "STATE", "TARGET", "COMMIT", "ATTEMPTS", "CREATED", "NOTE")]
    for e in found:
        job = e.job
        rows.append((e.id, e.state, target_text(job), job.commit[:7] if job else "?",
                     str(job.attempts) if job else "?", when(job.created) if job else "?", note(e, now)))
    return _columns(rows)


def detail(entry: Entry) -> dict[str, Any]:
    """One job for ``queue show --json``: everything in its file, and who holds it."""
    holder = entry.holder
    return {"id": entry.id, "state": entry.state, "job": None if entry.job is None else to_data(entry.job),
            "problem": entry.problem or None,
            "holder": None if holder is None else {"host": holder.host, "pid": holder.pid, "since": holder.started},
            "held": entry.held}


def format_show(entry: Entry, now: float) -> list[str]:
    """``queue show`` as ``key: value`` lines, then the error history."""
    lines = [f"job {entry.id}: {entry.state}"]
    job = entry.job
    if job is None:
        return [escape(line) for line in (*lines, f"problem: {entry.problem}")]
    outcome = job.outcome
    lines += [f"target: {target_text(job)}", f"ref: {job.request.ref}", f"commit: {job.commit}",
              f"pushed by: {job.pushed.pusher or '?'} to {job.request.repository}",
              f"created: {when(job.created)}", f"attempts: {job.attempts}"]
    if entry.folder == "queue":
        lines.append(f"due: {'now' if job.not_before <= now else when(job.not_before)}")
    elif entry.folder == "active":
        lines.append(f"claim: {note(entry, now)}")
    elif entry.folder == CANCELLED:
        lines.append(f"reason: {cancel_reason(job)}")
    elif outcome is None:
        lines.append("outcome: not recorded")
    elif entry.folder == "failed":
        lines.append(f"reason: {outcome.reason}")
    elif outcome.state == "superseded":
        lines.append(f"superseded by: {outcome.superseded_by}")
    else:
        hub_commit = outcome.result.hub_commit if outcome.result else None
        lines.append(f"published: hub commit {hub_commit or '?'} at {when(outcome.finished)}")
    if job.errors:
        lines.append("errors:")
        lines += [f"  {when(e.at)}  {e.message}" for e in job.errors]
    # Each line escaped whole: the labels are ours and plain, every value came from a job file.
    return [escape(line) for line in lines]


def cancel_reason(job: Job) -> str:
    """The admin's reason for cancelling ``job``: the end of its history's last entry."""
    last = job.errors[-1].message if job.errors else ""
    return last.removeprefix(CANCELLED_BY) if last.startswith(CANCELLED_BY) else ""


def _must_write(root: str, folders: tuple[str, ...], verb: str) -> None:
    """SpoolError unless this user may write each of ``folders`` of the spool: they are the worker's, and an admin
    command that could only do half its moves would leave a job between two folders."""
    for folder in folders:
        path = os.path.join(root, folder) if folder else root
        if os.path.isdir(path) and not os.access(path, os.W_OK | os.X_OK):
            owner = os.stat(root).st_uid
            try:
                import pwd

                who = pwd.getpwuid(owner).pw_name
            except KeyError:
                who = str(owner)
            raise SpoolError(f"cannot {verb} jobs: {path} is not writable by this user",
                             f"run gitea-hf-hook queue {verb} as the spool's owner, {who}, or as root")


def _requeue(root: str, job_id: str, now: float) -> Job:
    """Move the failed job ``job_id`` back to ``queue/``, due at once with its attempts reset, under its lock."""
    name = job_id + ".json"
    with claims.holding(claims.lock_path(root, job_id), claims.me(now)) as held:
        if not held:
            raise SpoolError(f"job {job_id} is locked by another process right now", "try again in a moment")
        path = os.path.join(root, "failed", name)
        try:
            job = parse(name, layout.read_entry(os.path.join(root, "failed"), name))
        except FileNotFoundError:
            raise SpoolError(f"job {job_id} left failed/ while it was being retried",
                             "gitea-hf-hook queue show shows where it is now") from None
        except OSError as exc:
            raise SpoolError(f"job {job_id} cannot be retried: job file {name}: {_why(exc)}",
                             f"fix or delete {path}") from None
        except JobError as exc:
            raise SpoolError(f"job {job_id} cannot be retried: {exc.message}", f"fix or delete {path}") from None
        queued = os.path.join(root, "queue", name)
        if os.path.lexists(queued):
            # Gitea's user writes queue/: whatever is there must not be replaced, nor hide the job.
            raise SpoolError(f"job {job_id} cannot be retried: {queued} exists already",
                             f"look at it and remove it (rm -r {queued}), then retry")
        reason = (job.outcome.reason if job.outcome else "") or "it failed"
        job = job._replace(attempts=0, not_before=0.0, retried=now, outcome=None,
                           errors=(*job.errors, Attempt(now, clean(f"queued again by an admin after: {reason}"))))
        try:
            layout.write_private(os.path.join(root, "failed"), name, dump(job))
            os.rename(path, queued)
        except OSError as exc:
            raise SpoolError(f"job {job_id} cannot be retried: {exc.strerror}",
                             f"check {os.path.join(root, 'failed')} and {os.path.join(root, 'queue')}") from None
        layout.fsync_dir(os.path.join(root, "queue"))
        try:
            os.unlink(os.path.join(root, "failed", job_id + ".reason"))
        except FileNotFoundError:
            pass
    return job


_RETRY_FOLDERS = ("failed", "queue", "state/locks")


def retry(root: str, job_id: str, now: float) -> Job:
    """Move a failed job back to ``queue/``, due at once with its attempts reset; returns the job."""
    entry = find(root, job_id)
    if entry.folder != "failed":
        raise SpoolError(f"job {job_id} is {entry.state}, not failed; only failed jobs can be retried",
                         "gitea-hf-hook queue list shows each job's state")
    _must_write(root, _RETRY_FOLDERS, "retry")
    return _requeue(root, job_id, now)


def retry_all(root: str, now: float) -> tuple[list[Job], list[str]]:
    """Queue every job in ``failed/`` again, as :func:`retry` does one; returns the jobs queued, and one line for each
    failed job that could not be (a file that does not parse stays in failed/ until it is fixed or purged)."""
    check_spool(root)
    _must_write(root, _RETRY_FOLDERS, "retry")
    queued, problems = [], []
    for name in layout.job_names(root, "failed"):
        try:
            queued.append(_requeue(root, name.removesuffix(".json"), now))
        except SpoolError as exc:
            problems.append(str(exc))
    return queued, problems


def _cancelled_folder(root: str) -> str:
    """``cancelled/``, created on first use with the mode and owner of the worker's folders; never a link."""
    path = os.path.join(root, CANCELLED)
    try:
        os.mkdir(path, layout.WORKER_FOLDER_MODE)
    except FileExistsError:
        pass
    else:
        os.chmod(path, layout.WORKER_FOLDER_MODE)  # past the umask
        if os.geteuid() == 0:
            owner = os.stat(root)
            os.chown(path, owner.st_uid, owner.st_gid)
            os.chmod(path, layout.WORKER_FOLDER_MODE)  # chown clears the setgid bit
    if os.path.islink(path) or not os.path.isdir(path):
        raise SpoolError(f"the spool folder {path} is not a folder", f"remove it (rm {path}); it is recreated")
    return path


def cancel(root: str, job_id: str, reason: str, now: float) -> Job:
    """Move a queued job to ``cancelled/`` with ``reason`` at the end of its history; returns the job as kept.

    The job is claimed as a worker claims it (its lock, then ``queue/`` to ``active/``) and settled from there, so a
    worker never publishes a job being cancelled, and a crash halfway leaves it in ``active/``, whence the next pass
    queues it again. A job a worker holds is refused: its publish may already be on the Hub.
    """
    reason = clean(reason.strip())
    if not reason:
        raise SpoolError("a cancellation needs a reason", "say why with --reason TEXT; it is kept in the job")
    entry = find(root, job_id)
    if entry.folder == "active":
        raise SpoolError(f"job {job_id} is being published ({note(entry, now)}), so it cannot be cancelled",
                         "only queued jobs can be cancelled: wait until it is done, or until it fails or is queued "
                         "again for a retry")
    if entry.folder != "queue":
        raise SpoolError(f"job {job_id} is {entry.state}, not queued; only queued jobs can be cancelled",
                         "gitea-hf-hook queue list shows each job's state")
    if entry.job is None:
        raise SpoolError(f"job {job_id} cannot be cancelled: {entry.problem}",
                         "the worker moves it to failed/ on its next pass")
    _must_write(root, ("active", "state/locks", CANCELLED, ""), "cancel")
    _cancelled_folder(root)
    name = job_id + ".json"
    claim = claims.claim(root, name, now)
    if claim is None:
        raise SpoolError(f"job {job_id} was claimed by a worker just now, so it cannot be cancelled",
                         f"gitea-hf-hook queue show {job_id} says where it is")
    try:
        try:
            job = parse(name, claim.read())
        except (OSError, JobError) as exc:
            # Gitea's user rewrote it since we looked: it goes back as it is, and the worker judges it.
            claim.finish("queue")
            raise SpoolError(f"job {job_id} cannot be cancelled: {exc}",
                             "the worker moves it to failed/ on its next pass") from None
        job = job._replace(errors=(*job.errors, Attempt(now, clean(CANCELLED_BY + reason))))
        claim.finish(CANCELLED, job)
    finally:
        if not claim.released:
            claim.finish("queue")
    return job


def purge(root: str, *, failed: bool = False) -> dict[str, int]:
    """Delete every job in ``done/`` and ``cancelled/`` (and ``failed/`` too when asked); returns how many of each.
    ``cancelled/`` is counted only once a job was ever cancelled."""
    check_spool(root)
    counts: dict[str, int] = {}
    for folder in ("done", CANCELLED, "failed") if failed else ("done", CANCELLED):
        path = os.path.join(root, folder)
        if folder == CANCELLED and not os.path.isdir(path):
            continue
        counts[folder] = 0
        for name in os.listdir(path) if os.path.isdir(path) else []:
            try:
                os.unlink(os.path.join(path, name))
            except FileNotFoundError:
                continue
            counts[folder] += name.endswith(".json")
    return counts


def on_record(config: Config, action: str, done: str, jobs: Sequence[Job] = (), *, outcome: str = "",
              detail: tuple[tuple[str, str], ...] = ()) -> None:
    """Put an admin action that has happened (``done`` says what) in the audit trail: one record per job it acted
    on, whose outcome is the note the action left in the job's history, or one record for the action (``purge``).

    The action stands whatever becomes of its record. When the log cannot take one, SpoolError says so, and which
    jobs are not on record, so that the admin learns the trail lacks them and can note them by other means.
    """
    from ..worker import audit

    acted: Sequence[Job | None] = jobs or [None]
    for number, job in enumerate(acted):
        said = outcome or (job.errors[-1].message if job is not None and job.errors else "")
        try:
            audit.admin_action(config, action, job, outcome=said, detail=detail)
        except (SpoolError, OSError) as exc:
            if isinstance(exc, SpoolError):
                why, hint = exc.message, exc.hint
            else:
                why = f"the audit log {config.audit_log} cannot take a record ({exc.strerror})"
                hint = "make room on its file system, or repair it; the action itself is done"
            missing = [j.id for j in jobs[number:]]
            which = ("it is" if len(acted) == 1 else f"job {missing[0]} is" if len(missing) == 1
                     else f"{len(missing)} of the {len(acted)} jobs ({', '.join(missing)}) are")
            raise SpoolError(f"{done}, but {which} not in the audit log: {why}", hint) from None


def status(config: Config, now: float) -> dict[str, Any]:
    """The figures for ``status``: queue depth and age, active jobs and their workers, failures, cancelled and done
    counts, and each target's last success and last failure (the same figures as the worker's metrics file)."""
    root = config.spool
    found = entries(root, ("queue", "active", "failed"))
    depth, due, oldest = metrics.queue_figures([e.job for e in found if e.folder == "queue"], now)
    failed = [{"id": e.id, "target": target_text(e.job), "reason": note(e, now)}
              for e in found if e.folder == "failed"]
    return {
        "queue": {"depth": depth, "due": due,
                  "oldest_created": oldest, "oldest_age_seconds": None if oldest is None else int(now - oldest)},
        "active": [{"id": e.id, "target": target_text(e.job), "holder": detail(e)["holder"], "held": e.held}
                   for e in found if e.folder == "active"],
        "failed": failed,
        "failures": len(failed),
        "cancelled": len(layout.job_names(root, CANCELLED)),
        "done": len(layout.job_names(root, "done")),
        "targets": [metrics.target_data(t, now) for t in metrics.targets(config)],
    }


def _jobs(n: int) -> str:
    return f"{n} job" if n == 1 else f"{n} jobs"


def _last(what: str, event: dict[str, Any] | None) -> str:
    if event is None:
        return f"last {what}: never"
    line = (f"last {what}: {when(event['at'])} ({age(event['age_seconds'])} ago), job {event['job']}, "
            f"commit {event['commit'][:7] or 'none (a deletion)'}")
    return line + (f": {event['reason']}" if "reason" in event else "")


def format_status(data: dict[str, Any]) -> list[str]:
    """``status`` as text."""
    q = data["queue"]
    lines = [f"queue: {_jobs(q['depth'])}, {q['due']} due, oldest queued {age(q['oldest_age_seconds'])} ago"
             if q["depth"] and q["oldest_age_seconds"] is not None
             else f"queue: {_jobs(q['depth'])}, {q['due']} due" if q["depth"] else "queue: empty"]
    lines.append(f"active: {_jobs(len(data['active']))}")
    rows: list[tuple[str, ...]] = []
    for a in data["active"]:
        h = a["holder"]
        who = f"{h['host']} pid {h['pid']} since {when(h['since'])}" if h else "an unknown worker"
        rows.append((a["id"], a["target"], f"held by {who}" if a["held"] else f"orphaned (was {who})"))
    lines += _columns(rows, "  ")
    lines.append(f"failed: {_jobs(len(data['failed']))}")
    lines += _columns([(f["id"], f["target"], f["reason"]) for f in data["failed"]], "  ")
    if data["cancelled"]:
        lines.append(f"cancelled: {_jobs(data['cancelled'])}")
    lines.append(f"done: {_jobs(data['done'])}")
    if data["targets"]:
        # Every target is in --json; the text names the failing ones alone, so that a server with hundreds of
        # targets still shows its queue and its trouble on one screen.
        failing = [t for t in data["targets"] if failing_now(t)]
        lines.append(f"targets: {len(data['targets'])}, {len(failing) or 'none'} failing")
        for t in failing:
            # Escaped whole: a revision comes from a branch name, a reason from the Hub.
            lines += [escape(f"  {t['label']}"), escape("    " + _last("published", t["last_success"])),
                      escape("    " + _last("failed", t["last_failure"]))]
    return lines


def failing_now(target: dict[str, Any]) -> bool:
    """Whether a target's last failure is no older than its last publish (one of ``status``'s ``targets``)."""
    failure, success = target["last_failure"], target["last_success"]
    return failure is not None and (success is None or failure["at"] >= success["at"])
