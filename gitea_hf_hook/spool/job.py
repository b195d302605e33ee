"""The job: one accepted update of a publishing ref, as a versioned record with one writer and one parser.

pre-receive writes a job, running as Gitea's user; the worker, holding the Hub tokens, reads it. So its fields
are named for who may rely on them:

- ``pushed`` is what the hook saw of the push (who, which repository id, how). It is kept for the audit trail and
  for people reading the queue, and decides nothing.
- ``request`` is what the hook asks the worker to publish: the repository, the ref, the commit and the Hub target
  the rules routed it to. Anyone who can write as Gitea's user can write these: they are claims for the worker to
  derive again from the config and git, not facts (README's threat model says how far that goes today).
- the rest is the worker's own bookkeeping: attempts, backoff, errors, and the outcome once the job is settled.

:func:`dump` is the only writer and :func:`parse` the only reader, for the hooks, the worker, housekeeping, the
queue commands, the tests and the benchmarks alike.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, NamedTuple

from ..config.model import HUB_NAME, REPO_TYPES, Target
from ..errors import JobError
from ..gitea.hook_input import is_zero
from ..redact import clean
from .codec import ShapeError, from_data, to_data

VERSION = 2
OUTCOMES = ("published", "superseded", "failed")
_HEX = "0123456789abcdef"


def is_oid(text: str) -> bool:
    """A full sha1 or sha256 object id in lowercase hex (no regex: pre-receive imports this module)."""
    return len(text) in (40, 64) and not text.strip(_HEX)


class PublishResult(NamedTuple):
    """What one publish did. ``scope`` fingerprints the rule's file selection; ``mode`` says how the branch was
    compared: ``incremental`` (a git diff since the state), ``full`` (against the Hub tree) or ``already`` (the Hub
    head published this commit before)."""

    git_commit: str
    hub_commit: str | None
    hub_commits: tuple[str, ...] = ()
    uploaded: int = 0
    deleted: int = 0
    skipped: bool = True
    scope: str = ""
    mode: str = ""


class PushRecord(NamedTuple):
    """What Gitea told the hook about the push, for the audit trail. Never used to decide anything."""

    owner: str
    name: str
    repo_id: str
    pusher: str
    pusher_id: str
    deploy_key_id: str
    trigger: str
    pr_id: str


class Request(NamedTuple):
    """What to publish, as the hook resolved it. Written by Gitea's user, so untrusted input to the worker."""

    repository: str  # the Gitea repository, owner/name, lowercase
    repo_dir: str
    ref: str
    old: str
    new: str  # all zeros for a deletion
    commit: str  # the commit to publish, a tag peeled; empty for a deletion
    target: Target


class Attempt(NamedTuple):
    """One failed try, or an admin's action, in the job's history."""

    at: float
    message: str


class Outcome(NamedTuple):
    """How a job was settled, and by which worker."""

    state: str  # one of OUTCOMES
    finished: float
    host: str
    pid: int
    reason: str = ""  # why it failed
    superseded_by: str = ""  # the job whose newer commit published instead
    result: PublishResult | None = None


class Job(NamedTuple):
    """One publish job."""

    id: str
    created: float
    pushed: PushRecord
    request: Request
    attempts: int = 0
    not_before: float = 0.0  # due from then on (backoff)
    errors: tuple[Attempt, ...] = ()
    retried: float | None = None  # when an admin queued it again: its age counts from then
    outcome: Outcome | None = None

    @property
    def target(self) -> Target:
        return self.request.target

    @property
    def commit(self) -> str:
        return self.request.commit

    def failed_attempt(self, at: float, message: str) -> Job:
        """This job with one more attempt counted and its message, cleaned, in the history.

        The message may quote the Hub or Gitea: it is stored as one printable line, bounded, without tokens
        (:func:`..redact.clean`), so the history stays small however often a job fails and whatever it was told.
        """
        return self._replace(attempts=self.attempts + 1, errors=(*self.errors, Attempt(at, clean(message))))


