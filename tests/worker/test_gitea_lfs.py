"""The worker asks Gitea whether each LFS object belongs to the repository it publishes.

Gitea's LFS store is shared by every repository: alice's acme/bert-tiny may commit a pointer naming an object
that only the private acme/secret uploaded. Each test puts real objects in the server's store, links them as
uploads would, and asks the stand-in Gitea (``tests.support.gitea_api``) through the real HTTP client.
"""

from __future__ import annotations

import hashlib
import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from gitea_hf_hook.config.load import load
from gitea_hf_hook.config.model import Config
from gitea_hf_hook.errors import PublishError
from gitea_hf_hook.worker.gitea_lfs import Unlinked, unlinked
from tests.support.gitea_api import GiteaApi
from tests.support.gitea_server import GiteaServer

WORKER = "hf-publish"  # the worker's own Gitea user
REPO = "acme/bert-tiny"
WEIGHTS = b"safetensors weights of bert-tiny\n" * 64
SECRET = b"weights acme/secret keeps to itself\n" * 64


def configure(server: GiteaServer, api: GiteaApi | None, token: str | None = None, *, worker: str = "") -> Config:
    """config.yaml with gitea.url at ``api`` and gitea.token_file holding ``token`` (each left out when None)."""
    server.write_config(extra=worker)
    settings = ""
    if api is not None:
        settings += f"  url: {api.url}\n"
    if token is not None:
        token_file = server.base / "gitea.token"
        token_file.write_text(token + "\n")
        token_file.chmod(0o600)
        settings += f"  token_file: {token_file}\n"
    text = server.config_path.read_text().replace("  url: https://git.example.com\n", settings)
    server.config_path.write_text(text)
    return load(str(server.config_path))


def worker_config(server: GiteaServer, api: GiteaApi, *, worker: str = "") -> tuple[Config, str]:
    """The worker's config, with a token of its own that Gitea lets read acme/bert-tiny; and that token."""
    token = api.add_token(WORKER)
    api.grant(WORKER, REPO)
    return configure(server, api, token, worker=worker), token


def uploaded(server: GiteaServer, api: GiteaApi, repository: str, content: bytes) -> tuple[str, int]:
    """An object pushed with ``git lfs push`` to ``repository``: in the shared store, linked to it alone."""
    oid = server.store_lfs(content)
    api.link(repository, oid, len(content))
    return oid, len(content)


def refusal(config: Config, token: str | None, repository: str = REPO,
            objects: list[tuple[str, int]] | None = None) -> PublishError:
    """What ``unlinked`` raises, after checking that the token (if there is one) is nowhere in it."""
    with pytest.raises(PublishError) as caught:
        unlinked(config, repository, objects if objects is not None else [("a" * 64, 1)])
    error = caught.value
    for text in (str(error), error.message, error.hint, repr(error.args)):
        assert token is None or token not in text
    assert "\n" not in str(error)
    return error


# -- what Gitea serves -----------------------------------------------------------------------------------------

def test_an_object_the_repository_uploaded_is_linked(server: GiteaServer, gitea_api: GiteaApi) -> None:
    config, _ = worker_config(server, gitea_api)
    weights = uploaded(server, gitea_api, REPO, WEIGHTS)

    assert unlinked(config, REPO, [weights]) == []

    [request] = gitea_api.requests
    assert (request.method, request.path, request.accept, request.auth) == (
        "POST", "/acme/bert-tiny.git/info/lfs/objects/batch", "application/vnd.git-lfs+json", "token")
    assert request.payload["operation"] == "download"
    assert request.payload["objects"] == [{"oid": weights[0], "size": weights[1]}]


def test_an_object_only_a_private_repository_uploaded_is_not_found_for_this_one(
        server: GiteaServer, gitea_api: GiteaApi) -> None:
    config, _ = worker_config(server, gitea_api)
    weights = uploaded(server, gitea_api, REPO, WEIGHTS)
    secret = uploaded(server, gitea_api, "acme/secret", SECRET)  # in the store, but acme/secret's

    assert unlinked(config, REPO, [weights, secret]) == [Unlinked(secret[0], secret[1], "Not Found")]


