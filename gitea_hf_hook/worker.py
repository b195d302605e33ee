"""The worker: drains the spool and publishes each due job to the Hub.

:func:`loop` is one pass, with an injectable clock (as huey's ``loop(now)``): reclaim jobs of dead workers,
read the queue, coalesce jobs per target (Hub repository, type, branch or tag) into one publish of the newest,
never let an older commit overwrite a newer one, publish, then move each job to ``done/``, ``failed/`` or back to
``queue/`` with its retry state inside it. :func:`run` repeats passes until SIGTERM/SIGINT (or, with ``once``,
until nothing is due), in one or several processes; :mod:`.claims` keeps them from stepping on each other.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import select
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import claims, housekeeping, spool
from .config import Config, WorkerSettings
from .errors import PublishError
from .redact import redact

Publisher = Callable[[Config, dict[str, Any], "dict[str, Any] | None"], dict[str, Any]]
Job = dict[str, Any]

log = logging.getLogger("gitea_hf_hook.worker")
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


def _say(message: str, level: int = logging.INFO) -> None:
    log.log(level, redact(message))


def target_key(target: dict[str, Any]) -> str:
    """The file-name-safe identity of a target. A tag and a branch of the same name are different targets."""
    ident = json.dumps([target["hub_repo"], target["repo_type"], target["kind"], target["revision"]])
    return hashlib.sha256(ident.encode()).hexdigest()[:32]


def describe(job: Job) -> str:
    t = job["target"]
    prefix = {"model": "", "dataset": "datasets/", "space": "spaces/"}.get(t["repo_type"], t["repo_type"] + "s/")
    return f"{prefix}{t['hub_repo']} {t['kind']} {t['revision']}"


def backoff(attempts: int, settings: WorkerSettings, retry_after: float | None = None,
            rng: Callable[[], float] = random.random) -> float:
    """Seconds to wait before attempt ``attempts + 1``: exponential, capped, jittered, at least ``retry_after``."""
    delay = min(settings.backoff_max_seconds, settings.backoff_seconds * 2 ** max(attempts - 1, 0))
    # Jitter downwards only (75-100 %), so jobs that failed together spread out and the cap still holds.
    delay *= 0.75 + 0.25 * rng()
    return max(delay, retry_after or 0.0)


def read_state(root: str, key: str) -> dict[str, Any] | None:
    """The last publish to a target (git_commit, hub_commit, job, created, ...), or None before the first."""
    try:
        with open(os.path.join(root, "state", "targets", key + ".json"), "rb") as f:
            return json.loads(f.read())
    except FileNotFoundError:
        return None


def _order(job: Job) -> tuple[float, str]:
    return (float(job["created"]), str(job["id"]))


def _scrub(value: Any) -> Any:
    """``value`` with every string redacted: whatever the publisher returns is stored."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {str(k): _scrub(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_scrub(v) for v in value]
    return value


def _stamp(job: Job, outcome: str, now: float, **extra: Any) -> Job:
    holder = claims.me(now)
    job.update(outcome=outcome, finished=now, worker={"host": holder.host, "pid": holder.pid}, **extra)
    return job


def _default_publish() -> Publisher:
    from .publish import publish  # lazily: it imports huggingface_hub

    return publish


# --- one pass ---------------------------------------------------------------------------------------------------

def loop(config: Config, now: float | None = None, publish: Publisher | None = None, *,
         stop: Callable[[], bool] | None = None) -> LoopResult:
    """One pass over the spool at time ``now`` (default: the clock). ``stop`` is asked between targets."""
    now = time.time() if now is None else now
    root = config.spool
    spool.ensure_layout(root)
    result = LoopResult()
    housekeeping.sweep(config, now)
    for claim in claims.reclaim(root, now):
        _requeue_orphan(config, claim, now, result)
    groups: dict[str, list[Job]] = {}
    for name in spool.job_names(root, "queue"):
        try:
            with open(os.path.join(root, "queue", name), "rb") as f:
                job = spool.parse_job(name, f.read())
        except FileNotFoundError:
            continue  # another worker claimed it since the listing
        except spool.BadJob as exc:
            claim = claims.claim(root, name, now)
            if claim is not None:
                _dead_letter_unreadable(claim, str(exc), result)
            continue
        groups.setdefault(target_key(job["target"]), []).append(job)
    # Branches before tags, since a tag lands on the Hub commit its branch's publish makes; then the targets
    # whose oldest job waited longest.
    def priority(item: tuple[str, list[Job]]) -> tuple[bool, tuple[float, str]]:
        return item[1][0]["target"]["kind"] == "tag", min(_order(j) for j in item[1])

    for key, jobs in sorted(groups.items(), key=priority):
        if stop is not None and stop():
            break
        _drain_target(config, key, jobs, now, publish, result)
    return result


