"""Whether Gitea serves each Git LFS object for the repository whose pointer names it.

Gitea keeps one LFS content store for every repository and links each object to the repositories that
uploaded it (its ``lfs_meta_object`` table). Finding an object in the store therefore proves nothing: a pointer
committed to ``acme/a`` may name an object that only the private ``acme/b`` uploaded, and publishing it would
copy ``acme/b``'s content to the Hub as ``acme/a``'s. So before uploading, the worker asks Gitea's LFS batch
API, operation ``download``, for ``acme/a``: Gitea looks each object up by that repository alone and answers
"Not Found" for an object the repository never uploaded, exactly as it would answer a ``git lfs pull``.

Standard library only, imported inside the functions: one POST per hundred objects needs no HTTP library.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, NamedTuple, NoReturn

from ..config.model import Config
from ..errors import PublishError
from . import token_file

MEDIA_TYPE = "application/vnd.git-lfs+json"
BATCH_LIMIT = 100  # objects per request: what Git LFS clients send, so no Gitea or proxy in between balks
_MAX_ANSWER = 8 << 20  # a hundred objects answer in tens of kilobytes; more than this is not Gitea talking
_TOKEN_HINT = "write a Gitea access token with the read:repository scope into it"


class Unlinked(NamedTuple):
    """An LFS object Gitea does not serve for the repository, and Gitea's reason (e.g. "Not Found")."""

    oid: str
    size: int
    why: str


def unlinked(config: Config, repository: str, objects: Sequence[tuple[str, int]]) -> list[Unlinked]:
    """The objects of ``objects`` (``(oid, size)`` pairs) that Gitea does not serve for ``repository``
    (``owner/name``), in the order given; an empty list means every object belongs to the repository.

    The token is read from ``gitea.token_file`` on every call; whether to call at all (``gitea.verify_lfs``)
    is the caller's decision. Raises PublishError when Gitea cannot be asked or answers something other than
    its batch response; ``retryable`` is set for network errors, timeouts, 429 and 5xx.
    """
    owner, slash, name = repository.partition("/")
    if not owner or not name or "/" in name or not slash:
        raise ValueError(f"repository must be owner/name, got {repository!r}")
    wanted = list(dict.fromkeys((oid, size) for oid, size in objects))
    if not wanted:
        return []
    _require_settings(config, repository)
    token = _read_token(config)
    from urllib.parse import quote

    url = f"{config.gitea_url}/{quote(owner, safe='')}/{quote(name, safe='')}.git/info/lfs/objects/batch"
    found: list[Unlinked] = []
    for start in range(0, len(wanted), BATCH_LIMIT):
        chunk = wanted[start:start + BATCH_LIMIT]
        answer = _post(config, repository, url, token, chunk)
        found.extend(_refusals(config, repository, answer, chunk, token))
    return found


# -- settings and token ----------------------------------------------------------------------------------------

def _require_settings(config: Config, repository: str) -> None:
    missing = [key for key, value in (("gitea.url", config.gitea_url), ("gitea.token_file", config.gitea_token_file))
               if not value]
    if missing:
        raise PublishError(
            f"publishing the Git LFS objects of {repository} needs gitea.url and gitea.token_file in "
            f"{config.path} ({' and '.join(missing)} not set), so the worker can ask Gitea that each object "
            f"belongs to the repository",
            "set both, with a token whose Gitea user can read the repository; gitea.verify_lfs: false turns "
            "the check off, at the risk of publishing another repository's LFS objects")
    if not config.gitea_url.startswith(("http://", "https://")):
        raise PublishError(f"gitea.url in {config.path} must be an http(s) URL (got {config.gitea_url!r})",
                           "set it to Gitea's ROOT_URL, e.g. https://git.example.com")


def _read_token(config: Config) -> str:
    """The token, read now so that a rotated token needs no restart. Never part of any message."""
    return token_file.read(config.gitea_token_file, "gitea.token_file", kind="Gitea token file",
                           hint=_TOKEN_HINT)


