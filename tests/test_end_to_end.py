"""The whole way: alice pushes to Gitea, the worker publishes, and the Hub serves exactly the git tree.

Real ``git push`` through Gitea's dispatcher hooks, the real worker (in-process with an injected clock, or as
the ``gitea-hf-hook worker`` command), the Hub emulator, and the real client's ``snapshot_download``.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from gitea_hf_hook.config.model import Config
from gitea_hf_hook.spool.job import Job, parse
from gitea_hf_hook.worker import loop as worker
from tests.support.gitea_server import CLI, Clone, GiteaServer
from tests.support.hub import Hub
from tests.support.publishing import RULE, TOKEN, configure, git_files, tree_text

CARD = "---\nlicense: mit\n---\n# bert-tiny\n"
_names = itertools.count()


class Site:
    """acme/<name> on Gitea with our hooks, alice's clone, and the config pointing the worker at the Hub."""

    def __init__(self, server: GiteaServer, hub: Hub, tmp_path: Path, name: str) -> None:
        self.server, self.hub, self.tmp = server, hub, tmp_path
        self.repo_id = f"acme/{name}"
        server.create_repo("acme", name)
        self.config: Config = configure(server, hub, RULE, worker="worker:\n  backoff_seconds: 30\n")
        server.install(self.repo_id)
        self.clone: Clone = server.clone("acme", name, tmp_path / "work")
        self.downloads = 0

    def push(self, files: dict[str, bytes | str], message: str = "update") -> str:
        commit = self.clone.commit(files, message=message)
        result = self.clone.push("main")
        assert result.ok, result.output
        return commit

    def worker_command(self, *args: str) -> subprocess.CompletedProcess[str]:
        # These tests run as root, which the worker refuses unless told; tests/test_two_users.py runs it as its own
        # user.
        return subprocess.run([*CLI, "--config", str(self.server.config_path), "worker", "--allow-root", *args],
                              capture_output=True, text=True, timeout=120)

    def hub_files(self) -> dict[str, bytes]:
        self.downloads += 1
        return self.hub.files(self.repo_id, self.tmp / f"download-{self.downloads}")

    def hub_commits(self) -> list[str]:
        return [c.title for c in self.hub.api().list_repo_commits(self.repo_id)]

    def jobs(self, folder: str) -> list[Job]:
        return [parse(p.name, p.read_bytes()) for p in sorted((self.server.spool / folder).glob("*.json"))]


@pytest.fixture
def site(server: GiteaServer, hub: Hub, tmp_path: Path) -> Site:
    hub.reset()
    return Site(server, hub, tmp_path, f"e2e-{next(_names)}")


def test_a_push_appears_on_the_hub_byte_for_byte(site: Site):
    site.clone.write_lfs("model.safetensors", os.urandom(200_000))
    commit = site.push({"README.md": CARD, "config.json": '{"hidden": 8}\n'}, message="Add bert-tiny")
    done = site.worker_command("--once")
    assert done.returncode == 0, done.stderr
    on_hub = site.hub_files()
    del on_hub[".gitattributes"]  # the Hub's own, made with the repository
    assert on_hub == git_files(site.clone.bare, commit, site.server.lfs_root)
    assert site.hub_commits()[0] == "Add bert-tiny"
    [job] = site.jobs("done")
    assert job.outcome is not None and job.outcome.state == "published" and job.commit == commit
    assert site.jobs("queue") == [] and site.jobs("active") == []


def test_a_release_tag_pushed_with_its_branch_is_on_the_hub_after_one_pass(site: Site):
    commit = site.clone.commit({"README.md": CARD}, message="release 1.0")
    site.clone.git("tag", "-a", "v1.0", "-m", "release 1.0")
    pushed = site.clone.push("v1.0", "main")  # the tag's job is queued first
    assert pushed.ok and len(pushed.remote) == 2
    assert site.worker_command("--once").returncode == 0
    refs = site.hub.api().list_repo_refs(site.repo_id)
    [tag] = refs.tags
    [main] = [b for b in refs.branches if b.name == "main"]
    assert (tag.name, tag.target_commit) == ("v1.0", main.target_commit)
    assert sorted(job.outcome.state for job in site.jobs("done") if job.outcome) == ["published", "published"]
    assert {job.commit for job in site.jobs("done")} == {commit}


