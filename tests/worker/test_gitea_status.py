"""Alice sees on her commit in Gitea whether, and where, the worker published it.

Alice pushes for real; the worker publishes with the real client to the Hub emulator and posts commit statuses
to the stand-in for Gitea's API (``tests.support.gitea_api``), which answers as Gitea does and records what it
was sent. A status is a courtesy: whatever Gitea answers, or if it does not answer, the publish goes on.
"""

from __future__ import annotations

import json
import logging
import random
import secrets
import string
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from gitea_hf_hook.config.load import load
from gitea_hf_hook.config.model import Config
from gitea_hf_hook.redact import clean
from gitea_hf_hook.spool.job import Job
from gitea_hf_hook.worker import loop as worker
from tests.support.gitea_api import GiteaApi
from tests.support.gitea_server import WORKER_GITEA_USER, GiteaServer, lfs_pointer
from tests.support.hub import Hub
from tests.support.jobs import read_job
from tests.support.publishing import RULE, TOKEN, configure

CONTEXT = "huggingface/publish"


def hub_token_shaped() -> str:
    """A Hub-token-shaped string, built at run time so no token-shaped literal sits in the sources."""
    return "hf_" + "".join(random.choices(string.ascii_letters + string.digits, k=34))


class World:
    """acme/<name> on Gitea with our hooks, alice's clone, and the worker's config (Hub emulator, Gitea's API)."""

    def __init__(self, server: GiteaServer, hub: Hub, tmp_path: Path, *, gitea: str = "",
                 repos: str = RULE, worker_settings: str = "") -> None:
        hub.reset()
        self.server, self.hub = server, hub
        self.name = f"status-{secrets.token_hex(4)}"
        self.repository = f"acme/{self.name}"
        server.create_repo("acme", self.name)
        self.config: Config = configure(server, hub, repos,
                                        worker=f"worker:\n  max_attempts: 2\n{worker_settings}")
        if gitea:  # more keys of the gitea section
            server.config_path.write_text(server.config_path.read_text().replace("  token_file: ",
                                                                                 f"{gitea}  token_file: ", 1))
            self.config = load(str(server.config_path))
        server.install(self.repository)
        self.clone = server.clone("acme", self.name, tmp_path / "work")
        assert server.gitea_api is not None
        self.api: GiteaApi = server.gitea_api

    @property
    def gitea_token(self) -> str:
        return Path(self.config.gitea_token_file).read_text().strip()

    def push(self, message: str = "Add bert-tiny") -> str:
        commit = self.clone.commit({"README.md": "# tiny\n", "config.json": '{"hidden": 8}\n'}, message=message)
        pushed = self.clone.push("main")
        assert pushed.ok, pushed.output
        return commit

    def work(self, caplog: pytest.LogCaptureFixture, now: float | None = None) -> list[str]:
        """One pass of the worker; returns what it logged."""
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="gitea_hf_hook.worker"):
            worker.loop(self.config, now)
        return list(caplog.messages)

    def job(self, folder: str) -> Job:
        [path] = Path(self.config.spool, folder).glob("*.json")
        return read_job(self.config.spool, folder, path.stem)

    def posted(self) -> list[tuple[str, str, str | None, Any]]:
        return [(r.method, r.path, r.auth, r.payload) for r in self.api.status_requests]

    def statuses_path(self, commit: str) -> str:
        return f"/api/v1/repos/acme/{self.name}/statuses/{commit}"

    def gitea_url(self) -> str:
        return self.api.url.rstrip("/")


@pytest.fixture
def world(server: GiteaServer, hub: Hub, tmp_path: Path) -> World:
    return World(server, hub, tmp_path)


def pending(world: World) -> dict[str, str]:
    return {"state": "pending", "context": CONTEXT, "description": f"publishing to {world.repository} branch main"}


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


# --- what alice sees ----------------------------------------------------------------------------------------------

def test_a_published_commit_shows_pending_then_success_linking_the_hub_commit(
        world: World, caplog: pytest.LogCaptureFixture) -> None:
    commit = world.push()

    world.work(caplog)

    job = world.job("done")
    assert job.outcome is not None and job.outcome.result is not None
    hub_commit = job.outcome.result.hub_commit
    assert hub_commit == world.hub.api().list_repo_commits(world.repository)[0].commit_id
    link = f"{world.hub.url}/{world.repository}/commit/{hub_commit}"
    path = world.statuses_path(commit)
    assert world.posted() == [
        ("POST", path, "token", pending(world)),
        ("POST", path, "token", {"state": "success", "context": CONTEXT, "target_url": link,
                                 "description": f"published to {world.repository} branch main"}),
    ]
    # What Gitea keeps and shows: both rows, the latest one success, its state under "status".
    rows = world.api.statuses(world.repository, commit)
    assert [(r["id"], r["status"], r["context"], r["target_url"]) for r in rows] == [
        (1, "pending", CONTEXT, ""), (2, "success", CONTEXT, link)]
    assert rows[-1]["creator"]["login"] == WORKER_GITEA_USER
    assert warnings(caplog) == []


