"""The audit trail: what is recorded in ``audit_log``, by whom, and when (the file itself: :mod:`.audit_chain`).

Who appends: the worker's user alone, and root (admin commands run as one of the two). The hooks run as Gitea's
user, who could forge anything it writes, so they leave drops in ``spool/audit/`` instead
(:mod:`..spool.audit_drop`); :func:`ingest_drops` chains each of them as ``source: hook``, Gitea's word,
countersigned by the worker when it ingests it. The worker's own records (``source: worker``) say what it
published, superseded, failed or found; admin commands' (``source: admin``) what an admin did. A record's push
fields (pusher, trigger) come from the job file or the drop: what Gitea said, as everywhere else.

The worker loop calls the functions that never raise (:func:`job_settled`, :func:`job_unreadable`,
:func:`job_queued`, :func:`ingest_drops` raises only for an unusable drop folder); admin commands call
:func:`admin_action`, which raises, so an admin learns when an action is not on record.
"""

from __future__ import annotations

import logging
import os

from ..config.model import Config
from ..errors import SpoolError
from ..spool import audit_drop
from ..spool.job import Job, is_id
from .audit_chain import Record, locked, open_log, read_head, sha256
from .logs import say

__all__ = ["ADMIN_ACTIONS", "MAX_BATCH", "Record", "admin_action", "append", "config_seen", "create_log",
           "ingest_drops", "job_queued", "job_record", "job_settled", "job_unreadable", "try_append"]

MAX_BATCH = 1000  # drops one ingest reads; the rest wait for the next pass
# Records one ingest appends, at most (past it the drops left wait for the next pass): Gitea's user writes the
# drops, and small records packed into many drops would otherwise hold the log's lock for minutes.
MAX_RECORDS = 20_000
ADMIN_ACTIONS = ("retry", "cancel", "purge")


# --- appending ----------------------------------------------------------------------------------------------------

def append(config: Config, record: Record, now: float | None = None) -> int:
    """Append one record; returns its line number. Raises SpoolError naming the log when it cannot."""
    with locked(config) as log:
        return log.add(record, now)


def try_append(config: Config, record: Record, now: float | None = None) -> bool:
    """:func:`append` for the worker loop: a log it cannot write is one error line in the worker's log (naming the
    record), never a stopped publish. Returns whether the record is in the log."""
    try:
        append(config, record, now)
        return True
    except (SpoolError, OSError) as exc:
        say(f"audit log: {record.kind} {record.job or record.repository} is not recorded: {exc}", logging.ERROR)
        return False


def create_log(config: Config) -> bool:
    """Create ``audit_log`` empty unless it exists, owned by the spool's owner and group, mode 0600; returns
    whether it did. ``install`` runs this as root after creating the spool: the worker's user cannot create a file
    in a root-owned folder such as ``/var/lib/gitea-hf-hook``."""
    fd, created = open_log(config)
    os.close(fd)
    return created


def ingest_drops(config: Config, *, limit: int = MAX_BATCH, now: float | None = None) -> int:
    """Chain the hooks' drops into the log, oldest name first, and remove each; returns the records appended.

    Each reported record becomes a ``source: hook`` record with the drop's name, owner, size and sha256. An entry
    that is not a regular drop file (a link, a FIFO, a folder, an oversized file) is recorded as ``drop-refused``
    and removed without being opened through; a file that does not parse as ``drop-malformed``. Neither stops the
    ingest. A drop is removed only after its records are fsynced, so a crash in between ingests it again (the
    repeat names the same drop and digest). Several workers may ingest at once: each drop is read under the lock.
    """
    try:
        folder = audit_drop.open_folder(config.spool)
    except FileNotFoundError:
        return 0
    except OSError as exc:
        where = os.path.join(config.spool, audit_drop.FOLDER)
        raise SpoolError(f"the audit drop folder {where} cannot be opened ({exc.strerror})",
                         f"it must be a folder, not a link: rm {where}; the worker recreates it") from None
    appended = 0
    try:
        names = audit_drop.pending(folder, limit)
        if not names:
            return 0
        with locked(config) as log:
            for name in names:
                if appended >= MAX_RECORDS:
                    break
                try:
                    drop = audit_drop.read(folder, name)
                except FileNotFoundError:
                    continue  # another worker ingested it
                for record in _from_drop(drop):
                    log.add(record, now)
                    appended += 1
                log.sync()
                try:
                    audit_drop.discard(folder, drop)
                except OSError as exc:  # else it would be ingested again on every pass
                    raise SpoolError(f"the audit drop {name} cannot be removed ({exc.strerror})",
                                     "let the worker's user write spool/audit (mode 2770)") from None
    finally:
        os.close(folder)
    return appended


_SAID = {"push-accepted": "accepted", "push-rejected": "rejected", "push-would-reject": "would reject (enforce is off)",
         "job-queued": "queued"}