def test_twenty_quick_pushes_become_one_hub_commit(site: Site):
    site.push({"README.md": CARD}, message="card")
    assert site.worker_command("--once").returncode == 0
    before = site.hub_commits()
    earlier = {job.id for job in site.jobs("done")}
    last = ""
    for i in range(20):
        last = site.push({"step.txt": f"{i}\n"}, message=f"step {i}")
    assert len(site.server.queued_jobs()) == 20
    assert site.worker_command("--once").returncode == 0
    assert site.hub_commits() == ["step 19"] + before
    assert site.hub_files()["step.txt"] == b"19\n"
    outcomes = [(job.outcome.state if job.outcome else None, job.commit) for job in site.jobs("done") if job.id not in earlier]
    published = [commit for outcome, commit in outcomes if outcome == "published"]
    assert published == [last]
    assert [outcome for outcome, _ in outcomes].count("superseded") == 19


def test_hub_outages_are_retried_on_the_worker_clock(site: Site):
    site.push({"README.md": CARD})
    site.hub.fault(method="POST", path="/preupload/", status=503, times=1)
    t0 = 1_000_000.0
    first = worker.loop(site.config, now=t0)
    assert first.retried and not first.published
    [job] = site.jobs("queue")
    assert job.attempts == 1 and t0 + 15 <= job.not_before <= t0 + 45  # 30 s backoff, with jitter
    assert "503" in job.errors[-1].message
    assert not worker.loop(site.config, now=t0 + 10).worked  # not due yet
    site.hub.fault(method="POST", path="/preupload/", status=429, retry_after=600, times=1)
    second = worker.loop(site.config, now=job.not_before)
    assert second.retried
    [job] = site.jobs("queue")
    assert job.not_before >= t0 + 600  # the Hub's Retry-After wins over the shorter backoff
    third = worker.loop(site.config, now=job.not_before)
    assert third.published and site.hub_files()["README.md"] == CARD.encode()


def test_a_refused_token_is_dead_lettered_with_the_hubs_reason(site: Site):
    site.push({"README.md": CARD})
    site.hub.fault(method="POST", path="/commit/", status=403, times=-1)
    result = worker.loop(site.config, now=2_000_000.0)
    assert result.failed
    [job] = site.jobs("failed")
    assert job.attempts == 1
    assert "403" in job.errors[-1].message
    shown = subprocess.run([*CLI, "--config", str(site.server.config_path), "queue", "show", job.id],
                           capture_output=True, text=True)
    assert "403" in shown.stdout


def test_a_worker_killed_mid_publish_leaves_exactly_one_hub_commit(site: Site):
    site.push({"README.md": CARD}, message="card")
    assert site.worker_command("--once").returncode == 0
    site.push({"weights.txt": "v2\n"}, message="v2 weights")
    # The Hub holds the commit call for a while, so the worker is surely inside it when it dies.
    site.hub.fault(method="POST", path="/commit/", delay=3, times=1)
    injected = site.hub.stats().get("faults_injected", 0)
    running = subprocess.Popen([*CLI, "--config", str(site.server.config_path), "worker", "--allow-root"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while site.hub.stats().get("faults_injected", 0) == injected:  # until the commit call reaches the Hub
        assert time.monotonic() < deadline and running.poll() is None, "the worker never reached the commit"
        time.sleep(0.05)
    running.send_signal(signal.SIGKILL)
    running.wait()
    assert running.stderr is not None
    running.stderr.close()
    assert len(site.jobs("active")) == 1  # held by a dead worker
    done = site.worker_command("--once")
    assert done.returncode == 0, done.stderr
    assert site.hub_commits().count("v2 weights") == 1
    assert site.hub_files()["weights.txt"] == b"v2\n"
    assert site.jobs("active") == [] and site.jobs("queue") == []


def test_the_token_is_written_nowhere(site: Site):
    site.push({"README.md": CARD})
    site.hub.fault(method="POST", path="/commit/", status=500, times=1)
    failed = site.worker_command("--once")
    published = site.worker_command("--once")
    assert published.returncode == 0
    for text in (failed.stdout, failed.stderr, published.stdout, published.stderr,
                 tree_text(site.server.spool), tree_text(site.server.base / "hf"), tree_text(site.server.home)):
        assert TOKEN not in text
