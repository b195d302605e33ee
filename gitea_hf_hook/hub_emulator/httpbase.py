"""HTTP plumbing: request bodies (Content-Length or chunked), responses, and the handler that dispatches to the app.

Handlers of the app never write to the socket: they return a :class:`Response`, and this module writes it,
records it in the request log, and turns a :class:`HubError` into the JSON error answer the client expects.
"""

from __future__ import annotations

import json
import socket
import sys
import time
import traceback
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import BufferedIOBase
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from .auth import Principal, redact
from .errors import HubError, bad_request

if TYPE_CHECKING:
    from .server import Emulator


_DRAIN_LIMIT = 64 * 1024 * 1024


@dataclass
class Response:
    """What a route answers. ``body`` may be an iterator of chunks, then ``length`` must be given."""

    status: int = 200
    body: bytes | Iterable[bytes] = b""
    headers: dict[str, str] = field(default_factory=dict)
    length: int | None = None


def json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON answer."""
    data = json.dumps(payload).encode()
    return Response(status, data, {"Content-Type": "application/json; charset=utf-8", **(headers or {})})


def error_response(error: HubError) -> Response:
    """The Hub's error shape: JSON ``{"error": ...}`` plus ``X-Error-Code``/``X-Error-Message`` headers."""
    headers = dict(error.headers)
    if error.code:
        headers["X-Error-Code"] = error.code
    # Header values must be latin-1; the message is informative only, so strip what does not fit.
    headers["X-Error-Message"] = error.message.encode("ascii", "replace").decode()[:500].replace("\n", " ")
    return json_response({"error": error.message}, error.status, headers)


class _Body:
    """The request body, read on demand from Content-Length or chunked transfer encoding."""

    def __init__(self, rfile: BufferedIOBase, headers: Any) -> None:
        self._rfile = rfile
        self._chunked = "chunked" in (headers.get("Transfer-Encoding") or "").lower()
        self._left = int(headers.get("Content-Length") or 0) if not self._chunked else 0
        self._chunk_left = 0
        self.done = not self._chunked and self._left == 0

    def read(self, size: int = 1 << 20) -> bytes:
        """Up to ``size`` bytes, ``b""`` at the end."""
        if self.done:
            return b""
        if not self._chunked:
            data = self._rfile.read(min(size, self._left))
            if not data:
                raise bad_request("request body ended early")
            self._left -= len(data)
            self.done = self._left == 0
            return data
        if self._chunk_left == 0:
            line = self._rfile.readline(1024).split(b";")[0].strip()
            try:
                self._chunk_left = int(line, 16)
            except ValueError:
                raise bad_request("malformed chunked request body") from None
            if self._chunk_left == 0:
                while self._rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                self.done = True
                return b""
        data = self._rfile.read(min(size, self._chunk_left))
        if not data:
            raise bad_request("request body ended early")
        self._chunk_left -= len(data)
        if self._chunk_left == 0:
            self._rfile.readline(16)  # CRLF closing the chunk
        return data

    def chunks(self) -> Iterator[bytes]:
        """Every remaining piece of the body."""
        while data := self.read():
            yield data

    def drain(self, limit: int) -> bool:
        """Read and drop what is left, up to ``limit`` bytes; True when the body is now fully read."""
        if not self._chunked and self._left > limit:
            return False
        try:
            while not self.done and limit > 0:
                limit -= len(self.read())
        except (HubError, OSError):
            return False
        return self.done


class Request:
    """One request as the routes see it: method, raw path, query, headers, body and the caller's identity."""

    def __init__(self, handler: Handler) -> None:
        self.method = handler.command
        split = urlsplit(handler.path)
        self.raw_path = split.path  # still percent-encoded: routes split on "/" before unquoting
        self.raw_target = handler.path
        self.query = parse_qs(split.query, keep_blank_values=True)
        self.headers = handler.headers
        self.body = _Body(handler.rfile, handler.headers)
        host = handler.headers.get("Host") or "{}:{}".format(*handler.server.server_address[:2])
        self.base_url = f"http://{host}"
        self.principal: Principal | None = None
        self.token_given = False  # a token was sent, whether valid or not

    def arg(self, name: str, default: str | None = None) -> str | None:
        """First value of a query parameter."""
        values = self.query.get(name)
        return values[0] if values else default

    def read_all(self, limit: int = 2 << 30) -> bytes:
        """The whole body."""
        parts, total = [], 0
        for data in self.body.chunks():
            total += len(data)
            if total > limit:
                raise HubError(413, "request body too large")
            parts.append(data)
        return b"".join(parts)

    def json(self) -> Any:
        """The body parsed as JSON (400 when it is not)."""
        raw = self.read_all()
        try:
            return json.loads(raw or b"null")
        except ValueError:
            raise bad_request("request body is not valid JSON") from None


