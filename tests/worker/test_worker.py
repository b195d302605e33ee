"""The worker's story: jobs queued by pushes end published, superseded or failed, once each, whatever happens."""

from __future__ import annotations

import logging
import os
import random
import signal
import socket
import string
import subprocess
import sys
from pathlib import Path

import pytest

from gitea_hf_hook.config.load import load
from gitea_hf_hook.config.model import Config, WorkerSettings
from gitea_hf_hook.errors import PublishError
from gitea_hf_hook.spool import layout
from gitea_hf_hook.spool.job import Job, dump
from gitea_hf_hook.spool.state import PublishResult, TargetState
from gitea_hf_hook.worker import housekeeping, service
from gitea_hf_hook.worker import loop as worker
from tests.support.gitea_server import Clone, GiteaServer
from tests.support.jobs import ROUTE, T0, folders, jid, make_job, python, read_job

WORKER = "worker:\n  max_attempts: 3\n  max_age_hours: 2\n  backoff_seconds: 10\n  backoff_max_seconds: 300\n"
HOST = socket.gethostname()


@pytest.fixture
def config(server: GiteaServer) -> Config:
    """The loaded config, with its spool created as ``gitea-hf-hook install`` would."""
    loaded = load(str(server.write_config(ROUTE, extra=WORKER)))
    layout.ensure_layout(loaded.spool)
    return loaded


class Recorder:
    """Publisher double: records each call and answers with the next scripted failure, else success."""

    def __init__(self, *failures: BaseException) -> None:
        self.failures = list(failures)
        self.calls: list[str] = []
        self.states: list[TargetState | None] = []

    def __call__(self, config: Config, job: Job, state: TargetState | None) -> PublishResult:
        self.calls.append(job.id)
        self.states.append(state)
        if self.failures:
            raise self.failures.pop(0)
        return PublishResult(git_commit=job.commit, hub_commit="b" * 40)


def gated_publish(config: Config, job: Job, state: TargetState | None) -> PublishResult:
    """Publisher double for child processes: says which job it holds, then waits for "go" on stdin."""
    print(f"publishing {job.id}", flush=True)
    if sys.stdin.readline() != "go\n":
        raise PublishError("not released", retryable=True)
    return PublishResult(git_commit=job.commit, hub_commit="c" * 40)