def _drain_target(config: Config, key: str, jobs: list[Job], now: float, publish: Publisher | None,
                  result: LoopResult) -> None:
    """Publish the newest job of one target and supersede the others, under the target's lock."""
    newest: Job | None = max(jobs, key=_order)
    assert newest is not None
    due = newest["not_before"] <= now
    if not due:
        result.next_due = min(newest["not_before"], result.next_due or newest["not_before"])
        if len(jobs) == 1:
            return
    lock = claims.lock_target(config.spool, key, now)
    if lock is None:
        result.busy.append(key)
        return
    try:
        state = read_state(config.spool, key)  # read under the lock: another worker may just have written it
        older = [j for j in jobs if j is not newest]
        winner = newest["id"]
        if state is not None and _order(newest) <= (float(state["created"]), str(state["job"])):
            older.append(newest)  # a newer commit is already on the Hub: never go back to an older one
            newest, winner = None, str(state["job"])
        for job in older:
            _supersede(config, job, winner, state, now, result)
        if newest is not None and due:
            _publish(config, key, newest, state, now, publish or _default_publish(), result)
    finally:
        lock.release()


def _supersede(config: Config, listed: Job, winner: str, state: dict[str, Any] | None, now: float,
               result: LoopResult) -> None:
    claim = claims.claim(config.spool, listed["id"] + ".json", now)
    if claim is None:
        return
    job = _reread(claim, result)
    if job is None:
        return
    if state is not None and state.get("job") == job["id"]:
        # Published already: its worker died after writing the target state, before moving the job to done/.
        claim.finish("done", _stamp(job, "published", now, result=state))
        result.published.append(job["id"])
        _say(f"job {job['id']} was published before its worker stopped; moved to done")
        return
    claim.finish("done", _stamp(job, "superseded", now, superseded_by=winner))
    result.superseded.append(job["id"])
    _say(f"job {job['id']} ({describe(job)} {job['commit'][:7]}) superseded by job {winner}")


def _publish(config: Config, key: str, listed: Job, state: dict[str, Any] | None, now: float,
             publish: Publisher, result: LoopResult) -> None:
    claim = claims.claim(config.spool, listed["id"] + ".json", now)
    if claim is None:
        result.busy.append(key)
        return
    try:
        job = _reread(claim, result)
        if job is None:
            return
        if job["not_before"] > now:  # another worker rescheduled it after our listing
            claim.finish("queue")
            return
        _say(f"publishing job {job['id']}: {job['commit'][:7]} to {describe(job)} (attempt {job['attempts'] + 1})")
        try:
            published = publish(config, job, state)
        except PublishError as exc:
            if exc.retryable:
                _failed_attempt(config, claim, job, str(exc), exc.retry_after, now, result)
            else:
                job["attempts"] += 1
                job["errors"].append({"at": now, "message": redact(str(exc))})
                _fail(claim, job, f"the Hub refused it: {exc}", now, result)
            return
        except Exception as exc:  # noqa: BLE001 - a bug or an unexpected failure must not stop the worker
            frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
            where = f" (at {os.path.basename(frame.filename)}:{frame.lineno})" if frame else ""
            _say(f"job {job['id']}: unexpected {type(exc).__name__}: {exc}{where}", logging.ERROR)
            _failed_attempt(config, claim, job, f"internal error: {type(exc).__name__}: {exc}", None, now, result)
            return
        published = _scrub(dict(published))
        new_state = {**published, "target": job["target"], "job": job["id"], "created": job["created"],
                     "git_commit": published.get("git_commit", job["commit"]), "published": now}
        # State first, then done/: a crash in between is recognised by the job id in the state (see _supersede).
        spool.write_atomic(os.path.join(config.spool, "state", "targets"), key + ".json", spool.job_bytes(new_state),
                           config.spool)
        claim.finish("done", _stamp(job, "published", now, result=published))
        result.published.append(job["id"])
        _say(f"published job {job['id']}: {job['commit'][:7]} is {describe(job)} "
             f"(hub commit {str(published.get('hub_commit', '?'))[:12]})")
    finally:
        if not claim.released:  # interrupted by something we do not catch: give the job back untouched
            claim.finish("queue")


def _reread(claim: claims.Claim, result: LoopResult) -> Job | None:
    """The claimed job as it is now on disk (another worker may have rewritten it since our listing)."""
    try:
        return spool.parse_job(claim.name, claim.read())
    except spool.BadJob as exc:
        _dead_letter_unreadable(claim, str(exc), result)
        return None


def _failed_attempt(config: Config, claim: claims.Claim, job: Job, message: str, retry_after: float | None,
                    now: float, result: LoopResult) -> None:
    """Count a retryable failure: back to ``queue/`` after a backoff, or ``failed/`` when out of attempts or age."""
    settings, message = config.worker, redact(message)
    job["attempts"] += 1
    job["errors"].append({"at": now, "message": message})
    # A job an admin queued again ages from then, not from its push.
    age_hours = (now - float(job.get("retried") or job["created"])) / 3600
    if job["attempts"] >= settings.max_attempts:
        _fail(claim, job, f"gave up after {job['attempts']} attempts (worker.max_attempts): {message}", now, result)
    elif age_hours > settings.max_age_hours:
        _fail(claim, job, f"gave up: the job is {age_hours:.1f} hours old (worker.max_age_hours is "
                          f"{settings.max_age_hours:g}): {message}", now, result)
    else:
        delay = backoff(job["attempts"], settings, retry_after)
        job["not_before"] = now + delay
        claim.finish("queue", job)
        result.retried.append(job["id"])
        _say(f"job {job['id']} failed (attempt {job['attempts']} of {settings.max_attempts}), retrying in "
             f"{delay:.0f}s: {message}", logging.WARNING)


