"""Per-target state: what the worker last published to one Hub branch or tag, kept in ``state/targets/``.

The worker writes it after each publish and reads it before the next, to publish only what changed. Only the
spool's owner may write the folder, and a state file is still parsed like a job: every field checked, commit
ids included, and one that does not parse is treated as absent, which makes the next publish rebuild what it
needs from the Hub itself. Beside it, the target's last failure (``<key>.failure.json``) is kept for ``status``
and the metrics file; nothing the worker publishes depends on it.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import NamedTuple, TypeVar

from ..config.model import Target
from ..errors import JobError
from . import layout
from .codec import ShapeError, from_data, to_data
from .job import PublishResult, is_id, is_oid

_Record = TypeVar("_Record")

__all__ = ["PublishResult", "TargetFailure", "TargetRecord", "TargetState", "dump", "dump_failure", "failure_path",
           "parse", "parse_failure", "records", "state_path", "target_key"]

VERSION = 1


class TargetState(NamedTuple):
    """The last successful publish to one target."""

    target: Target
    job: str  # the job that published it
    created: float  # that job's creation time: no older job may overwrite it
    published: float
    result: PublishResult


def target_key(target: Target) -> str:
    """The file-name-safe identity of a target. A tag and a branch of the same name are different targets."""
    ident = json.dumps([target.hub_repo, target.repo_type, target.kind, target.revision])
    return hashlib.sha256(ident.encode()).hexdigest()[:32]


def state_path(spool: str, key: str) -> str:
    """The state file of the target whose :func:`target_key` is ``key``."""
    return os.path.join(spool, "state", "targets", key + ".json")


def dump(state: TargetState | TargetFailure) -> bytes:
    """A target's state or its last failure, as the worker stores it."""
    return json.dumps({"version": VERSION, **to_data(state)}, sort_keys=True, indent=1).encode()


def _read(kind: type[_Record], name: str, data: bytes, hint: str) -> _Record:
    """The record of type ``kind`` stored as ``name``, of this version; raises JobError naming the file and field."""
    try:
        raw = json.loads(data)
        if not isinstance(raw, dict) or raw.pop("version", None) != VERSION:
            raise ShapeError("version", f"must be {VERSION}")
        return from_data(kind, raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise JobError(f"state file {name}: {exc}", hint) from None


def parse(name: str, data: bytes) -> TargetState:
    """The state stored as ``name``; raises JobError naming the file and the field that is wrong."""
    state = _read(TargetState, name, data, "it is ignored: the next publish compares with the Hub")
    # Its commit ids reach git's command line and the Hub's API: nothing but full hex ids, and a job id's shape.
    result = state.result
    for field, value in (("result.git_commit", result.git_commit), ("result.hub_commit", result.hub_commit or ""),
                         *((f"result.hub_commits[{i}]", c) for i, c in enumerate(result.hub_commits))):
        if value and not is_oid(value):
            raise JobError(f"state file {name}: {field}: must be a full hex object id",
                           "it is ignored: the next publish compares with the Hub")
    if not is_id(state.job):
        raise JobError(f"state file {name}: job: {state.job!r} is not a job id",
                       "it is ignored: the next publish compares with the Hub")
    return state


# --- the last failure of each target ----------------------------------------------------------------------------
# Beside a target's state, in a file of its own: a target whose every job failed has no state to add it to, and
# state files from before this record existed are read unchanged (a release that knows nothing of it never opens
# ``<key>.failure.json``, and one that does reads a target without it as "no failure recorded").

FAILURE_SUFFIX = ".failure.json"


class TargetFailure(NamedTuple):
    """The last job of one target that ended in ``failed/``: when, which job, repository, ref and commit, and why."""

    target: Target
    job: str
    repository: str  # the Gitea repository, owner/name, as the job named it
    ref: str
    commit: str  # empty for a deletion
    failed: float
    reason: str


def failure_path(spool: str, key: str) -> str:
    """The last-failure file of the target whose :func:`target_key` is ``key``."""
    return os.path.join(spool, "state", "targets", key + FAILURE_SUFFIX)


dump_failure = dump


def parse_failure(name: str, data: bytes) -> TargetFailure:
    """The failure stored as ``name``; raises JobError naming the file and the field that is wrong."""
    hint = "it is ignored: the next failure of the target writes it again"
    failure = _read(TargetFailure, name, data, hint)
    if failure.commit and not is_oid(failure.commit):
        raise JobError(f"state file {name}: commit: must be a full hex object id", hint)
    if not is_id(failure.job):
        raise JobError(f"state file {name}: job: {failure.job!r} is not a job id", hint)
    return failure


class TargetRecord(NamedTuple):
    """What ``state/targets/`` holds for one target: its last publish and its last failure, either maybe absent."""

    key: str
    success: TargetState | None
    failure: TargetFailure | None

    @property
    def target(self) -> Target:
        known = self.success or self.failure
        assert known is not None
        return known.target


def _key_of(name: str) -> tuple[str, bool] | None:
    """``(key, is_failure)`` for a state file name, None for anything else (temporary dotfiles included)."""
    failure = name.endswith(FAILURE_SUFFIX)
    key = name.removesuffix(FAILURE_SUFFIX) if failure else name.removesuffix(".json")
    if name.startswith(".") or key == name or len(key) != 32 or key.strip("0123456789abcdef"):
        return None
    return key, failure


def records(spool: str) -> list[TargetRecord]:
    """Every target the worker holds a state or a last failure for, by key. A file that cannot be read or parsed,
    or that speaks of a target other than its name's, is left out, as the worker ignores it."""
    folder = os.path.join(spool, "state", "targets")
    try:
        names = sorted(os.listdir(folder))
    except FileNotFoundError:
        return []
    successes: dict[str, TargetState] = {}
    failures: dict[str, TargetFailure] = {}
    for name in names:
        keyed = _key_of(name)
        if keyed is None:
            continue
        key, is_failure = keyed
        try:
            data = layout.read_entry(folder, name)
            if is_failure:
                failure = parse_failure(name, data)
                if target_key(failure.target) == key:
                    failures[key] = failure
            else:
                success = parse(name, data)
                if target_key(success.target) == key:
                    successes[key] = success
        except (OSError, JobError):
            continue
    return [TargetRecord(key, successes.get(key), failures.get(key)) for key in sorted({*successes, *failures})]
