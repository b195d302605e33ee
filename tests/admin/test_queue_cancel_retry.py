"""An admin cancels a queued job with a reason, retries every failed job at once, and lists the dead letter."""

from __future__ import annotations

import json
import os
import socket
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from gitea_hf_hook.admin.cli import cli
from gitea_hf_hook.config.load import load
from gitea_hf_hook.config.model import Config
from gitea_hf_hook.errors import PublishError
from gitea_hf_hook.spool import layout
from gitea_hf_hook.spool.job import Attempt, Job
from gitea_hf_hook.spool.state import PublishResult, TargetState
from gitea_hf_hook.worker import loop as worker
from tests.support.gitea_server import GiteaServer
from tests.support.jobs import ROUTE, folders, jid, make_job, read_job

NOW = 1_800_018_030.0  # 2027-01-15T13:00:30Z
HOST = socket.gethostname()
REASON = "the model was withdrawn; do not publish it"
REFUSED = "the Hub answered 403: you cannot write to acme/bert-tiny (give the token write access)"
BROKEN = ("job file broken.json: not valid JSON (Expecting property name enclosed in double quotes: line 1 column 2 "
          "(char 1))")


def refuse_tags(config: Config, job: Job, state: TargetState | None) -> PublishResult:
    """Publisher double: the Hub refuses tags and takes branches."""
    if job.target.kind == "tag":
        raise PublishError("the Hub answered 403: you cannot write to acme/bert-tiny", "give the token write access")
    return PublishResult(git_commit=job.commit, hub_commit="b" * 40)


def accept(config: Config, job: Job, state: TargetState | None) -> PublishResult:
    return PublishResult(git_commit=job.commit, hub_commit="e" * 40)


@dataclass
class Spool:
    config: Config

    @property
    def root(self) -> str:
        return self.config.spool

    def run(self, *args: str) -> Result:
        return CliRunner().invoke(cli, ["--config", self.config.path, *args])

    def folders(self) -> dict[str, list[str]]:
        found = folders(self.config)
        found["cancelled"] = [n.removesuffix(".json") for n in layout.job_names(self.root, "cancelled")]
        return found


