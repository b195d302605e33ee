"""The worker's connection to the Hub: its token, a client with timeouts that fails fast, and Hub errors as
PublishError.

Only the publisher imports this module, and only inside functions: it pulls in httpx2 and huggingface_hub,
which the git hooks and the CLI must not pay for.

Two things the client does by itself do not suit a worker. It has no timeout on most calls, so a hung server
hangs the worker. And it retries 408, 429, 5xx and network errors up to five times, sleeping 1 to 8 seconds
between tries, inside the call. The worker owns retries and backoff, and must not sleep inside a publish. So
while a publish runs, every request gets ``worker.timeout_seconds`` and any answer the client would retry
becomes :class:`HubUnavailable` straight away. Outside a publish the client behaves as shipped.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

import httpx2

from ..config.model import Config
from ..errors import PublishError
from ..redact import HUB_MESSAGE_LIMIT, MESSAGE_LIMIT, clean
from . import token_file

# What huggingface_hub's http_backoff retries by itself (utils/_http.py, _DEFAULT_RETRY_ON_STATUS_CODES).
RETRIED_STATUSES = (408, 429, 500, 502, 503, 504)
ERROR_BODY_LIMIT = 64 * 1024  # bytes of an answer to a retried status read for its message


class HubUnavailable(Exception):
    """The Hub did not answer, or answered with a status worth retrying later."""

    def __init__(self, message: str, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


# -- token -----------------------------------------------------------------------------------------------------

def token_key(config: Config, hub_repo: str) -> str:
    """The ``hub.tokens`` key that applies to ``hub_repo``: its namespace, else ``*``."""
    namespace = hub_repo.split("/", 1)[0]
    return namespace if namespace in config.hub_tokens else "*"


def read_token(config: Config, hub_repo: str) -> str:
    """The token for ``hub_repo``'s namespace, read from its file now (so a rotated token needs no restart)."""
    namespace = hub_repo.split("/", 1)[0]
    key = token_key(config, hub_repo)
    path = config.hub_tokens.get(key)
    if path is None:
        raise PublishError(f"no Hub token for namespace {namespace}: hub.tokens has no entry {namespace!r} "
                           f"and no '*' fallback in {config.path}",
                           f"add hub.tokens.{namespace}: /path/to/token-file, holding a token with write access")
    return token_file.read(path, f"hub.tokens.{key}", kind="Hub token file",
                           hint="write a Hub token with write access into it")


# -- client ----------------------------------------------------------------------------------------------------

_lock = threading.Lock()
_active = 0
_timeout = 60.0
_installed = False


def _retry_after(headers: httpx2.Headers) -> float | None:
    value = headers.get("Retry-After", "").strip()
    if value.isdigit():
        return float(value)
    # The Hub's rate limiter also answers "RateLimit: ...;t=N" (seconds until the window resets).
    match = re.search(r"\bt=(\d+)", headers.get("RateLimit", ""))
    return float(match.group(1)) if match else None


def _error_body(response: httpx2.Response) -> bytes:
    """The start of an error answer's body: an error page has no business being large, and a hostile one must not
    fill the worker's memory."""
    body = b""
    for chunk in response.iter_bytes():
        body += chunk
        if len(body) >= ERROR_BODY_LIMIT:
            break
    return body[:ERROR_BODY_LIMIT]


def _server_message(headers: httpx2.Headers, body: bytes, token: str) -> str:
    """What the Hub said about a failure, scrubbed (see :func:`scrub`): it lands in job files, ``queue show`` and
    the log. ``token`` is the one the request carried."""
    message = headers.get("X-Error-Message", "")
    if not message:
        try:
            data = json.loads(body)
            message = str(data.get("error") or data.get("message") or "") if isinstance(data, dict) else ""
        except (ValueError, RecursionError):  # not JSON, cut short by ERROR_BODY_LIMIT, or nested too deep
            message = ""
    return scrub(message, token, HUB_MESSAGE_LIMIT)


class _GuardedStream(httpx2.SyncByteStream):
    """A response body whose network errors surface as HubUnavailable, which the client does not retry."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self.inner
        except httpx2.TransportError as exc:
            raise HubUnavailable(f"the connection to the Hub failed ({type(exc).__name__})") from None

    def close(self) -> None:
        self.inner.close()


class _FailFast(httpx2.BaseTransport):
    """Wraps the client's transport: a timeout on every request, and no retry loop, while a publish runs."""

    def __init__(self, inner: httpx2.BaseTransport) -> None:
        self.inner = inner

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        if not _active:
            return self.inner.handle_request(request)
        t = _timeout
        request.extensions["timeout"] = {"connect": t, "read": t, "write": t, "pool": t}
        try:
            response = self.inner.handle_request(request)
        except httpx2.TimeoutException:
            raise HubUnavailable(f"the Hub did not answer within {t:g} s (worker.timeout_seconds)") from None
        except httpx2.TransportError as exc:
            raise HubUnavailable(f"cannot reach the Hub ({type(exc).__name__})") from None
        if response.status_code in RETRIED_STATUSES:
            try:
                body = _error_body(response)
                token = request.headers.get("Authorization", "").rpartition(" ")[2]
                message = _server_message(response.headers, body, token)
            except httpx2.TransportError:
                message = ""
            finally:
                response.close()
            raise HubUnavailable(f"the Hub answered {response.status_code}" + (f": {message}" if message else ""),
                                 response.status_code, _retry_after(response.headers))
        response.stream = _GuardedStream(response.stream)
        return response

    def close(self) -> None:
        self.inner.close()


