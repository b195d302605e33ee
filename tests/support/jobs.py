"""Jobs as the hooks write them, and ways to read them back: all through the spool's own job type."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from gitea_hf_hook.config.model import Config, Target
from gitea_hf_hook.spool import layout
from gitea_hf_hook.spool.job import Job, PushRecord, Request, parse

ROOT = Path(__file__).resolve().parents[2]
T0 = float(int(time.time()))  # near the real clock, so file ages and the injected clock agree
PUSHED = PushRecord(owner="acme", name="bert-tiny", repo_id="7", pusher="alice", pusher_id="2", deploy_key_id="",
                    trigger="", pr_id="")


# The rule the jobs of make_job() are routed by: the worker derives every job's target again from the config.
ROUTE = """\
  - match: acme/*
    hub_repo: acme/{name}
    branches: {"*": "{branch}"}
    tags: "*"
"""


def jid(n: int) -> str:
    """The id of push number ``n``."""
    return f"20270115-080000-{n:08x}"


def make_job(n: int, *, kind: str = "branch", revision: str = "main", hub_repo: str = "acme/bert-tiny",
             created: float | None = None, repo_dir: str = "/srv/gitea/acme/bert-tiny.git",
             commit: str | None = None, **fields: Any) -> Job:
    """A job as pre-receive prepares it, for push number ``n`` (its commit id is "c" then ``n`` in hex)."""
    commit = f"c{n:039x}" if commit is None else commit
    ref = f"refs/heads/{revision}" if kind == "branch" else f"refs/tags/{revision}"
    request = Request(repository="acme/bert-tiny", repo_dir=repo_dir, ref=ref, old="0" * 40, new=commit,
                      commit=commit, target=Target(hub_repo, "model", kind, revision, revision))
    return Job(id=jid(n), created=T0 + n if created is None else created, pushed=PUSHED, request=request, **fields)


def read_job(spool: str, folder: str, job_id: str) -> Job:
    """The job ``job_id`` as it stands in ``spool/folder``, read with the worker's own parser."""
    path = Path(spool, folder, job_id + ".json")
    return parse(path.name, path.read_bytes())


def folders(config: Config) -> dict[str, list[str]]:
    """The job ids in each folder of the spool."""
    return {f: [n.removesuffix(".json") for n in layout.job_names(config.spool, f)]
            for f in ("queue", "active", "done", "failed")}


def python(code: str, *args: str, **kwargs: Any) -> subprocess.Popen[str]:
    """Start ``python -c code args...`` in the project directory."""
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=ROOT, text=True, **kwargs)