def test_a_row_whose_file_is_gone_from_the_store_is_not_found(server: GiteaServer, gitea_api: GiteaApi) -> None:
    config, _ = worker_config(server, gitea_api)
    oid = hashlib.sha256(WEIGHTS).hexdigest()
    gitea_api.link(REPO, oid, len(WEIGHTS))  # linked, never stored

    assert unlinked(config, REPO, [(oid, len(WEIGHTS))]) == [Unlinked(oid, len(WEIGHTS), "Not Found")]


def test_a_pointer_whose_size_differs_from_the_row_gets_giteas_422_message(
        server: GiteaServer, gitea_api: GiteaApi) -> None:
    config, _ = worker_config(server, gitea_api)
    oid, size = uploaded(server, gitea_api, REPO, WEIGHTS)

    assert unlinked(config, REPO, [(oid, size + 1)]) == [
        Unlinked(oid, size + 1, f"Object {oid} is not {size + 1} bytes")]


def test_a_pointer_that_is_no_oid_gets_giteas_422_message(server: GiteaServer, gitea_api: GiteaApi) -> None:
    config, _ = worker_config(server, gitea_api)
    bad = "E" * 64  # Gitea wants lower-case hex

    assert unlinked(config, REPO, [(bad, 10)]) == [Unlinked(bad, 10, "Oid or size are invalid")]


def test_250_objects_go_in_3_requests_each_asked_once(server: GiteaServer, gitea_api: GiteaApi) -> None:
    config, _ = worker_config(server, gitea_api)
    objects = [uploaded(server, gitea_api, REPO, b"shard %d\n" % i) for i in range(240)]
    foreign = [uploaded(server, gitea_api, "acme/secret", b"secret shard %d\n" % i) for i in range(10)]
    pointers = objects[:120] + foreign + objects[120:] + objects[:30]  # 30 pointers repeat an object

    assert unlinked(config, REPO, pointers) == [Unlinked(oid, size, "Not Found") for oid, size in foreign]

    asked = [[(o["oid"], o["size"]) for o in r.payload["objects"]] for r in gitea_api.requests]
    assert [len(batch) for batch in asked] == [100, 100, 50]
    assert sum(asked, []) == objects[:120] + foreign + objects[120:]


def test_no_objects_ask_nothing_and_need_no_settings(server: GiteaServer, gitea_api: GiteaApi) -> None:
    assert unlinked(configure(server, None), REPO, []) == []
    assert gitea_api.requests == []


def test_the_token_is_read_afresh_on_every_call(server: GiteaServer, gitea_api: GiteaApi) -> None:
    config, old = worker_config(server, gitea_api)
    weights = uploaded(server, gitea_api, REPO, WEIGHTS)
    Path(config.gitea_token_file).write_text(gitea_api.add_token("nobody") + "\n")
    refusal(config, old, objects=[weights])

    Path(config.gitea_token_file).write_text(f"  {old}  \n\n")
    assert unlinked(config, REPO, [weights]) == []


# -- what the worker is told when it cannot ask ------------------------------------------------------------------

@pytest.mark.parametrize(("url", "token", "missing"), [
    (False, False, "gitea.url and gitea.token_file"), (False, True, "gitea.url"), (True, False, "gitea.token_file"),
])
def test_without_gitea_url_or_token_file_lfs_content_is_not_published(
        server: GiteaServer, gitea_api: GiteaApi, url: bool, token: bool, missing: str) -> None:
    value = gitea_api.add_token(WORKER)
    config = configure(server, gitea_api if url else None, value if token else None)

    error = refusal(config, value)

    assert str(error) == (
        f"publishing the Git LFS objects of acme/bert-tiny needs gitea.url and gitea.token_file in "
        f"{server.config_path} ({missing} not set), so the worker can ask Gitea that each object belongs to the "
        f"repository (set both, with a token whose Gitea user can read the repository; gitea.verify_lfs: false "
        f"turns the check off, at the risk of publishing another repository's LFS objects)")
    assert not error.retryable
    assert gitea_api.requests == []