def _client_factory() -> httpx2.Client:
    from huggingface_hub.utils._http import default_client_factory

    # Built as the client builds it (event hooks, redirects, proxies from the environment), then each
    # transport wrapped: passing transport= instead would drop the proxies httpx2 reads from the environment.
    client = default_client_factory()
    client._transport = _FailFast(client._transport)
    client._mounts = {pattern: None if t is None else _FailFast(t) for pattern, t in client._mounts.items()}
    return client


def prepare(config: Config) -> None:
    """Apply ``hub.xet`` and install the fail-fast client; call before any other use of huggingface_hub."""
    global _installed
    if config.hub_xet == "off":
        os.environ["HF_HUB_DISABLE_XET"] = "1"  # read when huggingface_hub is imported
    from huggingface_hub import constants
    from huggingface_hub.utils._http import set_client_factory

    if config.hub_xet == "off":
        constants.HF_HUB_DISABLE_XET = True  # and this is re-read on every upload, even if imported earlier
    with _lock:
        if not _installed:
            set_client_factory(_client_factory)
            _installed = True


@contextmanager
def session(timeout: float) -> Iterator[None]:
    """While inside, Hub requests time out after ``timeout`` seconds and are never retried by the client."""
    global _active, _timeout
    with _lock:
        _active += 1
        _timeout = timeout
    try:
        yield
    finally:
        with _lock:
            _active -= 1


def make_api(endpoint: str, token: str) -> Any:
    """The real client (the default ``api_factory``)."""
    from huggingface_hub import HfApi

    return HfApi(endpoint=endpoint, token=token)


def commits(api: Any, token: str, repo_id: str, repo_type: str, revision: str) -> Iterator[dict[str, Any]]:
    """The Hub commits of ``revision``, newest first, one page at a time: callers stop early."""
    from huggingface_hub.utils._headers import build_hf_headers
    from huggingface_hub.utils._pagination import paginate

    url = f"{api.endpoint}/api/{repo_type}s/{repo_id}/commits/{quote(revision, safe='')}"
    yield from paginate(url, params={}, headers=build_hf_headers(token=token))


# -- errors ----------------------------------------------------------------------------------------------------

def scrub(text: str, token: str, limit: int = MESSAGE_LIMIT) -> str:
    """A message quoting the Hub or the client, as a PublishError may carry it: without ``token`` (whatever its
    shape), then cleaned (one printable line of at most ``limit`` characters, nothing token-shaped; see
    :func:`..redact.clean`). The token goes first: cut in two by the bound, it would no longer be recognised."""
    return clean(text.replace(token, "[REDACTED]") if token else text, limit)


def as_publish_error(exc: BaseException, doing: str, *, token: str, token_hint: str) -> PublishError | None:
    """``exc`` from a Hub call as a PublishError (retryable or not), or None when it is not a Hub failure."""
    from huggingface_hub.errors import HfHubHTTPError

    if isinstance(exc, HubUnavailable):
        return PublishError(scrub(f"{doing}: {exc}", token), "the worker will try again",
                            retryable=True, retry_after=exc.retry_after)
    if isinstance(exc, httpx2.TransportError):
        return PublishError(scrub(f"{doing}: cannot reach the Hub ({type(exc).__name__})", token),
                            "the worker will try again", retryable=True)
    if not isinstance(exc, HfHubHTTPError):
        return None
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", 0)
    # The Hub's own words, bounded on their own (so what the worker was doing always fits), and cut only once the
    # token is out: a token cut in two is no longer recognised.
    said = scrub(exc.server_message or (str(exc).splitlines() or [""])[0], token, HUB_MESSAGE_LIMIT)
    message = scrub(f"{doing}: the Hub answered {status}: {said}", token)
    if status in RETRIED_STATUSES:
        return PublishError(message, "the worker will try again", retryable=True,
                            retry_after=_retry_after(response.headers) if response is not None else None)
    if status == 412:
        return PublishError(scrub(f"{doing}: the Hub branch moved while publishing (someone else committed): "
                                   f"{said}", token), "the worker will try again on the new head", retryable=True)
    if status == 401:
        return PublishError(message, f"the Hub refused the token: put a valid token in {token_hint}")
    if status == 403:
        return PublishError(message, f"the token in {token_hint} needs write access to this repository")
    return PublishError(message, "fix the cause above, then push again or requeue the job")