@pytest.fixture
def spool(server: GiteaServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[Spool]:
    config = load(str(server.write_config(ROUTE)))
    layout.ensure_layout(config.spool)
    monkeypatch.setattr("time.time", lambda: NOW)
    yield Spool(config)


def test_a_cancelled_job_moves_to_cancelled_with_its_reason_and_is_never_published(spool: Spool) -> None:
    layout.enqueue(spool.root, make_job(1, revision="main", created=NOW - 60))
    layout.enqueue(spool.root, make_job(2, revision="dev", created=NOW - 30))

    result = spool.run("queue", "cancel", jid(1), "--reason", REASON)

    assert (result.exit_code, result.output) == (
        0, f"job {jid(1)} cancelled: acme/bert-tiny branch main c000000: {REASON}\n")
    assert spool.folders() == {"queue": [jid(2)], "active": [], "done": [], "failed": [], "cancelled": [jid(1)]}
    kept = read_job(spool.root, "cancelled", jid(1))
    assert (kept.outcome, kept.attempts, kept.errors) == (None, 0, (Attempt(NOW, f"cancelled by an admin: {REASON}"),))
    folder = Path(spool.root, "cancelled")
    assert stat.filemode(folder.stat().st_mode) == "drwxr-s---"  # a worker folder: the hooks' user cannot write
    assert worker.loop(spool.config, NOW, accept).published == [jid(2)]
    assert spool.folders()["cancelled"] == [jid(1)]


def test_cancelled_jobs_show_in_queue_list_all_queue_show_and_status_with_their_reason(spool: Spool) -> None:
    layout.enqueue(spool.root, make_job(1, created=NOW - 60))
    assert spool.run("queue", "cancel", jid(1), "--reason", REASON).exit_code == 0

    assert spool.run("queue", "list").output == "no jobs\n"
    assert spool.run("queue", "list", "--all").output.splitlines() == [
        "ID                        STATE      TARGET                      COMMIT   ATTEMPTS  CREATED               NOTE",
        f"20270115-080000-00000001  cancelled  acme/bert-tiny branch main  c000000  0         2027-01-15T12:59:30Z  "
        f"{REASON}",
    ]
    assert spool.run("queue", "show", jid(1)).output.splitlines() == [
        "job 20270115-080000-00000001: cancelled",
        "target: acme/bert-tiny branch main",
        "ref: refs/heads/main",
        f"commit: {make_job(1).commit}",
        "pushed by: alice to acme/bert-tiny",
        "created: 2027-01-15T12:59:30Z",
        "attempts: 0",
        f"reason: {REASON}",
        "errors:",
        f"  2027-01-15T13:00:30Z  cancelled by an admin: {REASON}",
    ]
    listed = json.loads(spool.run("queue", "list", "--all", "--json").output)
    assert [(j["id"], j["state"], j["note"]) for j in listed] == [(jid(1), "cancelled", REASON)]
    assert spool.run("status").output.splitlines() == [
        "queue: empty", "active: 0 jobs", "failed: 0 jobs", "cancelled: 1 job", "done: 0 jobs"]
    assert json.loads(spool.run("status", "--json").output)["cancelled"] == 1
    assert spool.run("queue", "purge", "--failed").output == "deleted 0 done jobs, 1 cancelled job and 0 failed jobs\n"
    assert spool.folders()["cancelled"] == []


def test_a_job_a_worker_is_publishing_cannot_be_cancelled(spool: Spool) -> None:
    layout.enqueue(spool.root, make_job(1, created=NOW - 60))
    tried: list[Result] = []

    def publish_while_the_admin_cancels(config: Config, job: Job, state: TargetState | None) -> PublishResult:
        tried.append(spool.run("queue", "cancel", job.id, "--reason", REASON))
        return accept(config, job, state)

    assert worker.loop(spool.config, NOW, publish_while_the_admin_cancels).published == [jid(1)]
    [refused] = tried
    assert (refused.exit_code, refused.stdout) == (1, "")
    assert refused.stderr == (
        f"gitea-hf-hook: error: job {jid(1)} is being published (held by {HOST} pid {os.getpid()} since "
        "2027-01-15T13:00:30Z), so it cannot be cancelled (only queued jobs can be cancelled: wait until it is done, "
        "or until it fails or is queued again for a retry)\n")
    assert spool.folders() == {"queue": [], "active": [], "done": [jid(1)], "failed": [], "cancelled": []}


@pytest.mark.parametrize(("job_id", "reason", "message"), [
    (jid(20), REASON, f"job {jid(20)} is failed, not queued; only queued jobs can be cancelled (gitea-hf-hook queue "
                      "list shows each job's state)"),
    (jid(11), REASON, f"job {jid(11)} is done, not queued; only queued jobs can be cancelled (gitea-hf-hook queue "
                      "list shows each job's state)"),
    ("broken", REASON, "job broken is failed, not queued; only queued jobs can be cancelled (gitea-hf-hook queue "
                       "list shows each job's state)"),
    ("nope", REASON, "no job nope in {spool} (gitea-hf-hook queue list --all shows every job)"),
    ("../x", REASON, "'../x' is not a job id (job ids look like 20261125-205226-3f9a1c0b; gitea-hf-hook queue list "
                     "shows them)"),
    (jid(3), "  ", "a cancellation needs a reason (say why with --reason TEXT; it is kept in the job)"),
    ("unreadable", REASON, "job unreadable cannot be cancelled: job file unreadable.json: not valid JSON (Expecting "
                           "value: line 1 column 1 (char 0)) (the worker moves it to failed/ on its next pass)"),
])
def test_cancel_refuses_what_is_not_a_queued_job_and_moves_nothing(spool: Spool, job_id: str, reason: str,
                                                                   message: str) -> None:
    layout.enqueue(spool.root, make_job(10, created=NOW - 400))
    layout.enqueue(spool.root, make_job(11, created=NOW - 350))
    layout.enqueue(spool.root, make_job(20, kind="tag", revision="v1.0", created=NOW - 330))
    layout.write_atomic(os.path.join(spool.root, "queue"), "broken.json", b"{oops", spool.root)
    worker.loop(spool.config, NOW - 300, refuse_tags)
    layout.enqueue(spool.root, make_job(3, created=NOW - 60))
    layout.write_atomic(os.path.join(spool.root, "queue"), "unreadable.json", b"", spool.root)
    before = spool.folders()

    result = spool.run("queue", "cancel", job_id, "--reason", reason)

    assert (result.exit_code, result.stdout) == (1, "")
    assert result.stderr == f"gitea-hf-hook: error: {message.format(spool=spool.root)}\n"
    assert spool.folders() == before


def test_retry_all_failed_queues_every_failed_job_again_and_names_the_one_it_cannot(spool: Spool) -> None:
    layout.enqueue(spool.root, make_job(20, kind="tag", revision="v1.0", created=NOW - 330))
    layout.enqueue(spool.root, make_job(21, kind="tag", revision="v1.1", created=NOW - 320))
    layout.enqueue(spool.root, make_job(11, created=NOW - 310))
    layout.write_atomic(os.path.join(spool.root, "queue"), "broken.json", b"{oops", spool.root)
    worker.loop(spool.config, NOW - 300, refuse_tags)
    assert spool.folders()["failed"] == [jid(20), jid(21), "broken"]

    result = spool.run("queue", "retry", "--all-failed")

    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        f"job {jid(20)} queued again: acme/bert-tiny tag v1.0 c000000",
        f"job {jid(21)} queued again: acme/bert-tiny tag v1.1 c000000",
        f"not retried: job broken cannot be retried: {BROKEN} (fix or delete {spool.root}/failed/broken.json)",
    ]
    assert result.stderr == ("gitea-hf-hook: error: 1 failed job was not retried (fix or delete each one named "
                             "above; queue show ID says more)\n")
    assert spool.folders() == {"queue": [jid(20), jid(21)], "active": [], "done": [jid(11)], "failed": ["broken"],
                               "cancelled": []}
    for n in (20, 21):
        job = read_job(spool.root, "queue", jid(n))
        assert (job.attempts, job.not_before, job.outcome, job.retried) == (0, 0.0, None, NOW)
        assert job.errors[-1] == Attempt(NOW, f"queued again by an admin after: {REFUSED}")