def new_id(now: float | None = None) -> str:
    """A unique, time-ordered job id such as ``20261125-205226-3f9a1c0b``."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(time.time() if now is None else now))
    return f"{stamp}-{os.urandom(4).hex()}"


def is_id(text: str) -> bool:
    """Whether ``text`` has the shape of a job id such as ``20261125-205226-3f9a1c0b`` (so is safe in a file name)."""
    date, _, rest = text.partition("-")
    clock, _, noise = rest.partition("-")
    return (len(date), len(clock), len(noise)) == (8, 6, 8) and (date + clock).isdigit() and date.isascii() \
        and clock.isascii() and not noise.strip(_HEX)


def dump(job: Job) -> bytes:
    """The job as stored: versioned, sorted, indented JSON."""
    return json.dumps({"version": VERSION, **to_data(job)}, sort_keys=True, indent=1).encode()


def parse(name: str, data: bytes) -> Job:
    """The job stored as the file ``name``; raises JobError naming the file and what is wrong with it."""
    try:
        raw = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _bad(name, f"not valid JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise _bad(name, "not a JSON object")
    version = raw.pop("version", None)
    if version == 1:
        raw = _from_version_1(name, raw)
    elif version != VERSION:
        raise _bad(name, f"job format version {version!r} is not one this worker reads (1 or {VERSION})",
                   "run the same gitea-hf-hook version on the Gitea server and the workers")
    try:
        job = from_data(Job, raw)
    except ShapeError as exc:
        raise _bad(name, f"{exc.where}: {exc.problem}") from None
    if problem := _shape_problem(name, job):
        raise _bad(name, problem)
    return job


def _bad(name: str, problem: str, hint: str = "") -> JobError:
    return JobError(f"job file {name}: {problem}", hint)


def _shape_problem(name: str, job: Job) -> str | None:
    """What the types alone do not say: ids, object ids, refs and the target's shape."""
    # The id names lock and state files: it must be the file's own name, never a path taken from the content.
    if job.id != name.removesuffix(".json") or not is_id(job.id):
        return f"id: {job.id!r} does not match the file name"
    request, target = job.request, job.request.target
    for field in ("old", "new"):
        if not is_oid(getattr(request, field)):
            return f"request.{field}: must be a full hex object id"
    if is_zero(request.new) != (request.commit == ""):
        return "request.commit: must be empty exactly when the ref is deleted"
    if request.commit and not is_oid(request.commit):
        return "request.commit: must be a full hex object id"
    if not request.ref.startswith(("refs/heads/", "refs/tags/")):
        return "request.ref: must be a branch or a tag"
    owner, _, repo = request.repository.partition("/")
    if not owner or not repo or "/" in repo:
        return "request.repository: must be owner/name"
    if target.kind not in ("branch", "tag") or target.repo_type not in REPO_TYPES:
        return "request.target: kind or repo_type is not one this worker knows"
    namespace, _, hub_name = target.hub_repo.partition("/")
    if not HUB_NAME.match(namespace) or not HUB_NAME.match(hub_name):
        return "request.target.hub_repo: must be namespace/name"
    if job.outcome is not None and job.outcome.state not in OUTCOMES:
        return f"outcome.state: must be one of {', '.join(OUTCOMES)}"
    return None


def _from_version_1(name: str, old: dict[str, Any]) -> dict[str, Any]:
    """A job written by the previous release, in this release's shape: an upgrade loses no job."""
    try:
        gitea, target = dict(old["gitea"]), dict(old["target"])
        target.pop("url", None)
        new: dict[str, Any] = {
            "id": old["id"], "created": old["created"],
            "pushed": {k: str(gitea.get(k) or "") for k in PushRecord._fields},
            "request": {"repository": f"{gitea['owner']}/{gitea['name']}", "repo_dir": old["repo_dir"],
                        "ref": old["ref"], "old": old["old"], "new": old["new"], "commit": old["commit"],
                        "target": target},
            "attempts": old.get("attempts", 0), "not_before": old.get("not_before", 0),
            "errors": [{"at": e["at"], "message": e["message"]} for e in old.get("errors", [])],
        }
        if old.get("retried") is not None:
            new["retried"] = old["retried"]
        if old.get("outcome") is not None:
            worker = old.get("worker") or {}
            new["outcome"] = {"state": old["outcome"], "finished": old.get("finished", 0),
                              "host": str(worker.get("host", "")), "pid": int(worker.get("pid", 0)),
                              "reason": str(old.get("reason", "")), "superseded_by": str(old.get("superseded_by", ""))}
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
        raise _bad(name, f"a version 1 job without {exc}") from None
    return new
