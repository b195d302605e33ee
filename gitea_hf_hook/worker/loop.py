"""One pass of the worker over the spool: claim, coalesce, publish, settle.

:func:`loop` is one pass, with an injectable clock (as huey's ``loop(now)``): reclaim jobs of dead workers,
read the queue, coalesce jobs per target (Hub repository, type, branch or tag) into one publish of the newest,
never let an older commit overwrite a newer one, publish, then move each job to ``done/``, ``failed/`` or back to
``queue/`` with its retry state inside it. :mod:`.service` repeats passes; :mod:`..spool.claims` keeps several
workers from stepping on each other.
"""

from __future__ import annotations

import logging
import os
import random
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

from ..config.model import Config, Target, WorkerSettings
from ..errors import JobError, PublishError, SpoolError
from ..gitea import git
from ..redact import clean
from ..spool import claims, layout
from ..spool.job import Job, Outcome, parse
from ..spool.state import PublishResult, TargetState, state_path, target_key
from ..spool.state import dump as dump_state
from ..spool.state import parse as parse_state
from . import audit, gitea_status, housekeeping, metrics, preflight
from .derive import route
from .logs import Event, say

Publisher = Callable[[Config, Job, "TargetState | None"], PublishResult]

IDLE_POLL = 2.0  # seconds between looks at an empty queue


@dataclass
class LoopResult:
    """What one pass did, as job ids (``busy``: target keys another worker was publishing)."""

    published: list[str] = field(default_factory=list)
    superseded: list[str] = field(default_factory=list)
    retried: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    reclaimed: list[str] = field(default_factory=list)
    busy: list[str] = field(default_factory=list)
    next_due: float | None = None  # the earliest not_before of a job left waiting

    @property
    def worked(self) -> bool:
        """Whether the pass moved any job; a pass that did not leaves nothing due this worker could take."""
        return bool(self.published or self.superseded or self.retried or self.failed or self.reclaimed)


def backoff(attempts: int, settings: WorkerSettings, retry_after: float | None = None,
            rng: Callable[[], float] = random.random) -> float:
    """Seconds to wait before attempt ``attempts + 1``: exponential, capped, jittered, at least ``retry_after``."""
    delay = min(settings.backoff_max_seconds, settings.backoff_seconds * 2 ** max(attempts - 1, 0))
    # Jitter downwards only (75-100 %), so jobs that failed together spread out and the cap still holds.
    delay *= 0.75 + 0.25 * rng()
    return float(max(delay, retry_after or 0.0))


def read_state(root: str, target: Target) -> TargetState | None:
    """The last publish to a target, or None before the first. A state file that does not parse, or that speaks
    of another target, is logged and treated as absent: the next publish then rebuilds what it needs from the Hub
    itself, which is always safe."""
    path = state_path(root, target_key(target))
    try:
        data = layout.read_entry(os.path.dirname(path), os.path.basename(path))
    except FileNotFoundError:
        return None
    except OSError as exc:
        say(f"state file {path} is ignored: {exc.strerror}", logging.WARNING)
        return None
    try:
        state = parse_state(os.path.basename(path), data)
    except JobError as exc:
        say(str(exc), logging.WARNING)
        return None
    if state.target != target:
        say(f"state file {path} is ignored: it speaks of {state.target.label}, not {target.label}", logging.WARNING)
        return None
    return state


def _order(job: Job) -> tuple[float, str]:
    return (job.created, job.id)


def _settled(job: Job, state: str, now: float, *, reason: str = "", superseded_by: str = "",
             result: PublishResult | None = None) -> Job:
    holder = claims.me(now)
    return job._replace(outcome=Outcome(state=state, finished=now, host=holder.host, pid=holder.pid, reason=reason,
                                        superseded_by=superseded_by, result=result))


def _event(job: Job, outcome: str, duration: float | None = None) -> Event:
    return Event(job.id, job.target.label, job.commit, outcome, duration)


def _default_publish() -> Publisher:
    from .publish import publish  # lazily: it imports huggingface_hub

    return publish


# --- one pass ---------------------------------------------------------------------------------------------------

def loop(config: Config, now: float | None = None, publish: Publisher | None = None, *,
         stop: Callable[[], bool] | None = None) -> LoopResult:
    """One pass over the spool at time ``now`` (default: the clock). ``stop`` is asked between targets."""
    now = time.time() if now is None else now
    # Every git process of the pass is confined: the repositories are Gitea's user's to write, config included.
    with git.confined():
        return _pass(config, now, publish, stop)