def recording_publish(config: Config, job: Job, state: TargetState | None) -> PublishResult:
    """Publisher double for child processes: appends "<pid> <job id>" to $RECORD (O_APPEND keeps lines whole)."""
    fd = os.open(os.environ["RECORD"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{os.getpid()} {job.id}\n".encode())
    finally:
        os.close(fd)
    return PublishResult(git_commit=job.commit, hub_commit="d" * 40)


def job_file(config: Config, folder: str, job_id: str) -> Job:
    return read_job(config.spool, folder, job_id)


def token() -> str:
    """A Hub-token-shaped string, built at run time so no token-shaped literal sits in the sources."""
    return "hf_" + "".join(random.choices(string.ascii_letters + string.digits, k=34))


def spool_text(config: Config) -> str:
    return "".join(p.read_text(errors="replace") for p in Path(config.spool).rglob("*") if p.is_file())


# --- publishing, coalescing, ordering ---------------------------------------------------------------------------

def test_a_pushed_commit_is_published_and_its_target_state_recorded(gitea: GiteaServer, clone: Clone) -> None:
    commit = clone.commit(message="first model")
    assert clone.push("main").ok
    config = load(str(gitea.config_path))
    [queued] = gitea.queued_jobs()
    recorder = Recorder()
    result = worker.loop(config, publish=recorder)
    assert result.published == recorder.calls == [queued.stem]
    assert recorder.states == [None]
    done = job_file(config, "done", queued.stem)
    assert done.outcome is not None
    assert (done.outcome.state, done.commit, done.outcome.result) == (
        "published", commit, PublishResult(git_commit=commit, hub_commit="b" * 40))
    state = worker.read_state(config.spool, done.target)
    assert state is not None
    assert (state.result.git_commit, state.result.hub_commit, state.job) == (commit, "b" * 40, queued.stem)


def test_an_unreadable_job_goes_to_failed_with_its_reason_and_the_worker_goes_on(config: Config) -> None:
    queue = os.path.join(config.spool, "queue")
    layout.write_atomic(queue, "broken.json", b"{oops", config.spool)
    future = dump(make_job(2)).replace(b'"version": 2', b'"version": 9')
    layout.write_atomic(queue, "future.json", future, config.spool)
    layout.enqueue(config.spool, make_job(1))
    recorder = Recorder()
    result = worker.loop(config, T0 + 5, recorder)
    assert recorder.calls == [jid(1)]
    assert sorted(result.failed) == ["broken", "future"]
    failed = Path(config.spool, "failed")
    assert sorted(p.name for p in failed.iterdir()) == ["broken.json", "broken.reason", "future.json", "future.reason"]
    assert (failed / "broken.json").read_bytes() == b"{oops"  # kept as it was, for the admin to read
    assert (failed / "broken.reason").read_text() == (
        "job file broken.json: not valid JSON (Expecting property name enclosed in double quotes: line 1 column 2 "
        "(char 1))\n")
    assert (failed / "future.reason").read_text() == (
        "job file future.json: job format version 9 is not one this worker reads (1 or 2) (run the same "
        "gitea-hf-hook version on the Gitea server and the workers)\n")


def test_twenty_queued_jobs_for_one_target_make_one_publish_of_the_newest(config: Config) -> None:
    # Created times in a different order from the ids: "newest" is by push time, not by name.
    for n in random.sample(range(20), 20):
        layout.enqueue(config.spool, make_job(n, created=T0 + (n * 7) % 20))
    newest = jid(17)  # 17 * 7 % 20 == 19
    recorder = Recorder()
    result = worker.loop(config, T0 + 30, recorder)
    assert recorder.calls == result.published == [newest]
    assert sorted(result.superseded) == sorted(jid(n) for n in range(20) if n != 17)
    for n in range(20):
        if n != 17:
            outcome = job_file(config, "done", jid(n)).outcome
            assert outcome is not None and (outcome.state, outcome.superseded_by) == ("superseded", newest)
    assert folders(config)["queue"] == folders(config)["active"] == []


def test_an_older_job_queued_after_a_newer_one_was_published_is_superseded(config: Config) -> None:
    layout.enqueue(config.spool, make_job(5))
    recorder = Recorder()
    worker.loop(config, T0 + 10, recorder)
    layout.enqueue(config.spool, make_job(3))  # pushed earlier, queued late (say, by a slow post-receive)
    result = worker.loop(config, T0 + 20, recorder)
    assert recorder.calls == [jid(5)]
    assert result.superseded == [jid(3)]
    outcome = job_file(config, "done", jid(3)).outcome
    assert outcome is not None and outcome.superseded_by == jid(5)


def test_a_tag_and_a_branch_of_the_same_name_are_separate_targets(config: Config) -> None:
    layout.enqueue(config.spool, make_job(1, kind="branch", revision="v1"))
    layout.enqueue(config.spool, make_job(2, kind="tag", revision="v1"))
    recorder = Recorder()
    assert sorted(worker.loop(config, T0 + 5, recorder).published) == [jid(1), jid(2)]


def test_a_job_published_just_before_its_worker_died_is_not_published_again(config: Config) -> None:
    layout.enqueue(config.spool, make_job(1))
    recorder = Recorder()
    worker.loop(config, T0 + 5, recorder)
    # As if the worker had died after writing the target state but before moving the job to done/.
    os.unlink(Path(config.spool, "done", jid(1) + ".json"))
    layout.enqueue(config.spool, make_job(1))
    result = worker.loop(config, T0 + 10, recorder)
    assert result.published == [jid(1)]
    assert recorder.calls == [jid(1)]
    outcome = job_file(config, "done", jid(1)).outcome
    assert outcome is not None and outcome.state == "published"
    assert outcome.result == PublishResult(git_commit=make_job(1).commit, hub_commit="b" * 40)


# --- retries and dead letters -----------------------------------------------------------------------------------

def test_a_retryable_failure_waits_out_retry_after_on_the_injected_clock(config: Config) -> None:
    layout.enqueue(config.spool, make_job(1))
    recorder = Recorder(PublishError("the Hub is rate limiting", retryable=True, retry_after=120))
    assert worker.loop(config, T0 + 10, recorder).retried == [jid(1)]
    job = job_file(config, "queue", jid(1))
    assert (job.attempts, job.not_before) == (1, T0 + 130)
    assert [(e.at, e.message) for e in job.errors] == [(T0 + 10, "the Hub is rate limiting")]
    not_yet = worker.loop(config, T0 + 129.9, recorder)
    assert (recorder.calls, not_yet.next_due) == ([jid(1)], T0 + 130)
    assert worker.loop(config, T0 + 130, recorder).published == [jid(1)]
    assert recorder.calls == [jid(1), jid(1)]


def test_a_retryable_failure_without_retry_after_backs_off_with_jitter(config: Config) -> None:
    layout.enqueue(config.spool, make_job(1))
    worker.loop(config, T0, Recorder(PublishError("502 Bad Gateway", retryable=True)))
    assert T0 + 7.5 <= job_file(config, "queue", jid(1)).not_before <= T0 + 10


def test_backoff_doubles_up_to_its_cap_and_a_longer_retry_after_wins() -> None:
    settings = WorkerSettings(backoff_seconds=10, backoff_max_seconds=300)
    assert [worker.backoff(n, settings, rng=lambda: 1.0) for n in range(1, 8)] == [10, 20, 40, 80, 160, 300, 300]
    assert worker.backoff(1, settings, rng=lambda: 0.0) == 7.5
    assert worker.backoff(8, settings, 1000, rng=lambda: 1.0) == 1000


def test_a_job_fails_for_good_after_max_attempts(config: Config) -> None:
    layout.enqueue(config.spool, make_job(1))
    recorder = Recorder(*[PublishError("503 Service Unavailable", retryable=True) for _ in range(3)])
    now = T0
    for _ in range(3):
        worker.loop(config, now, recorder)
        now = max(now, job_file(config, "queue", jid(1)).not_before) if folders(config)["queue"] else now
    assert folders(config)["failed"] == [jid(1)]
    job = job_file(config, "failed", jid(1))
    assert job.outcome is not None
    assert job.outcome.reason == "gave up after 3 attempts (worker.max_attempts): 503 Service Unavailable"
    assert (job.outcome.state, job.attempts, len(job.errors)) == ("failed", 3, 3)
    assert worker.loop(config, now + 1000, recorder).worked is False


def test_a_job_older_than_max_age_fails_at_its_next_failure(config: Config) -> None:
    layout.enqueue(config.spool, make_job(1, created=T0 - 3 * 3600))
    worker.loop(config, T0, Recorder(PublishError("timed out", retryable=True)))
    outcome = job_file(config, "failed", jid(1)).outcome
    assert outcome is not None
    assert outcome.reason == "gave up: the job is 3.0 hours old (worker.max_age_hours is 2): timed out"


def test_a_permanent_error_fails_the_job_at_once_with_its_own_message(config: Config) -> None:
    layout.enqueue(config.spool, make_job(1))
    refused = PublishError("the Hub answered 403: you cannot write to acme/bert-tiny", "give the token write access")
    assert worker.loop(config, T0, Recorder(refused)).failed == [jid(1)]
    job = job_file(config, "failed", jid(1))
    assert job.outcome is not None
    assert job.outcome.reason == ("the Hub answered 403: you cannot write to acme/bert-tiny "
                                  "(give the token write access)")
    assert job.attempts == 1


def test_an_unexpected_exception_is_retried_and_no_token_reaches_the_spool_or_the_log(
        config: Config, caplog: pytest.LogCaptureFixture) -> None:
    secret, header = token(), token()
    layout.enqueue(config.spool, make_job(1))
    layout.enqueue(config.spool, make_job(2, revision="dev"))
    recorder = Recorder(RuntimeError(f"upload failed with {secret}"),
                        PublishError(f"401: bad credentials, Authorization: Bearer {header}"))
    with caplog.at_level(logging.INFO, logger="gitea_hf_hook.worker"):
        result = worker.loop(config, T0, recorder)
    assert (result.retried, result.failed) == ([jid(1)], [jid(2)])
    assert job_file(config, "queue", jid(1)).errors[0].message == (
        "internal error: RuntimeError: upload failed with [REDACTED]")
    outcome = job_file(config, "failed", jid(2)).outcome
    assert outcome is not None and outcome.reason == "401: bad credentials, Authorization: [REDACTED]"
    assert secret not in spool_text(config) and header not in spool_text(config)
    assert "[REDACTED]" in caplog.text and secret not in caplog.text and header not in caplog.text


# --- housekeeping -----------------------------------------------------------------------------------------------

def test_old_done_jobs_and_stale_tmp_files_are_pruned(config: Config) -> None:
    layout.enqueue(config.spool, make_job(1))
    layout.enqueue(config.spool, make_job(2, revision="dev"))
    worker.loop(config, T0, Recorder())
    old = T0 - 15 * 86400
    os.utime(Path(config.spool, "done", jid(1) + ".json"), (old, old))
    tmp = Path(config.spool, "tmp")
    (tmp / "abandoned.json.123.abcd").write_text("{")
    os.utime(tmp / "abandoned.json.123.abcd", (T0 - 3601, T0 - 3601))
    (tmp / "being-written.json.456.ef01").write_text("{")
    cards = Path(config.spool, "cards")
    (cards / "old-card").touch()
    os.utime(cards / "old-card", (T0 - 31 * 86400, T0 - 31 * 86400))
    (cards / "recent-card").touch()
    os.utime(cards / "recent-card", (T0 - 86400, T0 - 86400))
    worker.loop(config, T0 + housekeeping.HOUSEKEEPING_EVERY + 1, Recorder())
    assert folders(config)["done"] == [jid(2)]
    assert sorted(os.listdir(tmp)) == ["being-written.json.456.ef01"]
    assert sorted(os.listdir(cards)) == ["recent-card"]


def test_a_prepared_job_whose_post_receive_never_ran_is_queued_if_its_push_landed(
        server: GiteaServer, config: Config, tmp_path: Path) -> None:
    bare = server.create_repo("acme", "bert-tiny")  # no hooks: this push prepares and queues nothing itself
    work = Clone(server, bare, "acme", "bert-tiny", tmp_path / "work")
    landed = work.commit({"README.md": "hi"})
    assert work.push("main", via="none").ok
    layout.prepare(config.spool, make_job(1, repo_dir=str(bare), commit=landed), "hf-publish: queued 1")
    layout.prepare(config.spool, make_job(2, repo_dir=str(bare), revision="dev"), "hf-publish: queued 2")
    for prepared in Path(config.spool, "tmp").iterdir():  # as if pre-receive wrote them 700 s ago
        os.utime(prepared, (T0 - 700, T0 - 700))
    recorder = Recorder()
    worker.loop(config, T0, recorder)
    assert recorder.calls == [jid(1)]
    assert os.listdir(Path(config.spool, "tmp")) == []


# --- processes --------------------------------------------------------------------------------------------------

LOOP_IN_CHILD = ("import sys, tests.worker.test_worker as t; from gitea_hf_hook.worker import loop; "
                 "from gitea_hf_hook.config.load import load; loop.loop(load(sys.argv[1]), publish=t.gated_publish)")


def test_a_job_whose_worker_is_killed_is_reclaimed_and_published_exactly_once(config: Config) -> None:
    layout.enqueue(config.spool, make_job(1))
    child = python(LOOP_IN_CHILD, config.path, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    recorder = Recorder()
    try:
        assert child.stdout is not None and child.stdout.readline() == f"publishing {jid(1)}\n"
        assert folders(config)["active"] == [jid(1)]
        held = worker.loop(config, T0 + 1, recorder)  # the live worker's job is left alone
        assert (held.reclaimed, held.published, recorder.calls) == ([], [], [])
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        child.kill()
    result = worker.loop(config, T0 + 2, recorder)
    assert (result.reclaimed, result.published, recorder.calls) == ([jid(1)], [jid(1)], [jid(1)])
    assert worker.loop(config, T0 + 3, recorder).worked is False
    job = job_file(config, "done", jid(1))
    assert job.attempts == 1
    [error] = job.errors
    assert error.message.startswith(f"{HOST} pid {child.pid} stopped while publishing it (claimed ")
    assert error.message.endswith("); queued again")
    assert folders(config)["active"] == []


RUN_IN_CHILD = ("import sys, tests.worker.test_worker as t; from gitea_hf_hook.worker import service; "
                "from gitea_hf_hook.config.load import load; sys.stdin.readline(); "
                "sys.exit(service.run(load(sys.argv[1]), once=True, publish=t.recording_publish))")


def test_two_worker_processes_draining_one_spool_publish_each_job_exactly_once(
        config: Config, tmp_path: Path) -> None:
    for n in range(40):
        layout.enqueue(config.spool, make_job(n, revision=f"branch-{n}"))
    for n in range(100, 110):
        layout.enqueue(config.spool, make_job(n, revision="main"))  # one target: one publish, of job 109
    record = tmp_path / "record"
    env = {**os.environ, "RECORD": str(record)}
    children = [python(RUN_IN_CHILD, config.path, stdin=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
                for _ in range(2)]
    for child in children:  # start both at once, so they contend
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()
    for child in children:
        _, err = child.communicate(timeout=60)
        assert child.returncode == 0, err
    published = [line.split()[1] for line in record.read_text().splitlines()]
    assert sorted(published) == sorted([jid(n) for n in range(40)] + [jid(109)])
    state = folders(config)
    assert (state["queue"], state["active"], state["failed"], len(state["done"])) == ([], [], [], 50)


def test_run_with_two_workers_publishes_from_two_child_processes(
        config: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECORD", str(tmp_path / "record"))
    for n in range(10):
        layout.enqueue(config.spool, make_job(n, revision=f"branch-{n}"))
    assert service.run(config, once=True, workers=2, publish=recording_publish) == 0
    lines = [line.split() for line in (tmp_path / "record").read_text().splitlines()]
    assert sorted(job for _, job in lines) == [jid(n) for n in range(10)]
    assert str(os.getpid()) not in {pid for pid, _ in lines}
    assert folders(config)["done"] == [jid(n) for n in range(10)]


CLI_WITH_GATED_PUBLISH = (
    "import sys, types, tests.worker.test_worker as t; m = types.ModuleType('gitea_hf_hook.worker.publish'); "
    "m.publish = t.gated_publish; sys.modules['gitea_hf_hook.worker.publish'] = m; "
    "from gitea_hf_hook.admin.cli import main; main()")


def test_sigterm_lets_the_worker_finish_its_job_then_exit_0(config: Config) -> None:
    layout.enqueue(config.spool, make_job(1))
    layout.enqueue(config.spool, make_job(2, revision="dev"))
    child = python(CLI_WITH_GATED_PUBLISH, "--config", config.path, "worker", "--allow-root", stdin=subprocess.PIPE,
                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert child.stdout is not None and child.stdout.readline() == f"publishing {jid(1)}\n"
        child.send_signal(signal.SIGTERM)
        out, err = child.communicate("go\n", timeout=30)
    finally:
        child.kill()
    assert child.returncode == 0, err
    assert out == ""  # it did not start on job 2
    assert err.splitlines()[-1].endswith(f"gitea-hf-hook worker[{child.pid}]: worker stopped")
    assert folders(config) == {"queue": [jid(2)], "active": [], "done": [jid(1)], "failed": []}


def test_sigterm_stops_an_idle_worker_with_several_processes(config: Config) -> None:
    child = python(CLI_WITH_GATED_PUBLISH, "--config", config.path, "worker", "--allow-root", "--workers", "2",
                   stderr=subprocess.PIPE)
    try:
        assert child.stderr is not None
        started = [child.stderr.readline() for _ in range(2)]
        assert all("worker started" in line for line in started), started
        child.send_signal(signal.SIGTERM)
        _, err = child.communicate(timeout=30)
    finally:
        child.kill()
    assert child.returncode == 0, err
    assert err.count("worker stopped") == 2


def test_a_stray_file_named_like_a_prepared_job_is_dropped_and_the_worker_goes_on(config: Config) -> None:
    layout.enqueue(config.spool, make_job(1))
    stray = Path(config.spool, "tmp", "prepared-x.json")
    stray.write_text("{}")
    (stray.parent / "prepared-x.notice").write_text("x")
    for path in stray.parent.iterdir():
        os.utime(path, (T0 - 700, T0 - 700))
    recorder = Recorder()
    assert worker.loop(config, T0, recorder).published == [jid(1)]
    assert os.listdir(stray.parent) == []


def test_whatever_gitea_makes_in_its_folders_never_stops_a_pass(config: Config) -> None:
    """tmp/ and queue/ are Gitea's user's to write: a folder, a FIFO or a name that is not UTF-8 there is passed
    over or set aside, and the real job still publishes."""
    layout.enqueue(config.spool, make_job(1))
    queue, tmp = Path(config.spool, "queue"), Path(config.spool, "tmp")
    (queue / "20270115-080000-0000000f.json").mkdir()
    os.mkfifo(queue / "20270115-080000-0000000e.json")
    fd = os.open(os.path.join(os.fsencode(queue), b"\xff.json"), os.O_WRONLY | os.O_CREAT, 0o640)
    os.close(fd)
    (tmp / "prepared-y.json").mkdir()
    os.mkfifo(tmp / "prepared-z.json")
    for path in tmp.iterdir():
        os.utime(path, (T0 - 700, T0 - 700))
    recorder = Recorder()
    result = worker.loop(config, T0, recorder)
    assert result.published == [jid(1)]
    assert recorder.calls == [jid(1)]
    # The FIFO is no job: moved aside with its reason, unread (reading it would have blocked the worker).
    assert (Path(config.spool, "failed", "20270115-080000-0000000e.reason").read_text()
            == "not a readable job file (not a regular file)\n")
    assert worker.loop(config, T0 + 1, recorder).published == []  # and the next pass runs as well


def test_a_folder_named_after_a_failed_job_is_set_aside_and_the_failed_job_kept(config: Config) -> None:
    def refuse(config: Config, job: Job, state: TargetState | None) -> PublishResult:
        raise PublishError("the Hub answered 403", "give the token write access")

    layout.enqueue(config.spool, make_job(11))
    worker.loop(config, T0, refuse)
    failed = Path(config.spool, "failed", jid(11) + ".json")
    kept = failed.read_bytes()
    (Path(config.spool, "queue") / (jid(11) + ".json")).mkdir()  # as Gitea's user may
    layout.enqueue(config.spool, make_job(12))
    recorder = Recorder()
    assert worker.loop(config, T0 + 1, recorder).published == [jid(12)]
    assert failed.read_bytes() == kept and not Path(config.spool, "failed", jid(11) + ".reason").exists()
    [aside] = [p.name for p in Path(config.spool, "active").iterdir() if p.name.startswith(".set-aside-")]
    assert aside.startswith(f".set-aside-{jid(11)}.json-")
    assert worker.loop(config, T0 + 2, recorder).published == []
