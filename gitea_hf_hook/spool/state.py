"""Per-target state: what the worker last published to one Hub branch or tag, kept in ``state/targets/``.

The worker writes it after each publish and reads it before the next, to publish only what changed. Only the
spool's owner may write the folder, and a state file is still parsed like a job: every field checked, commit
ids included, and one that does not parse is treated as absent, which makes the next publish rebuild what it
needs from the Hub itself.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import NamedTuple

from ..config.model import Target
from ..errors import JobError
from .codec import ShapeError, from_data, to_data
from .job import PublishResult, is_id, is_oid

__all__ = ["PublishResult", "TargetState", "dump", "parse", "state_path", "target_key"]

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


def dump(state: TargetState) -> bytes:
    return json.dumps({"version": VERSION, **to_data(state)}, sort_keys=True, indent=1).encode()


def parse(name: str, data: bytes) -> TargetState:
    """The state stored as ``name``; raises JobError naming the file and the field that is wrong."""
    try:
        raw = json.loads(data)
        if not isinstance(raw, dict) or raw.pop("version", None) != VERSION:
            raise ShapeError("version", f"must be {VERSION}")
        state = from_data(TargetState, raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise JobError(f"state file {name}: {exc}", "it is ignored: the next publish compares with the Hub") from None
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