def _pass(config: Config, now: float, publish: Publisher | None, stop: Callable[[], bool] | None) -> LoopResult:
    root = config.spool
    # Before every pass, and before creating what is missing: a folder must never be replaced by a link.
    preflight.check_spool(root)
    layout.ensure_layout(root)
    try:  # the audit trail: a config change, and what the hooks dropped since the last pass
        audit.config_seen(config, now)
        audit.ingest_drops(config, now=now)
    except SpoolError as exc:
        _spool_problem(exc)
    except OSError as exc:  # a full disk, say: the pass publishes anyway, and the drops wait for the next one
        say(f"audit log {config.audit_log}: not appended to this pass ({exc.strerror})", logging.ERROR)
    result = LoopResult()
    housekeeping.sweep(config, now)
    for claim in claims.reclaim(root, now, on_error=_spool_problem):
        _requeue_orphan(config, claim, now, result)
    groups: dict[str, list[Job]] = {}
    for name in layout.job_names(root, "queue"):
        try:
            job = parse(name, layout.read_entry(os.path.join(root, "queue"), name))
        except FileNotFoundError:
            continue  # another worker claimed it since the listing
        except (JobError, OSError) as exc:
            try:
                unreadable = claims.claim(root, name, now)
            except SpoolError as problem:
                _spool_problem(problem)
                continue
            if unreadable is not None:
                why = f"not a readable job file ({exc.strerror})" if isinstance(exc, OSError) else str(exc)
                _dead_letter_unreadable(config, unreadable, why, result)
            continue
        try:
            route(config, job)  # a job for a target its rule does not map is refused before it can supersede any
        except PublishError as exc:
            try:
                refused = claims.claim(root, name, now)
            except SpoolError as problem:
                _spool_problem(problem)
                continue
            if refused is not None and (again := _reread(config, refused, result)) is not None:
                _fail(config, refused, again, str(exc), now, result, routed=False)
            continue
        groups.setdefault(target_key(job.target), []).append(job)
    # Branches before tags, since a tag lands on the Hub commit its branch's publish makes; then the targets
    # whose oldest job waited longest.
    def priority(item: tuple[str, list[Job]]) -> tuple[bool, tuple[float, str]]:
        return item[1][0].target.kind == "tag", min(_order(j) for j in item[1])

    for key, jobs in sorted(groups.items(), key=priority):
        if stop is not None and stop():
            break
        try:
            _drain_target(config, key, jobs, now, publish, result)
        except SpoolError as exc:  # one unusable lock or file must not stop the other targets
            _spool_problem(exc)
    metrics.after_pass(config, now)  # metrics_file, when set
    return result


def _spool_problem(exc: SpoolError) -> None:
    say(f"{exc.message} ({exc.hint})" if exc.hint else exc.message, logging.ERROR)


def _drain_target(config: Config, key: str, jobs: list[Job], now: float, publish: Publisher | None,
                  result: LoopResult) -> None:
    """Publish the newest job of one target and supersede the others, under the target's lock."""
    newest: Job | None = max(jobs, key=_order)
    assert newest is not None
    due = newest.not_before <= now
    if not due:
        result.next_due = min(newest.not_before, result.next_due or newest.not_before)
        if len(jobs) == 1:
            return
    lock = claims.lock_target(config.spool, key, now)
    if lock is None:
        result.busy.append(key)
        return
    try:
        # Read under the lock: another worker may just have written it.
        state = read_state(config.spool, newest.target)
        older = [j for j in jobs if j is not newest]
        winner = newest.id
        if state is not None and _order(newest) <= (state.created, state.job):
            older.append(newest)  # a newer commit is already on the Hub: never go back to an older one
            newest, winner = None, state.job
        for job in older:
            _supersede(config, job, winner, state, now, result)
        if newest is not None and due:
            _publish(config, key, newest, state, now, publish or _default_publish(), result)
    finally:
        lock.release()


