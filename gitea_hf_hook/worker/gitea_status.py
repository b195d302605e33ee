"""Each job's outcome as a commit status in Gitea, so the pusher sees it on the commit.

With ``gitea.url`` and ``gitea.token_file`` set (and ``gitea.statuses`` left on), the worker posts to
``POST {gitea.url}/api/v1/repos/{owner}/{repo}/statuses/{sha}`` with context ``huggingface/publish``:
``pending`` when a publish starts (and again, with the reason, when it will be retried), ``success`` with the Hub
commit's URL, ``failure`` with the reason once the job is in ``failed/``. Gitea keeps every status it is sent and
shows the latest per context.

A status is a courtesy, never a condition: a failure to post is one log line, and the publish goes on. Each post
has its own short timeout; once Gitea cannot be reached for a job, that job posts nothing more, so a Gitea that
is down costs a job one timeout, not one per status. The repository is the one the config's rule routed the job
to (:func:`.derive.route`), the commit the job's own (a full object id), and nothing is posted for a deletion.

Standard library only, as :mod:`.gitea_lfs`: redirects are never followed (they would carry the token), and the
token never reaches a message.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from ..config.model import Config
from ..errors import PublishError
from ..redact import clean
from ..spool.job import Job, PublishResult, is_oid
from . import token_file
from .derive import route
from .logs import say

CONTEXT = "huggingface/publish"
TIMEOUT = 10.0  # seconds per post, at most worker.timeout_seconds: a status must not hold up publishing long
# Gitea stores the description as TEXT with no limit of its own (the reference's section 1); the shortest TEXT
# (MySQL's) holds 65,535 bytes. A reason shown on a commit needs far less: one line, cut here.
DESCRIPTION_LIMIT = 500
_TOKEN_HINT = "write a Gitea access token with the read:repository and write:repository scopes into it"


class _Unanswered(Exception):
    """Gitea could not be asked: no connection, no answer in time, or a gitea.url no request can go to."""


class Reporter:
    """The statuses of one job's publish: :func:`start` posts ``pending``; then one of the others."""

    def __init__(self, config: Config, job: Job, repository: str | None) -> None:
        self.config, self.job = config, job
        self.repository = repository  # None: nothing is posted for this job
        self.token = ""

    def pending(self) -> None:
        self._post("pending", f"publishing to {self.job.target.label}")

    def published(self, result: PublishResult) -> None:
        target = self.job.target
        url = target.url(self.config.hub_endpoint)
        if result.hub_commit:
            url += f"/commit/{result.hub_commit}"
        self._post("success", f"published to {target.label}", url)

    def settled(self, message: str, reason: str | None) -> None:
        """After a failed attempt: ``pending`` with ``message`` when it will be retried (``reason`` None), else
        ``failure`` with the job's final ``reason``."""
        label = self.job.target.label
        if reason is None:
            self._post("pending", f"not yet published to {label}, trying again: {message}")
        else:
            self._post("failure", f"not published to {label}: {reason}")

    def _post(self, state: str, description: str, target_url: str = "") -> None:
        if self.repository is None:
            return
        try:
            if not self.token:
                self.token = token_file.read(self.config.gitea_token_file, "gitea.token_file",
                                             kind="Gitea token file", hint=_TOKEN_HINT)
            problem = _send(self.config, self.repository, self.job.commit, self.token,
                            _body(state, description, target_url, self.token))
        except (_Unanswered, PublishError) as exc:  # PublishError: the token file cannot be read
            problem, reachable = str(exc), False
        except Exception as exc:  # noqa: BLE001 - a status must never fail a publish
            problem, reachable = f"unexpected {type(exc).__name__}", False
        else:
            if problem is None:
                return
            reachable = True
        said = clean(problem.replace(self.token, "[REDACTED]") if self.token else problem)
        suffix = "" if reachable else "; no more statuses are posted for this job"
        say(f"job {self.job.id}: could not post the {state} status of {self.job.commit[:7]} to "
            f"{self.repository} in Gitea: {said}{suffix}", logging.WARNING)
        if not reachable:
            self.repository = None


