"""The figures an admin watches: queue depth and age, failures, and each target's last success and last failure.

``gitea-hf-hook status --json`` shows them, and with ``metrics_file`` set the worker writes them at the end of each
pass as a file in the Prometheus text format, replaced atomically. Only the worker writes that file, never
``status``: its ``gitea_hf_hook_last_pass_timestamp_seconds`` then says when a worker last ran a pass, and stops
moving when none does, which a reading of the spool by an admin would hide.

Label values come from the config and from Gitea's names (a branch maps to a Hub revision), and a failure's reason
from the Hub: every one is escaped as the format says (backslash, double quote, line feed), and any other character
that is not printable is replaced, so no value can end a line or forge a sample.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Sequence
from typing import Any, NamedTuple

from ..config.model import Config, Target
from ..errors import HookError, JobError, PublishError
from ..redact import REPLACED, clean
from ..spool import layout
from ..spool.codec import to_data
from ..spool.job import Job, PushRecord, Request, parse
from ..spool.state import TargetFailure, TargetState, dump_failure, failure_path, records, target_key
from .derive import route
from .logs import say

PREFIX = "gitea_hf_hook_"
COUNTED = ("active", "failed", "cancelled", "done")  # the folders counted, beside queue/


class TargetFigures(NamedTuple):
    """One target's last publish and last failure, either maybe absent."""

    target: Target
    success: TargetState | None
    failure: TargetFailure | None


class Figures(NamedTuple):
    """The spool at one moment."""

    at: float
    queued: int
    due: int
    oldest_created: float | None  # the oldest queued job's creation, None when none could be read
    active: int
    failed: int
    cancelled: int
    done: int
    targets: tuple[TargetFigures, ...]


def queue_figures(jobs: Sequence[Job | None], now: float) -> tuple[int, int, float | None]:
    """Depth, due count and oldest creation time of the queued ``jobs`` (None: a file that could not be read, which
    counts as due, since the worker's next pass moves it to failed/)."""
    created = [job.created for job in jobs if job is not None]
    due = sum(1 for job in jobs if job is None or job.not_before <= now)
    return len(jobs), due, min(created) if created else None


_NO_PUSH = PushRecord("", "", "", "", "", "", "", "")


def _mapped(config: Config, failure: TargetFailure) -> bool:
    """Whether the worker's own routing maps the failed job's repository and ref to its target. The worker also
    dead-letters jobs whose target the config refuses, with the target the job file asked for: Gitea's user can write
    those, and they name no target of ours."""
    zero = "0" * 40
    request = Request(failure.repository, "", failure.ref, zero, failure.commit or zero, failure.commit,
                      failure.target)
    try:
        route(config, Job(failure.job, failure.failed, _NO_PUSH, request))
    except PublishError:
        return False
    return True


def targets(config: Config) -> tuple[TargetFigures, ...]:
    """Every target with a recorded publish or failure, by label."""
    found = []
    for record in records(config.spool):
        failure = record.failure if record.failure is not None and _mapped(config, record.failure) else None
        if record.success is not None or failure is not None:
            found.append(TargetFigures(record.target, record.success, failure))
    return tuple(sorted(found, key=lambda t: (t.target.label, t.target.name)))


def gather(config: Config, now: float) -> Figures:
    """The figures of the spool as it is now."""
    root = config.spool
    queue = os.path.join(root, "queue")
    jobs: list[Job | None] = []
    for name in layout.job_names(root, "queue"):
        try:
            jobs.append(parse(name, layout.read_entry(queue, name)))
        except FileNotFoundError:
            continue  # claimed since the listing
        except (OSError, JobError):
            jobs.append(None)
    queued, due, oldest = queue_figures(jobs, now)
    counts = {folder: len(layout.job_names(root, folder)) for folder in COUNTED}
    return Figures(now, queued, due, oldest, counts["active"], counts["failed"], counts["cancelled"],
                   counts["done"], targets(config))


def target_data(figures: TargetFigures, now: float) -> dict[str, Any]:
    """One target for ``status --json``."""
    success, failure = figures.success, figures.failure
    return {
        "target": to_data(figures.target), "label": figures.target.label,
        "last_success": None if success is None else {
            "at": success.published, "age_seconds": int(max(now - success.published, 0)), "job": success.job,
            "commit": success.result.git_commit, "hub_commit": success.result.hub_commit},
        "last_failure": None if failure is None else {
            "at": failure.failed, "age_seconds": int(max(now - failure.failed, 0)), "job": failure.job,
            "commit": failure.commit, "repository": failure.repository, "ref": failure.ref, "reason": failure.reason},
    }


# --- the text format ----------------------------------------------------------------------------------------------

def label_value(text: str) -> str:
    """``text`` as a label value between double quotes: backslash, double quote and line feed escaped as the format
    says; any other character that is not printable (a carriage return, a line separator, a lone surrogate) is
    replaced, because the format has no escape for it and line-based readers would split there."""
    out = []
    for c in text:
        if c == "\\":
            out.append("\\\\")
        elif c == '"':
            out.append('\\"')
        elif c == "\n":
            out.append("\\n")
        elif not c.isprintable():
            out.append(REPLACED)
        else:
            out.append(c)
    return "".join(out)


def _number(value: float) -> str:
    return str(value) if isinstance(value, int) else repr(float(value))


def _labels(target: Target, extra: tuple[tuple[str, str], ...] = ()) -> str:
    pairs = (("hub_repo", target.hub_repo), ("repo_type", target.repo_type), ("kind", target.kind),
             ("revision", target.revision), *extra)
    return "{" + ",".join(f'{name}="{label_value(value)}"' for name, value in pairs) + "}"


