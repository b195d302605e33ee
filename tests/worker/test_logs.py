"""The worker as a service: its log lines, as text or JSON, and its stop on SIGTERM.

Alice pushes for real; the ``gitea-hf-hook worker`` command runs as its own process and publishes with the real
client to the Hub emulator, posting commit statuses to the stand-in for Gitea's API.
"""

from __future__ import annotations

import json
import os
import random
import re
import secrets
import signal
import string
import subprocess
from pathlib import Path
from typing import Any

import pytest

from gitea_hf_hook.config.model import Config
from gitea_hf_hook.spool.job import Job, parse
from tests.support.gitea_api import GiteaApi
from tests.support.gitea_server import CLI, Clone, GiteaServer
from tests.support.hub import Hub
from tests.support.publishing import CHECKS, TOKEN, configure

TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\Z")
# main publishes to main; every try-* branch to a Hub branch of its own name.
RULE = """\
  - match: acme/*
    hub_repo: acme/{name}
    publishers: [alice]
    branches: {main: main, "try*": "{branch}"}
""" + CHECKS


def hub_token_shaped() -> str:
    """A Hub-token-shaped string, built at run time so no token-shaped literal sits in the sources."""
    return "hf_" + "".join(random.choices(string.ascii_letters + string.digits, k=34))