def start(config: Config, job: Job) -> Reporter:
    """The job's reporter, after posting ``pending``; it posts nothing when statuses are off or do not apply."""
    repository = None
    if config.gitea_statuses and config.gitea_url and config.gitea_token_file and is_oid(job.commit):
        try:
            owner, name, _rule, _target = route(config, job)
        except PublishError:
            pass  # the publish fails with the reason; a job the config does not route names no repository
        else:
            repository = f"{owner}/{name}"
    reporter = Reporter(config, job, repository)
    reporter.pending()
    return reporter


def _body(state: str, description: str, target_url: str, token: str) -> bytes:
    text = clean(description.replace(token, "[REDACTED]") if token else description, DESCRIPTION_LIMIT)
    data: dict[str, Any] = {"state": state, "context": CONTEXT, "description": text}
    if target_url:
        data["target_url"] = target_url
    return json.dumps(data).encode()


def _send(config: Config, repository: str, sha: str, token: str, body: bytes) -> str | None:
    """Post one status; None when Gitea took it (201), else Gitea's refusal in one line. Raises _Unanswered,
    also when the whole exchange takes longer than the timeout (:mod:`.gitea_http`)."""
    import http.client
    import urllib.error
    import urllib.request
    from urllib.parse import quote

    from .gitea_http import Deadline

    owner, _, name = repository.partition("/")
    url = (f"{config.gitea_url}/api/v1/repos/{quote(owner, safe='')}/{quote(name, safe='')}/statuses/"
           f"{quote(sha, safe='')}")
    request = urllib.request.Request(url, data=body, method="POST", headers={
        "Accept": "application/json", "Content-Type": "application/json", "Authorization": f"token {token}",
        "User-Agent": "gitea-hf-hook"})
    at = f"at {config.gitea_url} (gitea.url)"
    timeout = min(TIMEOUT, config.worker.timeout_seconds)
    late = _Unanswered(f"cannot reach Gitea {at}: no answer within {timeout:g} s")
    with Deadline(timeout) as deadline:
        try:
            with deadline.opener().open(request, timeout=timeout) as response:
                status = response.status  # the body, the status as Gitea stored it, is not needed
        except urllib.error.HTTPError as exc:
            message = _message(exc)
            if deadline.passed:
                raise late from None
            return _refusal(config, repository, exc.code, message, exc.headers)
        except urllib.error.URLError as exc:
            if deadline.passed or isinstance(exc.reason, TimeoutError):
                raise late from None
            reason = exc.reason.strerror if isinstance(exc.reason, OSError) and exc.reason.strerror else exc.reason
            raise _Unanswered(f"cannot reach Gitea {at}: {reason}") from None
        except TimeoutError:
            raise late from None
        except (http.client.InvalidURL, ValueError):
            # Said without the exception's text, which quotes what it could not send.
            raise _Unanswered(f"gitea.url in {config.path} is not a URL the worker can reach "
                              f"({config.gitea_url!r})") from None
        except (http.client.HTTPException, OSError) as exc:
            if deadline.passed:
                raise late from None
            raise _Unanswered(f"cannot reach Gitea {at}: the connection failed ({type(exc).__name__})") from None
    return None if status == 201 else f"Gitea {at} answered {status}, not 201"


def _refusal(config: Config, repository: str, status: int, message: str, headers: Any) -> str:
    said = f"{status}: {message}" if message else str(status)
    at = f"Gitea at {config.gitea_url} (gitea.url)"
    if 300 <= status < 400:
        location = clean(headers.get("Location", ""), 200) if headers is not None else ""
        return (f"{at} answered {status}, a redirect{f' to {location}' if location else ''} (set gitea.url to "
                f"Gitea's ROOT_URL exactly; the worker never follows a redirect, which would carry the token)")
    if status in (401, 403, 404):
        return (f"{at} answered {said} (give the token in {config.gitea_token_file} the write:repository scope, "
                f"and its user write access to {repository}; or set gitea.statuses: false)")
    return f"{at} answered {said}"


def _message(exc: Any) -> str:
    """The ``message`` of Gitea's APIError body, when it sent one."""
    try:
        body = json.loads(exc.read(64 << 10))
    except (OSError, ValueError):
        return ""
    message = body.get("message") if isinstance(body, dict) else None
    return clean(message, 200) if isinstance(message, str) else ""
