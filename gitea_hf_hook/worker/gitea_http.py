"""Requests to Gitea's API with a deadline for the whole exchange, and no redirect ever followed.

A socket timeout bounds each read, not the exchange: a server that sends one byte a second holds a reader for as
long as it likes. Whoever runs Gitea can answer at ``gitea.url``, and the worker asks it while it holds a
target's lock, so every connection made here is shut down when the deadline passes, wherever the reader is
blocked: in the connect, the headers or the body. The reader then sees a failed read and raises; ``Deadline``
says whether that was the deadline.

A redirect would carry the Authorization header to wherever it points, so a 3xx surfaces as an HTTPError.
"""

from __future__ import annotations

import http.client
import socket
import threading
import urllib.request
from typing import Any


class Deadline:
    """Shuts down every connection opened through :meth:`opener` once ``seconds`` have passed."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.passed = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> Deadline:
        self._timer.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._timer.cancel()

    def _expire(self) -> None:
        with self._lock:
            self.passed = True
            for sock in self._sockets:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass  # already closed

    def _connect(self, *args: Any, **kwargs: Any) -> socket.socket:
        """``socket.create_connection``, watched from the moment it is connected: a TLS handshake is read from
        it too, and could be sent one byte at a time as well."""
        sock = socket.create_connection(*args, **kwargs)
        with self._lock:
            self._sockets.append(sock)
            if self.passed:
                sock.shutdown(socket.SHUT_RDWR)
        return sock

    def opener(self) -> urllib.request.OpenerDirector:
        deadline = self

        class Connection(http.client.HTTPConnection):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                self._create_connection = deadline._connect

        class SecureConnection(http.client.HTTPSConnection):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                self._create_connection = deadline._connect

        class Plain(urllib.request.HTTPHandler):
            def http_open(self, req: Any) -> Any:
                return self.do_open(Connection, req)

        class Secure(urllib.request.HTTPSHandler):
            def https_open(self, req: Any) -> Any:
                return self.do_open(SecureConnection, req, context=self._context)  # type: ignore[attr-defined]

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args: Any, **kwargs: Any) -> None:
                return None

        return urllib.request.build_opener(Plain(), Secure(), NoRedirect())