class Site:
    """acme/<name> on Gitea with our hooks and alice's clone; the config points the worker at the emulator."""

    def __init__(self, server: GiteaServer, hub: Hub, tmp_path: Path) -> None:
        hub.reset()
        self.server, self.hub = server, hub
        self.name = f"logs-{secrets.token_hex(4)}"
        server.create_repo("acme", self.name)
        self.config: Config = configure(server, hub, RULE)
        server.install(f"acme/{self.name}")
        self.clone: Clone = server.clone("acme", self.name, tmp_path / "work")
        assert server.gitea_api is not None
        self.api: GiteaApi = server.gitea_api

    def push(self, *refs: str) -> None:
        pushed = self.clone.push(*refs)
        assert pushed.ok, pushed.output

    def worker(self, *args: str) -> subprocess.Popen[str]:
        # These tests run as root, which the worker refuses unless told.
        return subprocess.Popen([*CLI, "--config", str(self.server.config_path), "worker", "--allow-root", *args],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def jobs(self, folder: str) -> list[Job]:
        return [parse(p.name, p.read_bytes()) for p in sorted((self.server.spool / folder).glob("*.json"))]

    def job_for(self, branch: str) -> Job:
        [job] = [j for j in self.jobs("queue") if j.request.ref == f"refs/heads/{branch}"]
        return job


@pytest.fixture
def site(server: GiteaServer, hub: Hub, tmp_path: Path) -> Site:
    return Site(server, hub, tmp_path)


def finish(process: subprocess.Popen[str]) -> tuple[str, str]:
    try:
        return process.communicate(timeout=120)
    finally:
        process.kill()


def job_lines(records: list[dict[str, Any]], job_id: str) -> list[dict[str, Any]]:
    return [r for r in records if r.get("job_id") == job_id]


# --- --log-format json ----------------------------------------------------------------------------------------

def test_with_log_format_json_every_line_is_an_object_naming_the_job_target_outcome_and_duration(
        site: Site) -> None:
    site.clone.commit({"README.md": "# tiny\n"}, message="Add card")
    site.push("main")
    # A branch whose name the Hub refuses ("+" is no character of its ref names), shaped around a token.
    shaped = hub_token_shaped()
    branch = f"try+{shaped}"
    site.clone.git("branch", branch)
    site.push(branch)
    published_job, failed_job = site.job_for("main"), site.job_for(branch)

    worker = site.worker("--once", "--log-format", "json")
    _, err = finish(worker)

    assert worker.returncode == 0, err
    records = [json.loads(line) for line in err.splitlines()]  # every line, or this fails
    assert all(TIME.match(r["time"]) and r["pid"] == worker.pid for r in records), records
    assert [r["message"] for r in records[:1] + records[-1:]] == [
        f"worker started (pid {worker.pid}, spool {site.config.spool}, once)", "worker stopped"]

    started, published = job_lines(records, published_job.id)
    target = f"acme/{site.name} branch main"
    assert started == {
        "time": started["time"], "level": "info", "pid": worker.pid,
        "message": f"publishing job {published_job.id}: {published_job.commit[:7]} to {target} (attempt 1)",
        "job_id": published_job.id, "target": target, "commit": published_job.commit, "outcome": "started",
        "duration": None}
    [done] = site.jobs("done")
    assert done.outcome is not None and done.outcome.result is not None
    hub_commit = done.outcome.result.hub_commit
    assert hub_commit is not None
    assert {k: v for k, v in published.items() if k not in ("time", "duration")} == {
        "level": "info", "pid": worker.pid,
        "message": f"published job {published_job.id}: {published_job.commit[:7]} is {target} "
                   f"(hub commit {hub_commit[:12]})",
        "job_id": published_job.id, "target": target, "commit": published_job.commit, "outcome": "published"}
    assert isinstance(published["duration"], float) and published["duration"] >= 0

    _, failed = job_lines(records, failed_job.id)
    [dead] = site.jobs("failed")
    assert dead.outcome is not None
    assert "the Hub answered 400: Invalid reference name: try+[REDACTED]" in dead.outcome.reason
    assert {k: v for k, v in failed.items() if k not in ("time", "duration")} == {
        "level": "error", "pid": worker.pid, "message": f"job {failed_job.id} failed: {dead.outcome.reason}",
        "job_id": failed_job.id, "target": f"acme/{site.name} branch try+[REDACTED]",
        "commit": failed_job.commit, "outcome": "failed"}
    assert isinstance(failed["duration"], float) and failed["duration"] >= 0
    assert shaped not in err and TOKEN not in err


def test_the_processes_of_workers_log_json_too(site: Site) -> None:
    worker = site.worker("--workers", "2", "--log-format", "json")
    try:
        assert worker.stderr is not None
        started = [json.loads(worker.stderr.readline()) for _ in range(2)]
        assert [r["message"].split(" (")[0] for r in started] == ["worker started"] * 2
        assert len({r["pid"] for r in started} | {worker.pid}) == 3  # two children, neither the parent
        worker.send_signal(signal.SIGTERM)
        _, err = worker.communicate(timeout=120)
    finally:
        worker.kill()
    assert worker.returncode == 0, err
    assert [json.loads(line)["message"] for line in err.splitlines()] == ["worker stopped"] * 2


def test_without_log_format_the_lines_stay_text(site: Site) -> None:
    site.clone.commit({"README.md": "# tiny\n"}, message="Add card")
    site.push("main")
    [job] = site.jobs("queue")

    worker = site.worker("--once")
    _, err = finish(worker)

    assert worker.returncode == 0, err
    said = [line.split(f" gitea-hf-hook worker[{worker.pid}]: ", 1)[1] for line in err.splitlines()]
    assert said[1] == f"publishing job {job.id}: {job.commit[:7]} to acme/{site.name} branch main (attempt 1)"
    assert said[2].startswith(f"published job {job.id}: ")


# --- SIGTERM ----------------------------------------------------------------------------------------------------

def test_sigterm_during_a_publish_lets_it_finish_then_the_worker_exits_0(site: Site) -> None:
    weights = os.urandom(100_000)
    site.clone.write_lfs("model.safetensors", weights)
    site.clone.commit({"README.md": "# tiny\n"}, message="Add weights")
    site.push("main")
    site.clone.git("branch", "try-later")
    site.push("try-later")  # queued after main's job, so published after it
    first, second = site.job_for("main"), site.job_for("try-later")
    # The worker asks Gitea whether the repository holds the weights half-way through main's publish: held there.
    held = site.api.hold(r"/info/lfs/objects/batch$")

    worker = site.worker("--log-format", "json")
    try:
        assert held.arrived.wait(60), "the publish never asked Gitea for its LFS objects"
        assert worker.poll() is None
        worker.send_signal(signal.SIGTERM)  # delivered before the worker can read the answer released below
        held.release()
        _, err = worker.communicate(timeout=120)
    finally:
        held.release()
        worker.kill()

    assert worker.returncode == 0, err
    records = [json.loads(line) for line in err.splitlines()]
    assert [(r.get("job_id"), r.get("outcome")) for r in records[1:]] == [
        (first.id, "started"), (first.id, "published"), (None, None)]
    assert records[-1]["message"] == "worker stopped"
    assert [j.id for j in site.jobs("done")] == [first.id] and [j.id for j in site.jobs("queue")] == [second.id]
    assert site.hub.files(f"acme/{site.name}", site.server.base / "download")["model.safetensors"] == weights
    [done] = site.jobs("done")
    assert done.outcome is not None and done.outcome.result is not None
    assert [(r.payload["state"], r.payload.get("target_url")) for r in site.api.status_requests] == [
        ("pending", None), ("success", f"{site.hub.url}/acme/{site.name}/commit/{done.outcome.result.hub_commit}")]