class Handler(BaseHTTPRequestHandler):
    """Dispatches every method to ``server.app`` and writes its :class:`Response`."""

    protocol_version = "HTTP/1.1"  # keep-alive: the client pools connections
    # Headers and body go out as two writes; with Nagle's algorithm the body waits for the client's delayed
    # ACK, about 40 ms on every answer, which would dwarf what the emulator stands in for.
    disable_nagle_algorithm = True
    server: EmulatorHTTPServer

    def do_GET(self) -> None:  # noqa: N802 (http.server naming)
        """Every method goes through the same dispatch."""
        self._dispatch()

    do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_GET

    def _dispatch(self) -> None:
        app = self.server.app
        request = Request(self)
        control = request.raw_path.startswith("/_emulator/")
        fault = None if control else app.faults.take(request.method, request.raw_target)
        status: int | None
        try:
            if fault is not None:
                app.stats.bump("faults_injected")
                if fault.delay:
                    time.sleep(fault.delay)
            if fault is not None and (fault.drop or fault.status is not None):
                for _ in request.body.chunks():
                    pass  # read the request fully, so the client sees a clean close or answer
                if fault.drop:
                    self._drop()
                    status = None
                else:
                    headers = dict(fault.headers)
                    if fault.retry_after is not None:
                        headers["Retry-After"] = str(fault.retry_after)
                    err = HubError(fault.status or 500, "injected fault", fault.error_code, headers)
                    status = self._write(request, error_response(err))
            else:
                try:
                    response = app.handle(request)
                except HubError as err:
                    response = error_response(err)
                except Exception as exc:  # noqa: BLE001 - the emulator must answer, not hang the client
                    traceback.print_exc(file=sys.stderr)
                    response = error_response(HubError(500, f"emulator error: {type(exc).__name__}"))
                if fault is not None and fault.drop_after:
                    # The request took effect; only its answer is lost. Read what the route left of the body,
                    # so the client sees a clean close rather than a reset.
                    request.body.drain(_DRAIN_LIMIT)
                    close = getattr(response.body, "close", None)
                    if callable(close):
                        close()  # a streamed body (an open file) is never sent
                    self._drop()
                    status = None
                else:
                    status = self._write(request, response)
        except (TimeoutError, BrokenPipeError, ConnectionResetError):
            self.close_connection = True
            status = None
        if not control:
            app.stats.bump("requests")
            app.log.add(request.method, redact(request.raw_target), status, fault is not None)

    def _drop(self) -> None:
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _write(self, request: Request, response: Response) -> int:
        # An unread body would be parsed as the next request on this connection. Read it when reasonably
        # small (a client still sending when we close sees a network error, not our answer); else close.
        if not request.body.done and not request.body.drain(_DRAIN_LIMIT):
            self.close_connection = True
        body = response.body
        length = len(body) if isinstance(body, (bytes, bytearray)) else response.length
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(length or 0))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if request.method != "HEAD":
            if isinstance(body, (bytes, bytearray)):
                self.wfile.write(body)
            else:
                for chunk in body:
                    self.wfile.write(chunk)
        self.wfile.flush()
        return response.status

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (signature of the base class)
        """Access log on stderr when verbose; redacted, since paths or errors could carry a token."""
        if self.server.app.config.verbose:
            sys.stderr.write(redact(f"hub-emulator: {self.address_string()} {format % args}\n"))


class EmulatorHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server carrying the emulator app its handlers dispatch to."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], app: Emulator) -> None:
        self.app = app
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, Handler)