def test_a_missing_or_empty_token_file_is_named(server: GiteaServer, gitea_api: GiteaApi) -> None:
    config = configure(server, gitea_api, "")
    path = server.base / "gitea.token"

    assert str(refusal(config, None)) == (
        f"the Gitea token file {path}, named by gitea.token_file, is empty "
        f"(write a Gitea access token with the read:repository scope into it)")
    path.unlink()
    assert str(refusal(config, None)) == (
        f"the Gitea token file {path}, named by gitea.token_file, does not exist "
        f"(write a Gitea access token with the read:repository scope into it)")
    path.write_text("token of alice\n")
    assert str(refusal(config, "token of alice")) == (
        f"the Gitea token file {path}, named by gitea.token_file, does not start with a token: its first line "
        f"holds spaces or characters other than printable ASCII (write the token alone on the first line)")
    assert gitea_api.requests == []


def test_a_token_gitea_does_not_know_is_refused(server: GiteaServer, gitea_api: GiteaApi) -> None:
    gitea_api.grant(WORKER, REPO)
    token = "0" * 8 + gitea_api.add_token(WORKER)[8:]  # shaped like the worker's, but not one Gitea issued
    config = configure(server, gitea_api, token)

    error = refusal(config, token)

    assert str(error) == (
        f"Gitea at {gitea_api.url.rstrip('/')} (gitea.url) refused the token in {config.gitea_token_file} "
        f"(gitea.token_file) for the LFS objects of acme/bert-tiny (401: Unauthorized) (Gitea answers 401 both "
        f"for a token it does not know and for a user who cannot read the repository: check the token, and "
        f"give its user read access to acme/bert-tiny)")
    assert not error.retryable
    assert [r.auth for r in gitea_api.requests] == ["token"]


def test_a_repository_the_tokens_user_cannot_read_is_refused_like_a_bad_token(
        server: GiteaServer, gitea_api: GiteaApi) -> None:
    # Gitea's LFS server finds the repository first, then answers 401 to a user without read access: unlike its
    # REST API, it does not hide a private repository behind a 404.
    config, token = worker_config(server, gitea_api)
    secret = uploaded(server, gitea_api, "acme/secret", SECRET)

    error = refusal(config, token, "acme/secret", [secret])

    assert str(error) == (
        f"Gitea at {gitea_api.url.rstrip('/')} (gitea.url) refused the token in {config.gitea_token_file} "
        f"(gitea.token_file) for the LFS objects of acme/secret (401: Unauthorized) (Gitea answers 401 both "
        f"for a token it does not know and for a user who cannot read the repository: check the token, and "
        f"give its user read access to acme/secret)")


def test_a_repository_gitea_does_not_have_is_a_404(server: GiteaServer, gitea_api: GiteaApi) -> None:
    config, token = worker_config(server, gitea_api)

    error = refusal(config, token, "acme/gone")

    assert str(error) == (
        f"Gitea at {gitea_api.url.rstrip('/')} (gitea.url) has no repository acme/gone, or its LFS server is off "
        f"(404: Not Found for the LFS batch request) (check gitea.url and the repository's name, and that "
        f"Gitea's [server] LFS_START_SERVER is true)")
    assert not error.retryable


def test_gitea_down_is_retried_later(server: GiteaServer, gitea_api: GiteaApi) -> None:
    config, token = worker_config(server, gitea_api)
    gitea_api.stop()  # nothing listens on its port any more

    error = refusal(config, token)

    assert str(error) == (
        f"cannot reach Gitea at {gitea_api.url.rstrip('/')} (gitea.url) to check the LFS objects of "
        f"acme/bert-tiny: Connection refused (the worker retries later; check that Gitea is up)")
    assert error.retryable and error.retry_after is None


def test_gitea_that_never_answers_times_out_and_is_retried(server: GiteaServer, gitea_api: GiteaApi) -> None:
    config, token = worker_config(server, gitea_api, worker="worker:\n  timeout_seconds: 1\n")
    gitea_api.stall_next()

    error = refusal(config, token)

    assert str(error) == (
        f"Gitea at {gitea_api.url.rstrip('/')} (gitea.url) did not answer within 1 s (worker.timeout_seconds) "
        f"while checking the LFS objects of acme/bert-tiny (the worker retries later)")
    assert error.retryable