def _supersede(config: Config, listed: Job, winner: str, state: TargetState | None, now: float,
               result: LoopResult) -> None:
    claim = claims.claim(config.spool, listed.id + ".json", now)
    if claim is None:
        return
    job = _reread(config, claim, result, listed)
    if job is None:
        return
    if state is not None and state.job == job.id:
        # Published already: its worker died after writing the target state, before moving the job to done/.
        settled = _settled(job, "published", now, result=state.result)
        claim.finish("done", settled)
        audit.job_settled(config, settled, now)
        result.published.append(job.id)
        say(f"job {job.id} was published before its worker stopped; moved to done", event=_event(job, "published"))
        return
    settled = _settled(job, "superseded", now, superseded_by=winner)
    claim.finish("done", settled)
    audit.job_settled(config, settled, now)
    result.superseded.append(job.id)
    say(f"job {job.id} ({job.target.label} {job.commit[:7]}) superseded by job {winner}",
        event=_event(job, "superseded"))


def _publish(config: Config, key: str, listed: Job, state: TargetState | None, now: float,
             publish: Publisher, result: LoopResult) -> None:
    claim = claims.claim(config.spool, listed.id + ".json", now)
    if claim is None:
        result.busy.append(key)
        return
    try:
        job = _reread(config, claim, result, listed)
        if job is None:
            return
        if job.not_before > now:  # another worker rescheduled it after our listing
            claim.finish("queue")
            return
        say(f"publishing job {job.id}: {job.commit[:7]} to {job.target.label} (attempt {job.attempts + 1})",
            event=_event(job, "started"))
        status = gitea_status.start(config, job)  # pending in Gitea; never fails the publish
        began = time.monotonic()
        try:
            published = publish(config, job, state)
        except PublishError as exc:
            # Cleaned here, where a failure's text first reaches the job: it may quote the Hub, Gitea or a path.
            message, took = clean(str(exc)), time.monotonic() - began
            if exc.retryable:
                reason = _failed_attempt(config, claim, job, message, exc.retry_after, now, result, took)
            else:
                reason = _fail(config, claim, job.failed_attempt(now, message), message, now, result, took)
            status.settled(message, reason)
            return
        except Exception as exc:  # noqa: BLE001 - a bug or an unexpected failure must not stop the worker
            took = time.monotonic() - began
            frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
            where = f" (at {os.path.basename(frame.filename)}:{frame.lineno})" if frame else ""
            said = clean(f"{type(exc).__name__}: {exc}")  # an exception of the client may quote any answer
            say(f"job {job.id}: unexpected {said}{where}", logging.ERROR)
            message = f"internal error: {said}"
            reason = _failed_attempt(config, claim, job, message, None, now, result, took)
            status.settled(message, reason)
            return
        took = time.monotonic() - began
        new_state = TargetState(target=job.target, job=job.id, created=job.created, published=now, result=published)
        # State first, then done/: a crash in between is recognised by the job id in the state (see _supersede).
        path = state_path(config.spool, key)
        layout.write_private(os.path.dirname(path), os.path.basename(path), dump_state(new_state))
        settled = _settled(job, "published", now, result=published)
        claim.finish("done", settled)
        audit.job_settled(config, settled, now)
        result.published.append(job.id)
        say(f"published job {job.id}: {job.commit[:7]} is {job.target.label} "
             f"(hub commit {(published.hub_commit or '?')[:12]})", event=_event(job, "published", took))
        status.published(published)
    finally:
        if not claim.released:  # interrupted by something we do not catch: give the job back untouched
            claim.finish("queue")


def _reread(config: Config, claim: claims.Claim, result: LoopResult, listed: Job | None = None) -> Job | None:
    """The claimed job as it is now on disk (another worker may have rewritten its retry state since our listing).

    With ``listed``, a job whose request changed since the listing (Gitea's user owns the file and may rewrite it)
    goes back to the queue, to be routed again with the next listing: it was grouped and compared by the old one.
    """
    try:
        job = parse(claim.name, claim.read())
        if listed is not None and (job.request, job.created) != (listed.request, listed.created):
            claim.finish("queue")
            say(f"job {job.id} changed since it was listed; queued again", logging.WARNING)
            return None
        return job
    except JobError as exc:
        _dead_letter_unreadable(config, claim, str(exc), result)
    except OSError as exc:  # swapped for a link, or something else, since the listing
        _dead_letter_unreadable(config, claim, f"not a readable job file ({exc.strerror})", result)
    return None