def _post(config: Config, repository: str, url: str, token: str, chunk: list[tuple[str, int]]) -> Any:
    """Gitea's batch answer for ``chunk``, as parsed JSON."""
    import http.client
    import ssl
    import urllib.error
    import urllib.request

    from .gitea_http import Deadline

    body = json.dumps({"operation": "download", "transfers": ["basic"],
                       "objects": [{"oid": oid, "size": size} for oid, size in chunk]}).encode()
    request = urllib.request.Request(url, data=body, method="POST", headers={
        "Accept": MEDIA_TYPE, "Content-Type": MEDIA_TYPE, "Authorization": f"token {token}",
        "User-Agent": "gitea-hf-hook"})
    at = f"Gitea at {config.gitea_url} (gitea.url)"
    timeout = config.worker.timeout_seconds
    # The whole exchange, not each read, is bounded: see gitea_http.
    deadline = Deadline(timeout)
    with deadline:
        try:
            with deadline.opener().open(request, timeout=timeout) as response:
                data = response.read(_MAX_ANSWER + 1)
        except urllib.error.HTTPError as exc:
            message = _message(exc, token)
            if deadline.passed:
                _timed_out(at, repository, timeout)
            _refused(config, repository, at, exc.code, exc.headers, message, token)
        except urllib.error.URLError as exc:
            if deadline.passed or isinstance(exc.reason, TimeoutError):
                _timed_out(at, repository, timeout)
            if isinstance(exc.reason, ssl.SSLCertVerificationError):
                raise PublishError(f"{at} presented a certificate the worker does not trust: "
                                   f"{_one_line(str(exc.reason.verify_message), token)}",
                                   "install Gitea's CA certificate in the worker's trust store, or fix gitea.url"
                                   ) from None
            reason = exc.reason.strerror if isinstance(exc.reason, OSError) and exc.reason.strerror else exc.reason
            raise PublishError(f"cannot reach {at} to check the LFS objects of {repository}: "
                               f"{_one_line(str(reason), token)}", "the worker retries later; check that Gitea is up",
                               retryable=True) from None
        except TimeoutError:
            _timed_out(at, repository, timeout)
        except (http.client.InvalidURL, ValueError):
            # Said without the exception's text, which quotes what it could not send.
            raise PublishError(f"gitea.url in {config.path} is not a URL the worker can reach "
                               f"({config.gitea_url!r})", "set it to Gitea's ROOT_URL, e.g. https://git.example.com"
                               ) from None
        except (http.client.HTTPException, OSError) as exc:
            if deadline.passed:
                _timed_out(at, repository, timeout)
            raise PublishError(f"the connection to {at} failed while checking the LFS objects of {repository} "
                               f"({type(exc).__name__})", "the worker retries later; check that Gitea is up",
                               retryable=True) from None
    if len(data) > _MAX_ANSWER:
        _not_lfs(at, repository)
    try:
        return json.loads(data)
    except ValueError:
        _not_lfs(at, repository)


def _refused(config: Config, repository: str, at: str, status: int, headers: Any, message: str,
             token: str) -> NoReturn:
    """Gitea's refusal as PublishError; ``from None`` throughout, so no HTTPError rides along as context."""
    said = f"{status}: {message}" if message else str(status)
    token_file = f"{config.gitea_token_file} (gitea.token_file)"
    if 300 <= status < 400:
        location = _one_line(headers.get("Location", ""), token) if headers is not None else ""
        raise PublishError(f"{at} answered {status}, a redirect" + (f" to {location}" if location else "")
                           + f", to the LFS batch request for {repository}",
                           "set gitea.url to Gitea's ROOT_URL exactly; the worker never follows a redirect, "
                           "which would carry the token elsewhere") from None
    if status == 401:
        raise PublishError(f"{at} refused the token in {token_file} for the LFS objects of {repository} ({said})",
                           f"Gitea answers 401 both for a token it does not know and for a user who cannot read "
                           f"the repository: check the token, and give its user read access to {repository}") from None
    if status == 403:
        raise PublishError(f"{at} forbade the token in {token_file} to read the LFS objects of {repository} "
                           f"({said})", "give the token the read:repository scope, and not public-only if the "
                           "repository is private") from None
    if status == 404:
        raise PublishError(f"{at} has no repository {repository}, or its LFS server is off ({said} for the LFS "
                           f"batch request)", "check gitea.url and the repository's name, and that Gitea's "
                           "[server] LFS_START_SERVER is true") from None
    if status == 415:
        raise PublishError(f"{at} refused the media type {MEDIA_TYPE} of the LFS batch request for {repository} "
                           f"({said})",
                           "check that gitea.url points at Gitea itself, not at a proxy in front of it") from None
    if status == 429 or status >= 500:
        raise PublishError(f"{at} answered {said} to the LFS batch request for {repository}",
                           "the worker retries later", retryable=True, retry_after=_retry_after(headers)) from None
    raise PublishError(f"{at} answered {said} to the LFS batch request for {repository}",
                       "check that gitea.url is Gitea's ROOT_URL") from None


