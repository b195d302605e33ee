"""What ``gitea-hf-hook queue list|show|retry|purge`` and ``gitea-hf-hook status`` read and do.

Each view is data first (JSON-able dicts, for ``--json``) and lines of text second. Reading takes no lock;
``retry`` takes the job's claim lock, so it never races a worker or the lock-file sweep.
"""

from __future__ import annotations

import errno
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import JobError, SpoolError
from ..redact import clean, escape
from ..spool import claims, layout
from ..spool.codec import to_data
from ..spool.job import Attempt, Job, dump, parse

STATES = {"queue": "queued", "active": "active", "failed": "failed", "done": "done"}
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


def format_list(found: list[Entry], now: float) -> list[str]:
    """``queue list`` as an aligned table."""
    if not found:
        return ["no jobs"]
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


def retry(root: str, job_id: str, now: float) -> Job:
    """Move a failed job back to ``queue/``, due at once with its attempts reset; returns the job."""
    entry = find(root, job_id)
    if entry.folder != "failed":
        raise SpoolError(f"job {job_id} is {entry.state}, not failed; only failed jobs can be retried",
                         "gitea-hf-hook queue list shows each job's state")
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
        reason = (job.outcome.reason if job.outcome else "") or "it failed"
        job = job._replace(attempts=0, not_before=0.0, retried=now, outcome=None,
                           errors=(*job.errors, Attempt(now, clean(f"queued again by an admin after: {reason}"))))
        layout.write_private(os.path.join(root, "failed"), name, dump(job))
        os.rename(path, os.path.join(root, "queue", name))
        layout.fsync_dir(os.path.join(root, "queue"))
        try:
            os.unlink(os.path.join(root, "failed", job_id + ".reason"))
        except FileNotFoundError:
            pass
    return job


def purge(root: str, *, failed: bool = False) -> dict[str, int]:
    """Delete every job in ``done/`` (and ``failed/`` too when asked); returns how many of each."""
    check_spool(root)
    counts: dict[str, int] = {}
    for folder in ("done", "failed") if failed else ("done",):
        counts[folder] = 0
        path = os.path.join(root, folder)
        for name in os.listdir(path) if os.path.isdir(path) else []:
            try:
                os.unlink(os.path.join(path, name))
            except FileNotFoundError:
                continue
            counts[folder] += name.endswith(".json")
    return counts


def status(root: str, now: float) -> dict[str, Any]:
    """The numbers for ``status``: queue depth and age, active jobs and their workers, failures, done count."""
    found = entries(root, ("queue", "active", "failed"))
    queued = [e for e in found if e.folder == "queue"]
    created = [e.job.created for e in queued if e.job is not None]
    oldest = min(created) if created else None
    return {
        "queue": {"depth": len(queued),
                  "due": sum(1 for e in queued if e.job is None or e.job.not_before <= now),
                  "oldest_created": oldest, "oldest_age_seconds": None if oldest is None else int(now - oldest)},
        "active": [{"id": e.id, "target": target_text(e.job), "holder": detail(e)["holder"], "held": e.held}
                   for e in found if e.folder == "active"],
        "failed": [{"id": e.id, "target": target_text(e.job), "reason": note(e, now)}
                   for e in found if e.folder == "failed"],
        "done": len(layout.job_names(root, "done")),
    }


def _jobs(n: int) -> str:
    return f"{n} job" if n == 1 else f"{n} jobs"


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
    lines.append(f"done: {_jobs(data['done'])}")
    return lines