def _failed_attempt(config: Config, claim: claims.Claim, job: Job, message: str, retry_after: float | None,
                    now: float, result: LoopResult, duration: float | None = None) -> str | None:
    """Count a retryable failure: back to ``queue/`` after a backoff (returns None), or ``failed/`` when out of
    attempts or age (returns the reason)."""
    settings, message = config.worker, clean(message)
    job = job.failed_attempt(now, message)
    # A job an admin queued again ages from then, not from its push.
    age_hours = (now - (job.retried or job.created)) / 3600
    if job.attempts >= settings.max_attempts:
        return _fail(config, claim, job, f"gave up after {job.attempts} attempts (worker.max_attempts): {message}",
                     now, result, duration)
    if age_hours > settings.max_age_hours:
        return _fail(config, claim, job, f"gave up: the job is {age_hours:.1f} hours old (worker.max_age_hours is "
                                 f"{settings.max_age_hours:g}): {message}", now, result, duration)
    delay = backoff(job.attempts, settings, retry_after)
    claim.finish("queue", job._replace(not_before=now + delay))
    result.retried.append(job.id)
    say(f"job {job.id} failed (attempt {job.attempts} of {settings.max_attempts}), retrying in "
         f"{delay:.0f}s: {message}", logging.WARNING, _event(job, "retrying", duration))
    return None


def _fail(config: Config, claim: claims.Claim, job: Job, reason: str, now: float, result: LoopResult,
          duration: float | None = None, *, routed: bool = True) -> str:
    """Settle a job in ``failed/``; returns the reason, as stored. A job the config does not route (``routed``
    false) is no target's failure: its target is whatever the job file says, which Gitea's user writes."""
    reason = clean(reason)
    settled = _settled(job, "failed", now, reason=reason)
    claim.finish("failed", settled)
    audit.job_settled(config, settled, now)
    result.failed.append(job.id)
    if routed:
        metrics.record_failure(claim.spool, job, reason, now)  # the target's last failure, for status and metrics
    say(f"job {job.id} failed: {reason}", logging.ERROR, _event(job, "failed", duration))
    return reason


def _dead_letter_unreadable(config: Config, claim: claims.Claim, reason: str, result: LoopResult) -> None:
    reason = clean(reason)
    # Gitea's user may name a folder or a second file after a job already in failed/: it cannot go there without
    # replacing that job (or its reason), or cannot be moved at all. It is set aside in active/ instead, under
    # a dotname no listing takes, and the pass goes on.
    if os.path.lexists(os.path.join(claim.spool, "failed", claim.name)):
        _set_aside(claim, f"{reason}; failed/ holds a job of that id already")
        return
    try:
        claim.finish("failed", note=reason)
    except OSError as exc:
        _set_aside(claim, f"{reason}; it cannot be moved to failed/ ({exc.strerror})")
        return
    audit.job_unreadable(config, claim.name, reason)
    result.failed.append(claim.job_id)
    said = reason.removeprefix(f"job file {claim.name}: ")  # the parser names the file too
    say(f"job file {claim.name} cannot be published, moved to failed/: {said}", logging.ERROR,
        Event(claim.job_id, None, None, "failed"))


def _set_aside(claim: claims.Claim, reason: str) -> None:
    aside = f".set-aside-{claim.name}-{os.urandom(4).hex()}"
    try:
        os.rename(claim.path, os.path.join(claim.spool, "active", aside))
    except OSError:
        pass  # gone already; nothing else to do with it
    claim.release()
    say(f"job file {claim.name} cannot be published, set aside as active/{aside}: {reason}", logging.ERROR)


def _requeue_orphan(config: Config, claim: claims.Claim, now: float, result: LoopResult) -> None:
    """A job whose worker died while holding it: count the attempt and queue it again, due at once."""
    job = _reread(config, claim, result)
    if job is None:
        return
    who = claim.previous.describe() if claim.previous else "its worker"
    since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(claim.previous.started)) if claim.previous else "?"
    message = f"{who} stopped while publishing it (claimed {since}); queued again"
    # The attempt counts, so a job that kills its worker every time still ends in failed/.
    job = job.failed_attempt(now, message)
    result.reclaimed.append(job.id)
    if job.attempts >= config.worker.max_attempts:
        _fail(config, claim, job, f"gave up after {job.attempts} attempts (worker.max_attempts): {message}", now,
              result)
        return
    claim.finish("queue", job)
    say(f"job {job.id}: {message}", logging.WARNING, _event(job, "requeued"))