def render(figures: Figures) -> str:
    """The figures as a Prometheus text-format file: each metric with its HELP and TYPE lines, all gauges."""
    oldest = 0.0 if figures.oldest_created is None else max(figures.at - figures.oldest_created, 0.0)
    plain: list[tuple[str, str, float]] = [
        ("last_pass_timestamp_seconds", "When the worker that wrote this file began its last pass.", figures.at),
        ("queue_jobs", "Jobs waiting in queue/, due or not.", figures.queued),
        ("queue_due_jobs", "Queued jobs that are due now.", figures.due),
        ("queue_oldest_age_seconds", "Age of the oldest queued job since its push; 0 when the queue is empty.",
         oldest),
        ("active_jobs", "Jobs a worker holds (active/).", figures.active),
        ("failed_jobs", "Jobs in the dead letter (failed/).", figures.failed),
        ("cancelled_jobs", "Jobs an admin cancelled (cancelled/).", figures.cancelled),
        ("done_jobs", "Published or superseded jobs kept in done/.", figures.done),
    ]
    lines: list[str] = []

    def family(name: str, help_text: str, samples: list[tuple[str, float]]) -> None:
        help_text = help_text.replace("\\", "\\\\").replace("\n", "\\n")
        lines.extend((f"# HELP {PREFIX}{name} {help_text}", f"# TYPE {PREFIX}{name} gauge"))
        lines.extend(f"{PREFIX}{name}{labels} {_number(value)}" for labels, value in samples)

    for name, help_text, value in plain:
        family(name, help_text, [("", value)])
    published: list[tuple[str, float]] = []
    published_info: list[tuple[str, float]] = []
    failed: list[tuple[str, float]] = []
    failed_info: list[tuple[str, float]] = []
    for t in figures.targets:
        if t.success is not None:
            result = t.success.result
            published.append((_labels(t.target), t.success.published))
            published_info.append((_labels(t.target, (("job", t.success.job), ("commit", result.git_commit),
                                                      ("hub_commit", result.hub_commit or ""))), 1))
        if t.failure is not None:
            failed.append((_labels(t.target), t.failure.failed))
            failed_info.append((_labels(t.target, (("job", t.failure.job), ("commit", t.failure.commit),
                                                   ("reason", t.failure.reason))), 1))
    family("target_last_success_timestamp_seconds", "When each target last published.", published)
    family("target_last_success_info", "The job and commits of each target's last publish (always 1).",
           published_info)
    family("target_last_failure_timestamp_seconds", "When a job of each target last ended in failed/.", failed)
    family("target_last_failure_info", "The job, commit and reason of each target's last failure (always 1).",
           failed_info)
    return "\n".join(lines) + "\n"


# --- the file -----------------------------------------------------------------------------------------------------

def write(path: str, text: str) -> None:
    """Replace the file ``path`` with ``text``: written to a new dotfile in the same folder, fsynced, then renamed
    over it, each step through a descriptor of the folder opened without following a link. A reader sees the old
    file or the new one, never half of one, and a link at ``path`` is replaced, never written through."""
    folder, name = os.path.split(path)
    dir_fd = os.open(folder or ".", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        tmp = f".{name}.{os.getpid()}.{os.urandom(4).hex()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=dir_fd)
        try:
            os.fchmod(fd, 0o644)  # past the umask: the collector reading it runs as another user
            data = memoryview(text.encode())
            while data:
                data = data[os.write(fd, data):]
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            os.unlink(tmp, dir_fd=dir_fd)
            raise
        os.close(fd)
        os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    finally:
        os.close(dir_fd)


_reported: dict[str, str] = {}  # metrics_file -> the problem last logged for it, so a pass every 2 s logs it once


def after_pass(config: Config, now: float) -> None:
    """Write ``metrics_file``, when set, with the figures at ``now``. A file that cannot be written is logged once
    (and again when it is fixed), and never stops the worker."""
    path = config.metrics_file
    if not path:
        return
    try:
        write(path, render(gather(config, now)))
    except (OSError, HookError) as exc:
        folder = os.path.dirname(path)
        if isinstance(exc, HookError):
            problem = f"metrics_file {path} was not written: {exc}"
        elif exc.errno in (errno.ELOOP, errno.ENOTDIR) and os.path.islink(folder):
            problem = (f"metrics_file {path} was not written: its folder {folder} is a symbolic link (set "
                       "metrics_file to a path in the folder itself)")
        else:
            problem = (f"metrics_file {path} was not written: {exc.strerror} (make {folder} a folder the worker's "
                       "user may write)")
        if _reported.get(path) != problem:
            say(problem, logging.ERROR)
            _reported[path] = problem
        return
    if _reported.pop(path, None) is not None:
        say(f"metrics_file {path} is written again")


def record_failure(spool: str, job: Job, reason: str, now: float) -> None:
    """Remember ``job``, just moved to failed/, as its target's last failure. The record is the worker's own file,
    beside the target's state; one that cannot be written is logged, and the job stays failed all the same."""
    failure = TargetFailure(job.target, job.id, job.request.repository, job.request.ref, job.commit, now,
                            clean(reason))
    path = failure_path(spool, target_key(job.target))
    try:
        layout.write_private(os.path.dirname(path), os.path.basename(path), dump_failure(failure))
    except OSError as exc:
        say(f"the failure of job {job.id} was not recorded in {path}: {exc.strerror}", logging.WARNING)