@pytest.mark.parametrize(("status", "headers", "retry_after"), [
    (503, {"Retry-After": "7"}, 7.0), (500, {}, None), (429, {"Retry-After": "30"}, 30.0),
])
def test_a_busy_or_failing_gitea_is_retried_later(server: GiteaServer, gitea_api: GiteaApi, status: int,
                                                  headers: dict[str, str], retry_after: float | None) -> None:
    config, token = worker_config(server, gitea_api)
    gitea_api.fail_next(status, headers=headers)

    error = refusal(config, token)

    phrase = {503: "Service Unavailable", 500: "Internal Server Error", 429: "Too Many Requests"}[status]
    assert str(error) == (
        f"Gitea at {gitea_api.url.rstrip('/')} (gitea.url) answered {status}: {phrase} to the LFS batch request "
        f"for acme/bert-tiny (the worker retries later)")
    assert (error.retryable, error.retry_after) == (True, retry_after)


def test_a_token_without_the_repository_scope_is_forbidden(server: GiteaServer, gitea_api: GiteaApi) -> None:
    config, token = worker_config(server, gitea_api)
    gitea_api.fail_next(403, body=b"token does not have at least one of required scope(s): [read:repository]\n",
                        headers={"Content-Type": "text/plain; charset=utf-8"})

    error = refusal(config, token)

    assert str(error) == (
        f"Gitea at {gitea_api.url.rstrip('/')} (gitea.url) forbade the token in {config.gitea_token_file} "
        f"(gitea.token_file) to read the LFS objects of acme/bert-tiny (403) (give the token the "
        f"read:repository scope, and not public-only if the repository is private)")
    assert not error.retryable


def test_the_stand_in_refuses_a_request_without_the_lfs_media_type_and_so_would_gitea(
        server: GiteaServer, gitea_api: GiteaApi) -> None:
    config, token = worker_config(server, gitea_api)
    request = urllib.request.Request(f"{gitea_api.url}acme/bert-tiny.git/info/lfs/objects/batch", method="POST",
                                     data=b'{"operation": "download", "objects": []}',
                                     headers={"Accept": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=10)
    assert (caught.value.code, json.loads(caught.value.read())) == (415, {"Message": "Unsupported Media Type"})

    gitea_api.fail_next(415)
    assert str(refusal(config, token)) == (
        f"Gitea at {gitea_api.url.rstrip('/')} (gitea.url) refused the media type application/vnd.git-lfs+json "
        f"of the LFS batch request for acme/bert-tiny (415: Unsupported Media Type) (check that gitea.url "
        f"points at Gitea itself, not at a proxy in front of it)")


def test_a_redirect_is_never_followed(server: GiteaServer, gitea_api: GiteaApi) -> None:
    config, token = worker_config(server, gitea_api)
    elsewhere = f"{gitea_api.url}elsewhere/acme/bert-tiny.git/info/lfs/objects/batch"
    gitea_api.fail_next(307, headers={"Location": elsewhere})

    error = refusal(config, token)

    assert str(error) == (
        f"Gitea at {gitea_api.url.rstrip('/')} (gitea.url) answered 307, a redirect to {elsewhere}, to the LFS "
        f"batch request for acme/bert-tiny (set gitea.url to Gitea's ROOT_URL exactly; the worker never follows "
        f"a redirect, which would carry the token elsewhere)")
    assert not error.retryable
    assert [r.path for r in gitea_api.requests] == ["/acme/bert-tiny.git/info/lfs/objects/batch"]


@pytest.mark.parametrize("body", [
    b"<!DOCTYPE html><title>Sign in</title>", b'{"objects": "none"}', b'{"objects": []}',
    b'{"objects": [{"oid": "' + b"a" * 64 + b'", "size": 1}]}',  # neither an error nor a download
])
def test_an_answer_that_is_not_a_batch_response_is_refused(server: GiteaServer, gitea_api: GiteaApi,
                                                           body: bytes) -> None:
    config, token = worker_config(server, gitea_api)
    gitea_api.fail_next(200, body=body)

    error = refusal(config, token)

    assert str(error) == (
        f"Gitea at {gitea_api.url.rstrip('/')} (gitea.url) answered the LFS batch request for acme/bert-tiny "
        f"with something other than Git LFS batch JSON (check that gitea.url is Gitea's ROOT_URL, not a proxy "
        f"or login page)")
    assert not error.retryable
