"""What an admin sees and does with ``gitea-hf-hook queue ...``, ``status``, ``worker`` and ``hub-emulator``."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from gitea_hf_hook.admin.cli import cli
from gitea_hf_hook.config.load import load
from gitea_hf_hook.config.model import Config
from gitea_hf_hook.errors import PublishError
from gitea_hf_hook.spool import claims
from gitea_hf_hook.spool import layout as spool
from gitea_hf_hook.spool.job import Attempt, Job
from gitea_hf_hook.spool.state import PublishResult, TargetState
from gitea_hf_hook.worker import loop as worker
from tests.support.gitea_server import CLI, GiteaServer
from tests.support.jobs import ROOT, ROUTE, jid, make_job, read_job

NOW = 1_800_018_030.0  # 2027-01-15T13:00:30Z
HOST = socket.gethostname()
REFUSED = "the Hub answered 403: you cannot write to acme/bert-tiny (give the token write access)"
TARGET = {"hub_repo": "acme/bert-tiny", "repo_type": "model", "kind": "branch"}
BROKEN = ("job file broken.json: not valid JSON (Expecting property name enclosed in double quotes: line 1 column 2 "
          "(char 1))")


def publisher(config: Config, job: Job, state: TargetState | None) -> PublishResult:
    """Publisher double: the Hub refuses the v1.0 tag and takes everything else."""
    if job.target.kind == "tag":
        raise PublishError("the Hub answered 403: you cannot write to acme/bert-tiny", "give the token write access")
    return PublishResult(git_commit=job.commit, hub_commit="b" * 40)


@dataclass
class Scene:
    config: Config
    orphan_pid: int
    held: claims.Claim

    def run(self, *args: str) -> Result:
        return CliRunner().invoke(cli, ["--config", self.config.path, *args])


@pytest.fixture
def scene(server: GiteaServer, monkeypatch: pytest.MonkeyPatch) -> Scene:
    """A spool with every kind of job: queued (due and waiting), active (held and orphaned), failed, done."""
    config = load(str(server.write_config(ROUTE)))
    spool.ensure_layout(config.spool)
    spool.enqueue(config.spool, make_job(10, created=NOW - 400))
    spool.enqueue(config.spool, make_job(11, created=NOW - 350))
    spool.enqueue(config.spool, make_job(20, kind="tag", revision="v1.0", created=NOW - 330))
    spool.write_atomic(os.path.join(config.spool, "queue"), "broken.json", b"{oops", config.spool)
    worker.loop(config, NOW - 300, publisher)
    spool.enqueue(config.spool, make_job(1, revision="dev", created=NOW - 18030))
    spool.enqueue(config.spool, make_job(2, revision="exp", created=NOW - 600, attempts=1, not_before=NOW + 600,
                                         errors=(Attempt(NOW - 590, "502 Bad Gateway"),)))
    spool.enqueue(config.spool, make_job(30, revision="main", created=NOW - 100))
    spool.enqueue(config.spool, make_job(31, revision="staging", created=NOW - 150))
    held = claims.claim(config.spool, jid(30) + ".json", NOW - 60)
    assert held is not None
    # A worker that claimed job 31 and died.
    orphan = subprocess.run([sys.executable, "-c", "import sys; from gitea_hf_hook.spool import claims; "
                             f"print(claims.claim(sys.argv[1], sys.argv[2], {NOW - 120}).lock.lock_file)",
                             config.spool, jid(31) + ".json"], cwd=ROOT, capture_output=True, text=True, check=True)
    pid = claims.read_holder(orphan.stdout.strip())
    assert pid is not None
    monkeypatch.setattr(time, "time", lambda: NOW)
    yield Scene(config, pid.pid, held)
    held.release()


def test_queue_list_shows_waiting_active_and_failed_jobs(scene: Scene) -> None:
    result = scene.run("queue", "list")
    assert result.exit_code == 0
    assert result.output.splitlines() == [
        "ID                        STATE   TARGET                         COMMIT   ATTEMPTS  CREATED               NOTE",
        "20270115-080000-00000001  queued  acme/bert-tiny branch dev      c000000  0         2027-01-15T08:00:00Z  due",
        "20270115-080000-00000002  queued  acme/bert-tiny branch exp      c000000  1         2027-01-15T12:50:30Z  "
        "retry at 2027-01-15T13:10:30Z",
        "20270115-080000-0000001e  active  acme/bert-tiny branch main     c000000  0         2027-01-15T12:58:50Z  "
        f"held by {HOST} pid {os.getpid()} since 2027-01-15T12:59:30Z",
        "20270115-080000-0000001f  active  acme/bert-tiny branch staging  c000000  0         2027-01-15T12:58:00Z  "
        f"orphaned (was {HOST} pid {scene.orphan_pid} since 2027-01-15T12:58:30Z); the next worker pass takes it again",
        f"20270115-080000-00000014  failed  acme/bert-tiny tag v1.0        c000000  1         2027-01-15T12:55:00Z  {REFUSED}",
        f"broken                    failed  ?                              ?        ?         ?                     {BROKEN}",
    ]


def test_queue_list_all_adds_done_jobs_and_json_holds_the_same(scene: Scene) -> None:
    lines = scene.run("queue", "list", "--all").output.splitlines()
    assert lines[-2:] == [
        "20270115-080000-0000000a  done    acme/bert-tiny branch main     c000000  0         2027-01-15T12:53:50Z  "
        "superseded by 20270115-080000-0000000b",
        "20270115-080000-0000000b  done    acme/bert-tiny branch main     c000000  0         2027-01-15T12:54:40Z  "
        "published",
    ]
    listed = json.loads(scene.run("queue", "list", "--json").output)
    assert [(j["id"], j["state"], j["note"]) for j in listed] == [
        (jid(1), "queued", "due"), (jid(2), "queued", "retry at 2027-01-15T13:10:30Z"),
        (jid(30), "active", f"held by {HOST} pid {os.getpid()} since 2027-01-15T12:59:30Z"),
        (jid(31), "active", f"orphaned (was {HOST} pid {scene.orphan_pid} since 2027-01-15T12:58:30Z); "
                            "the next worker pass takes it again"),
        (jid(20), "failed", REFUSED), ("broken", "failed", BROKEN)]
    assert listed[1] == {"id": jid(2), "state": "queued", "attempts": 1, "commit": make_job(2).commit, "created": NOW - 600,
                         "not_before": NOW + 600, "note": "retry at 2027-01-15T13:10:30Z",
                         "target": {"hub_repo": "acme/bert-tiny", "repo_type": "model", "kind": "branch",
                                    "name": "exp", "revision": "exp"}}
    assert listed[-1] == {"id": "broken", "state": "failed", "attempts": None, "commit": None, "created": None,
                          "not_before": None, "note": BROKEN, "target": None}


def test_status_shows_depth_age_workers_failures_and_done(scene: Scene) -> None:
    assert scene.run("status").output.splitlines() == [
        "queue: 2 jobs, 1 due, oldest queued 5h00m ago",
        "active: 2 jobs",
        f"  20270115-080000-0000001e  acme/bert-tiny branch main     held by {HOST} pid {os.getpid()} since "
        "2027-01-15T12:59:30Z",
        f"  20270115-080000-0000001f  acme/bert-tiny branch staging  orphaned (was {HOST} pid {scene.orphan_pid} "
        "since 2027-01-15T12:58:30Z)",
        "failed: 2 jobs",
        f"  20270115-080000-00000014  acme/bert-tiny tag v1.0  {REFUSED}",
        f"  broken                    ?                        {BROKEN}",
        "done: 2 jobs",
        "targets: 2, 1 failing",
        "  acme/bert-tiny tag v1.0",
        "    last published: never",
        f"    last failed: 2027-01-15T12:55:30Z (5m00s ago), job 20270115-080000-00000014, commit c000000: {REFUSED}",
    ]
    assert json.loads(scene.run("status", "--json").output) == {
        "queue": {"depth": 2, "due": 1, "oldest_created": NOW - 18030, "oldest_age_seconds": 18030},
        "active": [
            {"id": jid(30), "target": "acme/bert-tiny branch main", "held": True,
             "holder": {"host": HOST, "pid": os.getpid(), "since": NOW - 60}},
            {"id": jid(31), "target": "acme/bert-tiny branch staging", "held": False,
             "holder": {"host": HOST, "pid": scene.orphan_pid, "since": NOW - 120}}],
        "failed": [{"id": jid(20), "target": "acme/bert-tiny tag v1.0", "reason": REFUSED},
                   {"id": "broken", "target": "?", "reason": BROKEN}],
        "failures": 2, "cancelled": 0, "done": 2,
        "targets": [
            {"label": "acme/bert-tiny branch main", "target": {**TARGET, "name": "main", "revision": "main"},
             "last_success": {"at": NOW - 300, "age_seconds": 300, "job": jid(11), "commit": make_job(11).commit,
                              "hub_commit": "b" * 40},
             "last_failure": None},
            {"label": "acme/bert-tiny tag v1.0",
             "target": {**TARGET, "kind": "tag", "name": "v1.0", "revision": "v1.0"}, "last_success": None,
             "last_failure": {"at": NOW - 300, "age_seconds": 300, "job": jid(20), "commit": make_job(20).commit,
                              "repository": "acme/bert-tiny", "ref": "refs/tags/v1.0", "reason": REFUSED}}],
    }


def test_queue_show_tells_one_jobs_story(scene: Scene) -> None:
    assert scene.run("queue", "show", jid(20)).output.splitlines() == [
        "job 20270115-080000-00000014: failed",
        "target: acme/bert-tiny tag v1.0",
        "ref: refs/tags/v1.0",
        f"commit: {make_job(20).commit}",
        "pushed by: alice to acme/bert-tiny",
        "created: 2027-01-15T12:55:00Z",
        "attempts: 1",
        f"reason: {REFUSED}",
        "errors:",
        "  2027-01-15T12:55:30Z  the Hub answered 403: you cannot write to acme/bert-tiny (give the token write access)",
    ]
    assert scene.run("queue", "show", jid(2)).output.splitlines()[-3:] == [
        "due: 2027-01-15T13:10:30Z", "errors:", "  2027-01-15T12:50:40Z  502 Bad Gateway"]
    assert scene.run("queue", "show", jid(11)).output.splitlines()[-1] == (
        f"published: hub commit {'b' * 40} at 2027-01-15T12:55:30Z")
    assert scene.run("queue", "show", "broken").output == f"job broken: failed\nproblem: {BROKEN}\n"
    shown = json.loads(scene.run("queue", "show", jid(30), "--json").output)
    assert (shown["state"], shown["held"], shown["holder"], shown["problem"], shown["job"]["id"]) == (
        "active", True, {"host": HOST, "pid": os.getpid(), "since": NOW - 60}, None, jid(30))


def test_queue_retry_queues_a_failed_job_again_and_the_worker_publishes_it(scene: Scene) -> None:
    result = scene.run("queue", "retry", jid(20))
    assert (result.exit_code, result.output) == (0, "job 20270115-080000-00000014 queued again: "
                                                    "acme/bert-tiny tag v1.0 c000000\n")
    job = read_job(scene.config.spool, "queue", jid(20))
    assert (job.attempts, job.not_before, job.outcome) == (0, 0, None)
    assert job.errors[-1] == Attempt(NOW, f"queued again by an admin after: {REFUSED}")
    taken: list[str] = []

    def accept(config: Config, job: Job, state: TargetState | None) -> PublishResult:
        taken.append(job.id)
        return PublishResult(git_commit=job.commit, hub_commit="e" * 40)

    assert jid(20) in worker.loop(scene.config, NOW, accept).published


@pytest.mark.parametrize(("job_id", "message"), [
    (jid(2), "job 20270115-080000-00000002 is queued, not failed; only failed jobs can be retried "
             "(gitea-hf-hook queue list shows each job's state)"),
    ("nope", "no job nope in {spool} (gitea-hf-hook queue list --all shows every job)"),
    ("../x", "'../x' is not a job id (job ids look like 20261125-205226-3f9a1c0b; gitea-hf-hook queue list "
             "shows them)"),
    ("broken", f"job broken cannot be retried: {BROKEN} (fix or delete {{spool}}/failed/broken.json)"),
])
def test_queue_retry_refuses_what_it_cannot_retry(scene: Scene, job_id: str, message: str) -> None:
    result = scene.run("queue", "retry", job_id)
    assert result.exit_code == 1
    assert result.stderr == f"gitea-hf-hook: error: {message.format(spool=scene.config.spool)}\n"


def test_queue_purge_deletes_done_and_with_failed_also_failed(scene: Scene) -> None:
    assert scene.run("queue", "purge").output == "deleted 2 done jobs\n"
    assert json.loads(scene.run("queue", "purge", "--failed", "--json").output) == {"done": 0, "failed": 2}
    assert os.listdir(Path(scene.config.spool, "failed")) == []
    assert scene.run("status").output.splitlines()[4:6] == ["failed: 0 jobs", "done: 0 jobs"]


def test_status_of_an_empty_spool_from_the_installed_command(server: GiteaServer) -> None:
    spool.ensure_layout(str(server.spool))
    server.write_config(ROUTE)
    result = server.cli("status")
    assert (result.returncode, result.stdout, result.stderr) == (
        0, "queue: empty\nactive: 0 jobs\nfailed: 0 jobs\ndone: 0 jobs\n", "")


def test_status_names_a_missing_spool(server: GiteaServer) -> None:
    server.write_config(ROUTE)
    result = server.cli("status")
    assert (result.returncode, result.stderr) == (
        1, f"gitea-hf-hook: error: there is no spool at {server.spool} (run gitea-hf-hook install, which creates the "
           "spool, or fix spool: in config.yaml)\n")


def test_hub_emulator_command_listens_then_exits_0_quietly_on_sigterm(tmp_path: Path) -> None:
    proc = subprocess.Popen(CLI + ["hub-emulator", "--port", "0", "--data", str(tmp_path / "hub"),
                                   "--token", "alice=secret-token"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("hub-emulator listening on http://127.0.0.1:"), line
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert (proc.returncode, err) == (0, "")


def test_a_job_whose_fields_hold_terminal_escapes_is_listed_escaped(server: GiteaServer) -> None:
    # More of these, and the Hub's own words, in tests/admin/test_output_escaping.py.
    config = load(str(server.write_config(ROUTE)))
    spool.ensure_layout(config.spool)
    job = make_job(1, revision="main\x1b]0;owned\x07\nFAKE-ID  queued", created=NOW)
    spool.enqueue(config.spool, job)
    listed = CliRunner().invoke(cli, ["--config", config.path, "queue", "list"]).output
    assert listed.splitlines() == [
        "ID                        STATE   TARGET                                                       COMMIT   "
        "ATTEMPTS  CREATED               NOTE",
        "20270115-080000-00000001  queued  acme/bert-tiny branch main\\x1b]0;owned\\x07\\nFAKE-ID  queued  c000000  "
        "0         2027-01-15T13:00:30Z  due",
    ]
    shown = CliRunner().invoke(cli, ["--config", config.path, "queue", "show", jid(1)]).output
    assert shown.splitlines()[:3] == [
        "job 20270115-080000-00000001: queued",
        "target: acme/bert-tiny branch main\\x1b]0;owned\\x07\\nFAKE-ID  queued",
        "ref: refs/heads/main\\x1b]0;owned\\x07\\nFAKE-ID  queued",
    ]
