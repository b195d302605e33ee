"""A running worker and its config: an edit takes effect at the next pass; a broken edit leaves the last valid
config in use, and every pass logs why until the file is fixed."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

import pytest

from gitea_hf_hook.config.load import load
from gitea_hf_hook.config.model import Config
from gitea_hf_hook.spool import layout
from gitea_hf_hook.spool.job import Job
from gitea_hf_hook.spool.state import PublishResult, TargetState
from gitea_hf_hook.worker import service
from tests.support.gitea_server import GiteaServer
from tests.support.jobs import ROUTE, T0, folders, jid, make_job

WORKER = "worker:\n  max_attempts: 3\n"


class Finished(Exception):
    """Raised by the last step of a story to end the worker's run."""


class Between:
    """Stands in for the worker's idle wait: each wait between passes runs the next step, the last ends the run."""

    def __init__(self, *steps: Callable[[], None]) -> None:
        self.steps = list(steps)

    def __call__(self, seconds: float) -> None:
        if not self.steps:
            raise Finished
        self.steps.pop(0)()


class Publishes:
    """Publisher double: records each job with the config it was published under."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Config]] = []

    def __call__(self, config: Config, job: Job, state: TargetState | None) -> PublishResult:
        self.calls.append((job.id, config))
        return PublishResult(git_commit=job.commit, hub_commit="b" * 40)


@pytest.fixture
def config(server: GiteaServer) -> Config:
    loaded = load(str(server.write_config(ROUTE, extra=WORKER)), cached=False)
    layout.ensure_layout(loaded.spool)
    return loaded


def messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "gitea_hf_hook.worker"]


def story(lines: list[str]) -> list[str]:
    """The log with the lines about job ``n`` (see :func:`jid`) shown as one ``<job n>``."""
    told: list[str] = []
    for line in lines:
        line = next((f"<job {n}>" for n in range(1, 10) if jid(n) in line), line)
        if not told or told[-1] != line:
            told.append(line)
    return told


def test_a_running_worker_keeps_its_config_across_a_broken_edit_and_takes_the_fixed_one(
        server: GiteaServer, config: Config, caplog: pytest.LogCaptureFixture) -> None:
    publish = Publishes()
    layout.enqueue(config.spool, make_job(1))

    def admin_breaks_the_config() -> None:
        server.config_path.write_text("repos: [\n")
        layout.enqueue(config.spool, make_job(2, revision="dev"))

    def admin_fixes_it() -> None:
        server.write_config(ROUTE, extra=WORKER.replace("3", "5"))
        layout.enqueue(config.spool, make_job(3, revision="next"))

    with caplog.at_level(logging.INFO, logger="gitea_hf_hook.worker"), pytest.raises(Finished):
        service.run(config, once=False, publish=publish, clock=lambda: T0 + 100, config_file=config.path,
                    sleep=Between(admin_breaks_the_config, admin_fixes_it))
    fixed = load(config.path, cached=False)
    assert fixed.worker.max_attempts == 5
    assert publish.calls == [(jid(1), config), (jid(2), config), (jid(3), fixed)]
    assert folders(config)["done"] == [jid(1), jid(2), jid(3)]
    error = (f"keeping the last valid config: {config.path}:2: not valid YAML: expected the node content, but found "
             "'<stream end>' (fix config.yaml; README.md lists every key)")
    # Once per pass while broken: before the pass that published job 2, and before the idle one after it.
    assert story(messages(caplog)) == [f"worker started (pid {os.getpid()}, spool {config.spool})", "<job 1>", error,
                                       "<job 2>", error, f"config reloaded from {config.path}", "<job 3>"]


def test_a_new_config_is_taken_up_only_once_it_passes_the_checks_the_worker_made_at_start(
        server: GiteaServer, config: Config, caplog: pytest.LogCaptureFixture) -> None:
    token = server.base / "acme.token"
    token.write_text("not a real token\n")
    token.chmod(0o644)

    def admin_adds_a_token_file_others_may_read() -> None:
        text = server.config_path.read_text()
        server.config_path.write_text(text.replace("hub:\n", f"hub:\n  tokens: {{acme: {token}}}\n"))

    with caplog.at_level(logging.INFO, logger="gitea_hf_hook.worker"), pytest.raises(Finished):
        service.run(config, once=False, publish=Publishes(), clock=lambda: T0 + 100, config_file=config.path,
                    sleep=Between(admin_adds_a_token_file_others_may_read, lambda: token.chmod(0o600)))
    assert messages(caplog)[1:] == [
        f"keeping the last valid config: {token}: the Hub token file named by hub.tokens.acme may be read by group "
        f"or others (mode 0644) (chmod 600 {token})",
        f"config reloaded from {config.path}"]