def _timed_out(at: str, repository: str, timeout: float) -> NoReturn:
    raise PublishError(f"{at} did not answer within {timeout:g} s (worker.timeout_seconds) while checking the LFS "
                       f"objects of {repository}", "the worker retries later", retryable=True) from None


def _not_lfs(at: str, repository: str) -> NoReturn:
    raise PublishError(f"{at} answered the LFS batch request for {repository} with something other than Git LFS "
                       f"batch JSON", "check that gitea.url is Gitea's ROOT_URL, not a proxy or login page") from None


def _message(exc: Any, token: str) -> str:
    """The ``Message`` of Gitea's error body, when it sent one (``lfs.ErrorResponse`` has no json tag)."""
    try:
        body = json.loads(exc.read(64 << 10))
    except (OSError, ValueError):
        return ""
    message = body.get("Message") if isinstance(body, dict) else None
    return _one_line(message, token) if isinstance(message, str) else ""


def _retry_after(headers: Any) -> float | None:
    value = (headers.get("Retry-After", "") if headers is not None else "").strip()
    if value.isdigit():
        return float(value)
    if value:
        import email.utils
        import time

        try:
            return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None
    return None


def _one_line(text: str, token: str) -> str:
    """Server text fit for a one-line message: whitespace folded, shortened, and the token never in it."""
    line = " ".join(text.split())[:200]
    return line.replace(token, "[REDACTED]") if token else line


# -- the answer ------------------------------------------------------------------------------------------------

def _refusals(config: Config, repository: str, answer: Any, chunk: list[tuple[str, int]],
              token: str) -> list[Unlinked]:
    """The objects of ``chunk`` that carry an ``error`` in Gitea's answer, which must name every one of them.

    An object counts as linked only when Gitea offers its download: anything else in an answer is refused
    rather than guessed at, since guessing wrong would publish what the check exists to keep back.
    """
    at = f"Gitea at {config.gitea_url} (gitea.url)"
    entries = answer.get("objects") if isinstance(answer, dict) else None
    if not isinstance(entries, list):
        _not_lfs(at, repository)
    answered: dict[tuple[str, int], str | None] = {}
    for entry in entries:
        if not isinstance(entry, dict):
            _not_lfs(at, repository)
        oid, size, error = entry.get("oid"), entry.get("size"), entry.get("error")
        if not isinstance(oid, str) or not isinstance(size, int) or isinstance(size, bool):
            _not_lfs(at, repository)
        if error is not None:
            message = error.get("message") if isinstance(error, dict) else None
            if not isinstance(message, str):
                _not_lfs(at, repository)
            answered[oid, size] = _one_line(message, token) or f"error {error.get('code')}"
        elif isinstance(entry.get("actions"), dict) and "download" in entry["actions"]:
            answered[oid, size] = None
        else:
            _not_lfs(at, repository)
    if any(pair not in answered for pair in chunk):
        _not_lfs(at, repository)
    return [Unlinked(oid, size, why) for (oid, size) in chunk if (why := answered[oid, size]) is not None]