def test_a_job_the_hub_refuses_shows_failure_with_its_reason_and_no_token(
        server: GiteaServer, hub: Hub, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # The reason names the Hub repository, whose name is shaped like a token.
    shaped = hub_token_shaped()
    world = World(server, hub, tmp_path, repos=RULE.replace("hub_repo: acme/{name}",
                                                            f"hub_repo: acme/{shaped}\n    create: false"))
    commit = world.push()

    world.work(caplog)

    job = world.job("failed")
    assert job.outcome is not None
    reason = job.outcome.reason
    assert reason == ("the Hub repository acme/[REDACTED] does not exist, or the token cannot see it, and repos[0] "
                      "has create: false (create it on the Hub or set create: true, or give the token access)")
    posted = world.posted()
    assert posted == [
        ("POST", world.statuses_path(commit), "token", {
            "state": "pending", "context": CONTEXT, "description": "publishing to acme/[REDACTED] branch main"}),
        ("POST", world.statuses_path(commit), "token", {
            "state": "failure", "context": CONTEXT,
            "description": f"not published to acme/[REDACTED] branch main: {reason}"}),
    ]
    assert [r["status"] for r in world.api.statuses(world.repository, commit)] == ["pending", "failure"]
    said = json.dumps(posted) + caplog.text
    assert shaped not in said and TOKEN not in said and world.gitea_token not in said


def test_an_attempt_that_will_be_retried_stays_pending_with_its_reason(
        world: World, caplog: pytest.LogCaptureFixture) -> None:
    world.hub.fault(path=f"/api/models/{world.repository}/", status=503, times=1)  # the Hub is busy, once
    commit = world.push()

    world.work(caplog)

    job = world.job("queue")
    [error] = job.errors
    assert world.posted()[1:] == [("POST", world.statuses_path(commit), "token", {
        "state": "pending", "context": CONTEXT,
        "description": f"not yet published to {world.repository} branch main, trying again: {error.message}"})]

    world.work(caplog, job.not_before)

    assert [p[3]["state"] for p in world.posted()] == ["pending", "pending", "pending", "success"]


def test_a_long_reason_is_cut_to_one_line_of_500_characters(world: World, caplog: pytest.LogCaptureFixture) -> None:
    # The weights are in Gitea's store, but uploaded to another repository: Gitea does not serve them for this one.
    oid = world.server.store_lfs(b"weights of acme/secret\n", "acme/secret")
    path = "weights/" + "very/deep/" * 30 + "model.safetensors"
    world.clone.write({path: lfs_pointer(oid, 23)})
    commit = world.push()

    world.work(caplog)

    job = world.job("failed")
    assert job.outcome is not None and path in job.outcome.reason
    state, description = world.posted()[-1][3]["state"], world.posted()[-1][3]["description"]
    assert state == "failure"
    assert description == clean(f"not published to {world.repository} branch main: {job.outcome.reason}", 500)
    assert len(description) == 500 and description.endswith("...")
    assert world.api.statuses(world.repository, commit)[-1]["description"] == description


# --- Gitea that cannot take it ------------------------------------------------------------------------------------

def test_gitea_answering_500_is_one_log_line_and_the_publish_goes_on(
        world: World, caplog: pytest.LogCaptureFixture) -> None:
    commit = world.push()
    world.api.fail_next(500)  # the pending status

    world.work(caplog)

    assert world.job("done").outcome is not None
    assert warnings(caplog) == [
        f"job {world.job('done').id}: could not post the pending status of {commit[:7]} to {world.repository} in "
        f"Gitea: Gitea at {world.gitea_url()} (gitea.url) answered 500"]
    assert [p[3]["state"] for p in world.posted()] == ["pending", "success"]
    assert [r["status"] for r in world.api.statuses(world.repository, commit)] == ["success"]


def test_gitea_down_is_one_log_line_and_the_publish_goes_on(world: World, caplog: pytest.LogCaptureFixture) -> None:
    commit = world.push()
    world.api.stop()  # nothing listens on its port any more

    world.work(caplog)

    job = world.job("done")
    assert job.outcome is not None and job.outcome.state == "published"
    assert warnings(caplog) == [
        f"job {job.id}: could not post the pending status of {commit[:7]} to {world.repository} in Gitea: cannot "
        f"reach Gitea at {world.gitea_url()} (gitea.url): Connection refused; no more statuses are posted for this "
        f"job"]


def test_gitea_that_never_answers_costs_one_timeout_and_the_publish_goes_on(
        server: GiteaServer, hub: Hub, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    world = World(server, hub, tmp_path, worker_settings="  timeout_seconds: 1\n")
    commit = world.push()
    world.api.stall_next()  # reads the pending status and never answers

    world.work(caplog)

    job = world.job("done")
    assert job.outcome is not None and job.outcome.state == "published"
    assert warnings(caplog) == [
        f"job {job.id}: could not post the pending status of {commit[:7]} to {world.repository} in Gitea: cannot "
        f"reach Gitea at {world.gitea_url()} (gitea.url): no answer within 1 s; no more statuses are posted for "
        f"this job"]
    assert [p[3]["state"] for p in world.posted()] == ["pending"]


def test_a_gitea_answer_quoting_the_token_is_logged_without_it(world: World, caplog: pytest.LogCaptureFixture) -> None:
    commit = world.push()
    token = world.gitea_token
    world.api.fail_next(403, body=json.dumps({"message": f"token {token} is not allowed here"}).encode(),
                        headers={"Content-Type": "application/json"})

    world.work(caplog)

    assert warnings(caplog) == [
        f"job {world.job('done').id}: could not post the pending status of {commit[:7]} to {world.repository} in "
        f"Gitea: Gitea at {world.gitea_url()} (gitea.url) answered 403: token [REDACTED] is not allowed here (give "
        f"the token in {world.config.gitea_token_file} the write:repository scope, and its user write access to "
        f"{world.repository}; or set gitea.statuses: false)"]
    assert token not in caplog.text


def test_a_worker_user_who_may_only_read_is_told_what_to_grant(world: World, caplog: pytest.LogCaptureFixture) -> None:
    world.api.grant(WORKER_GITEA_USER, world.repository, write=False)
    commit = world.push()

    world.work(caplog)

    job = world.job("done")
    hint = (f"(give the token in {world.config.gitea_token_file} the write:repository scope, and its user write "
            f"access to {world.repository}; or set gitea.statuses: false)")
    assert warnings(caplog) == [
        f"job {job.id}: could not post the {state} status of {commit[:7]} to {world.repository} in Gitea: Gitea at "
        f"{world.gitea_url()} (gitea.url) answered 403: user should have a permission to write to a repo {hint}"
        for state in ("pending", "success")]
    assert world.api.statuses(world.repository, commit) == []


def test_statuses_false_posts_nothing(server: GiteaServer, hub: Hub, tmp_path: Path,
                                      caplog: pytest.LogCaptureFixture) -> None:
    world = World(server, hub, tmp_path, gitea="  statuses: false\n")
    world.push()

    world.work(caplog)

    assert world.job("done").outcome is not None
    assert world.api.status_requests == []


# --- the stand-in answers as Gitea does --------------------------------------------------------------------------

def post(api: GiteaApi, path: str, body: Any, token: str | None) -> tuple[int, Any]:
    request = urllib.request.Request(f"{api.url}{path.lstrip('/')}", data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json",
                                              **({"Authorization": f"token {token}"} if token else {})})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_the_stand_in_answers_a_status_post_as_gitea_does(world: World) -> None:
    commit = world.push()
    api, path = world.api, world.statuses_path(commit)
    token = api.add_token(WORKER_GITEA_USER)

    status, row = post(api, path, {"state": "warning", "context": f" {CONTEXT} ", "description": "  x "}, token)
    assert (status, row["id"], row["status"], row["context"], row["description"]) == (201, 1, "warning", CONTEXT, "x")
    assert "state" not in row and row["url"] == f"{api.url}api/v1/repos/acme/{world.name}/statuses/{commit}"
    assert post(api, world.statuses_path(commit[:10]), {"state": "success"}, token)[1]["id"] == 2  # expanded

    read_only = api.add_token(WORKER_GITEA_USER, ("read:repository",))
    refusals = [
        post(api, path, {"state": "success"}, read_only),
        post(api, path, {"state": "success"}, None),
        post(api, f"/api/v1/repos/acme/{world.name}-gone/statuses/{commit}", {"state": "success"}, token),
        post(api, path, {"state": 1}, token),
        post(api, world.statuses_path("0" * 40), {"state": "success"}, token),
        post(api, path, {"state": "cancelled"}, token),  # longer than its VARCHAR(7) column
    ]
    assert [(code, body["message"]) for code, body in refusals] == [
        (403, "token does not have at least one of required scope(s), required=[write:repository], token "
              "scope=read:repository"),
        (404, "The target couldn't be found."),
        (404, "The target couldn't be found."),
        (422, "validationError"),
        (500, ""),
        (500, ""),
    ]
    assert [r["id"] for r in api.statuses(world.repository, commit)] == [1, 2]
