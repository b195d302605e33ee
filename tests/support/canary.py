"""A canary listener: an HTTP server on 127.0.0.1 that records every request it is sent and answers 404.

Point at it whatever an attacker would redirect (a Hub endpoint, Gitea's URL, a git remote) and assert afterwards
that nothing, and in particular no token, ever reached it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple

import pytest


class Heard(NamedTuple):
    """One request as it arrived: its request line's method and path, every header, and the body's bytes."""

    method: str
    path: str
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def carries(self, secret: str) -> bool:
        """Whether ``secret`` appears anywhere in the request: path, a header or the body."""
        return secret in self.path or any(secret in f"{k}: {v}" for k, v in self.headers) \
            or secret.encode() in self.body


class _Handler(BaseHTTPRequestHandler):
    heard: list[Heard]
    lock: threading.Lock

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class names it
        pass  # the tests read what was heard, not stderr

    def _record(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        with self.lock:
            self.heard.append(Heard(self.command, self.path, tuple(self.headers.items()), body))
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # A request line http.server cannot parse is still something that reached the canary.
        with self.lock:
            self.heard.append(Heard(self.command or "", getattr(self, "path", ""), (),
                                    getattr(self, "raw_requestline", b"")))
        super().send_error(code, message, explain)

    # http.server dispatches on these names.
    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_CONNECT = _record  # noqa: N815


class Canary:
    """The listener, serving from a daemon thread until :meth:`stop`; ``url`` has no trailing slash."""

    def __init__(self) -> None:
        heard: list[Heard] = []

        class Handler(_Handler):
            pass

        Handler.heard, Handler.lock = heard, threading.Lock()
        self._heard, self._lock = heard, Handler.lock
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), name="canary", daemon=True)
        self._thread.start()
        self._stopped = False

    @property
    def heard(self) -> list[Heard]:
        """Every request received so far, oldest first."""
        with self._lock:
            return list(self._heard)

    def stop(self) -> None:
        """Stop serving and close the port; a second call does nothing."""
        if not self._stopped:
            self._stopped = True
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join()


@pytest.fixture(name="canary")
def canary_fixture() -> Iterator[Canary]:
    """A canary listener for one test."""
    listener = Canary()
    try:
        yield listener
    finally:
        listener.stop()