def _from_drop(drop: audit_drop.Drop) -> list[Record]:
    about: tuple[tuple[str, str | int], ...] = (("name", drop.name), ("uid", drop.uid), ("size", drop.size),
                                                ("sha256", drop.sha256))
    if drop.status != "ok":
        return [Record(f"drop-{drop.status}", outcome=drop.problem, drop=about)]
    records = []
    for number, reported in enumerate(drop.records, 1):
        f = reported.fields
        detail = tuple((k, f[k]) for k in ("repo_id", "deploy_key_id", "pr_id") if f.get(k) and f[k] != "0")
        records.append(Record(
            f["kind"], repository=f["repository"], ref=f["ref"], old=f.get("old", ""), new=f["new"],
            pusher=f.get("pusher", ""), pusher_id=f.get("pusher_id", ""), trigger=f.get("trigger", ""),
            target=f.get("target", ""), job=f.get("job", ""), outcome=_SAID[f["kind"]],
            reasons=tuple(reported.reasons), detail=detail, source="hook", reported=float(f["time"]),
            drop=(*about, ("record", number), ("records", len(drop.records)))))
    return records


def config_seen(config: Config, now: float | None = None) -> bool:
    """Record ``config-changed`` (old and new sha256 of the config file's bytes) when the file differs from the
    one this log last saw; returns whether it did. Cheap when nothing changed: call it every pass."""
    try:
        with open(config.path, "rb") as f:
            digest, problem = sha256(f.read()), ""
    except OSError as exc:
        digest, problem = "", f"the config file cannot be read ({exc.strerror})"
    head = read_head(config)
    if head is not None and head.get("config") == digest:
        return False
    with locked(config) as log:
        if log.config_digest == digest:
            return False
        detail = (("path", config.path), ("old_sha256", log.config_digest), ("new_sha256", digest))
        outcome = problem or ("changed" if log.config_digest else "first seen by this log")
        log.add(Record("config-changed", outcome=outcome, detail=detail), now)
        log.config_digest = digest
    return True


# --- what the worker and the admin commands record ----------------------------------------------------------------

def job_record(kind: str, job: Job, *, outcome: str = "", hub_commit: str = "", source: str = "worker",
               detail: tuple[tuple[str, str], ...] = ()) -> Record:
    """A record about ``job``: its repository, ref, ids, pusher and target, as its file says."""
    pushed, request = job.pushed, job.request
    about = tuple((k, v) for k, v in (("repo_id", pushed.repo_id), ("deploy_key_id", pushed.deploy_key_id),
                                      ("pr_id", pushed.pr_id)) if v and v != "0")
    return Record(kind, repository=request.repository, ref=request.ref, old=request.old, new=request.new,
                  pusher=pushed.pusher, pusher_id=pushed.pusher_id, trigger=pushed.trigger, target=job.target.label,
                  job=job.id, hub_commit=hub_commit, outcome=outcome, detail=about + detail, source=source)


def job_settled(config: Config, job: Job, now: float | None = None) -> bool:
    """Record how the worker settled ``job``, from its outcome: ``job-published`` (with the Hub commit),
    ``job-superseded`` (by which job), ``job-failed`` (dead-lettered, with the reason), or ``job-<state>`` for any
    other state. Never raises (see :func:`try_append`)."""
    outcome = job.outcome
    if outcome is None:
        raise ValueError(f"job {job.id} is not settled")
    hub_commit = ""
    detail: tuple[tuple[str, str], ...] = ()
    if outcome.state == "published":
        text, result = "published", outcome.result
        if result is not None:
            hub_commit = result.hub_commit or ""
            detail = (("hub_commits", str(len(result.hub_commits) or int(bool(result.hub_commit)))),
                      ("uploaded", str(result.uploaded)), ("deleted", str(result.deleted)),
                      *((("mode", result.mode),) if result.mode else ()))
    elif outcome.state == "superseded":
        text = f"superseded by job {outcome.superseded_by}"
    else:
        text = f"{outcome.state}: {outcome.reason}" if outcome.reason else outcome.state
    record = job_record(f"job-{outcome.state}", job, outcome=text, hub_commit=hub_commit, detail=detail)
    return try_append(config, record, now)


def job_unreadable(config: Config, name: str, reason: str, now: float | None = None) -> bool:
    """Record a job file the worker dead-lettered without parsing it (``job-unreadable``). Never raises."""
    job = name.removesuffix(".json")
    record = Record("job-unreadable", job=job if is_id(job) else "", outcome=reason, detail=(("file", name),))
    return try_append(config, record, now)


def job_queued(config: Config, job: Job, now: float | None = None) -> bool:
    """Record a prepared job the worker queued itself, because its post-receive never ran. Never raises."""
    return try_append(config, job_record("job-queued", job, outcome="queued by the worker: post-receive never "
                                                                     "queued it"), now)


def admin_action(config: Config, action: str, job: Job | None = None, *, outcome: str = "",
                 detail: tuple[tuple[str, str], ...] = (), now: float | None = None) -> int:
    """Record what an admin command did (``admin-retry``, ``admin-cancel``, ``admin-purge``), with the job it acted
    on when there is one; returns the record's line. Raises SpoolError when the log cannot take it, so that the
    admin sees that the action is not on record."""
    if action not in ADMIN_ACTIONS:
        raise ValueError(f"action must be one of {', '.join(ADMIN_ACTIONS)}")
    kind = f"admin-{action}"
    record = (job_record(kind, job, outcome=outcome, source="admin", detail=detail) if job is not None
              else Record(kind, outcome=outcome, detail=detail, source="admin"))
    return append(config, record, now)