def test_retry_all_failed_goes_past_whatever_gitea_s_user_put_in_queue_under_a_failed_jobs_name(spool: Spool) -> None:
    layout.enqueue(spool.root, make_job(20, kind="tag", revision="v1.0", created=NOW - 330))
    layout.enqueue(spool.root, make_job(21, kind="tag", revision="v1.1", created=NOW - 320))
    worker.loop(spool.config, NOW - 300, refuse_tags)
    kept = Path(spool.root, "failed", jid(20) + ".json").read_bytes()
    planted = Path(spool.root, "queue", jid(20) + ".json")
    planted.mkdir()

    result = spool.run("queue", "retry", "--all-failed")

    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        f"job {jid(21)} queued again: acme/bert-tiny tag v1.1 c000000",
        f"not retried: job {jid(20)} cannot be retried: {planted} exists already (look at it and remove it "
        f"(rm -r {planted}), then retry)",
    ]
    assert Path(spool.root, "failed", jid(20) + ".json").read_bytes() == kept  # its outcome and attempts as they were
    assert planted.is_dir()


def test_retry_all_failed_says_how_many_and_answers_json(spool: Spool) -> None:
    assert spool.run("queue", "retry", "--all-failed").output == "no failed jobs to retry\n"
    layout.enqueue(spool.root, make_job(20, kind="tag", revision="v1.0", created=NOW - 330))
    worker.loop(spool.config, NOW - 300, refuse_tags)
    result = spool.run("queue", "retry", "--all-failed", "--json")
    assert (result.exit_code, json.loads(result.output)) == (0, {"retried": [jid(20)], "problems": []})
    worker.loop(spool.config, NOW, refuse_tags)
    assert spool.run("queue", "retry", "--all-failed").output == (
        f"job {jid(20)} queued again: acme/bert-tiny tag v1.0 c000000\nqueued 1 failed job again\n")


def test_retry_needs_an_id_or_all_failed_but_not_both(spool: Spool) -> None:
    for args in ((), (jid(1), "--all-failed")):
        result = spool.run("queue", "retry", *args)
        assert result.exit_code == 2
        assert result.stderr.splitlines()[-1] == "Error: name one failed job's ID, or pass --all-failed"


def test_queue_list_failed_shows_the_dead_letter_alone(spool: Spool) -> None:
    assert spool.run("queue", "list", "--failed").output == "no failed jobs\n"
    layout.enqueue(spool.root, make_job(20, kind="tag", revision="v1.0", created=NOW - 330))
    layout.write_atomic(os.path.join(spool.root, "queue"), "broken.json", b"{oops", spool.root)
    worker.loop(spool.config, NOW - 300, refuse_tags)
    layout.enqueue(spool.root, make_job(1, created=NOW - 60))

    assert spool.run("queue", "list", "--failed").output.splitlines() == [
        "ID                        STATE   TARGET                   COMMIT   ATTEMPTS  CREATED               NOTE",
        f"20270115-080000-00000014  failed  acme/bert-tiny tag v1.0  c000000  1         2027-01-15T12:55:00Z  {REFUSED}",
        f"broken                    failed  ?                        ?        ?         ?                     {BROKEN}",
    ]
    assert [j["id"] for j in json.loads(spool.run("queue", "list", "--failed", "--json").output)] == [
        jid(20), "broken"]
    both = spool.run("queue", "list", "--all", "--failed")
    assert (both.exit_code, both.stderr.splitlines()[-1]) == (2, "Error: --all and --failed cannot be used together")