def _fail(claim: claims.Claim, job: Job, reason: str, now: float, result: LoopResult) -> None:
    reason = redact(reason)
    claim.finish("failed", _stamp(job, "failed", now, reason=reason))
    result.failed.append(job["id"])
    _say(f"job {job['id']} failed: {reason}", logging.ERROR)


def _dead_letter_unreadable(claim: claims.Claim, reason: str, result: LoopResult) -> None:
    reason = redact(reason)
    claim.finish("failed", note=reason)
    result.failed.append(claim.job_id)
    _say(f"job file {claim.name} cannot be published, moved to failed/: {reason}", logging.ERROR)


def _requeue_orphan(config: Config, claim: claims.Claim, now: float, result: LoopResult) -> None:
    """A job whose worker died while holding it: count the attempt and queue it again, due at once."""
    job = _reread(claim, result)
    if job is None:
        return
    who = claim.previous.describe() if claim.previous else "its worker"
    since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(claim.previous.started)) if claim.previous else "?"
    message = f"{who} stopped while publishing it (claimed {since}); queued again"
    # The attempt counts, so a job that kills its worker every time still ends in failed/.
    job["attempts"] += 1
    job["errors"].append({"at": now, "message": message})
    result.reclaimed.append(job["id"])
    if job["attempts"] >= config.worker.max_attempts:
        _fail(claim, job, f"gave up after {job['attempts']} attempts (worker.max_attempts): {message}", now, result)
        return
    claim.finish("queue", job)
    _say(f"job {job['id']}: {message}", logging.WARNING)


# --- running ----------------------------------------------------------------------------------------------------

class _Stop:
    """Set by SIGTERM/SIGINT. A self-pipe wakes an idle wait; a handler must not take locks (threading.Event does)."""

    def __init__(self) -> None:
        self.flag = False
        self.read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.write_fd, False)

    def __call__(self) -> bool:
        return self.flag

    def signal(self, signum: int, frame: object) -> None:
        self.flag = True
        try:
            os.write(self.write_fd, b"x")
        except OSError:
            pass

    def wait(self, seconds: float) -> None:
        if not self.flag:
            select.select([self.read_fd], [], [], seconds)

    def close(self) -> None:
        os.close(self.read_fd)
        os.close(self.write_fd)


def _setup_logging() -> None:
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        formatter = logging.Formatter("%(asctime)s gitea-hf-hook worker[%(process)d]: %(message)s",
                                      "%Y-%m-%dT%H:%M:%SZ")
        formatter.converter = time.gmtime
        handler.setFormatter(formatter)
        log.addHandler(handler)
        log.setLevel(logging.INFO)


def run(config: Config, *, once: bool, workers: int = 1, publish: Publisher | None = None,
        clock: Callable[[], float] = time.time, sleep: Callable[[float], None] | None = None) -> int:
    """Drain the spool; returns the exit status.

    ``once``: publish every job that is due, then return. Otherwise run until SIGTERM or SIGINT, which let the
    current job finish (its publish is bounded by worker.timeout_seconds) and then return 0. ``workers`` > 1
    starts that many processes, each running this loop; the claims keep them apart.
    """
    _setup_logging()
    if workers > 1:
        return _run_many(config, once, workers, publish)
    stop = _Stop()
    in_main = threading.current_thread() is threading.main_thread()  # only the main thread may set handlers
    previous = {s: signal.signal(s, stop.signal) for s in (signal.SIGTERM, signal.SIGINT)} if in_main else {}
    pause = sleep or stop.wait
    _say(f"worker started (pid {os.getpid()}, spool {config.spool}{', once' if once else ''})")
    try:
        while not stop():
            result = loop(config, clock(), publish, stop=stop)
            if result.worked:
                continue
            if once:
                break
            wait = IDLE_POLL if result.next_due is None else min(IDLE_POLL, max(0.0, result.next_due - clock()))
            pause(wait)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        stop.close()
    _say("worker stopped")
    return 0


def _child(config: Config, once: bool, publish: Publisher | None) -> None:
    sys.exit(run(config, once=once, publish=publish))


def _run_many(config: Config, once: bool, workers: int, publish: Publisher | None) -> int:
    import multiprocessing

    # spawn, not fork: a forked child would share the parent's descriptors, and with them any lock.
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_child, args=(config, once, publish), name=f"worker-{i + 1}")
                 for i in range(workers)]

    def forward(signum: int, frame: object) -> None:
        for process in processes:
            if process.pid is not None and process.exitcode is None:
                os.kill(process.pid, signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        for process in processes:
            process.start()
        for process in processes:
            process.join()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 0 if all(p.exitcode == 0 for p in processes) else 1
