"""Gitea's Git LFS batch endpoint, answering as Gitea does, over a real content store on disk.

Gitea cannot run here, so this serves ``POST {ROOT_URL}{owner}/{repo}.git/info/lfs/objects/batch`` the way
``services/lfs/server.go`` does (see the shared Gitea API reference, sections 0 and 5), in this order:

- ``Accept`` whose first ``;``-part is not ``application/vnd.git-lfs+json``: 415.
- a body that is not a batch request: 400; an ``operation`` other than ``download``: 400. Gitea also serves
  ``upload``; this stand-in does not, since the worker only ever asks to download.
- an unknown repository: 404. A token it does not know, or whose user cannot read the repository: 401 with
  ``WWW-Authenticate: Basic realm=gitea-lfs`` (Gitea does not tell the two apart).
- per object: an invalid oid or size, 422 "Oid or size are invalid"; a ``lfs_meta_object`` row of another size,
  422 "Object <oid> is not <size> bytes"; no row for this repository, or no file in the store, 404 "Not Found";
  else a download action carrying the request's Authorization header.

Errors other than per-object ones are Gitea's ``ErrorResponse``, whose JSON key is ``Message``. Any other path
or method gets Gitea's HTML 404 page. Tokens go in ``Authorization: token``, ``Bearer`` or Basic, as Gitea
takes them; the deprecated ``?token=`` query is not served. Repositories exist once granted or linked, and
their names compare case-insensitively, as Gitea's lookup does.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
import threading
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, NamedTuple

MEDIA_TYPE = "application/vnd.git-lfs+json"
_BATCH = re.compile(r"/([^/]+)/([^/]+)/info/lfs/objects/batch")
_OID = re.compile(r"[a-f\d]{64}")


class Recorded(NamedTuple):
    """One request as it arrived: what the tests assert on. ``auth`` is the Authorization scheme, or None."""

    method: str
    path: str
    accept: str | None
    auth: str | None
    payload: Any  # the body as JSON, or None when it is not JSON


@dataclass
class _Failure:
    status: int
    headers: dict[str, str]
    body: bytes | None
    stall: threading.Event | None = None


@dataclass
class _State:
    lfs_root: Path
    url: str = ""
    tokens: dict[str, str] = field(default_factory=dict)  # token -> user name
    readers: set[tuple[str, str]] = field(default_factory=set)  # (user, repository lowercased)
    repositories: set[str] = field(default_factory=set)  # lowercased
    rows: dict[tuple[str, str], int] = field(default_factory=dict)  # lfs_meta_object: (repository, oid) -> size
    requests: list[Recorded] = field(default_factory=list)
    failures: list[_Failure] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class GiteaApi:
    """Gitea's LFS batch endpoint on 127.0.0.1, in a daemon thread; ``url`` is its ROOT_URL (with the slash)."""

    def __init__(self, lfs_root: Path) -> None:
        self._state = _State(lfs_root)
        state = self._state

        class Handler(_Handler):
            pass

        Handler.state = state
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        state.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/"
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), name="gitea-api",
                                        daemon=True)
        self._thread.start()
        self._stopped = False

    @property
    def url(self) -> str:
        return self._state.url

    @property
    def lfs_root(self) -> Path:
        return self._state.lfs_root

    @property
    def requests(self) -> list[Recorded]:
        with self._state.lock:
            return list(self._state.requests)

    def add_token(self, user: str) -> str:
        """A new access token for ``user`` (Gitea's are 40 hex digits), made now."""
        token = secrets.token_hex(20)
        with self._state.lock:
            self._state.tokens[token] = user
        return token

    def grant(self, user: str, repository: str) -> None:
        """Let ``user`` read the code of ``repository`` (``owner/name``)."""
        with self._state.lock:
            self._state.repositories.add(repository.lower())
            self._state.readers.add((user, repository.lower()))

    def link(self, repository: str, oid: str, size: int) -> None:
        """Add the ``lfs_meta_object`` row that an upload to ``repository`` creates."""
        with self._state.lock:
            self._state.repositories.add(repository.lower())
            self._state.rows[repository.lower(), oid] = size

    def fail_next(self, status: int, count: int = 1, *, headers: dict[str, str] | None = None,
                  body: bytes | None = None) -> None:
        """Answer the next ``count`` requests with ``status``: Gitea's ``{"Message": <reason>}`` unless ``body``
        is given (sent as it is, even with a 200)."""
        with self._state.lock:
            self._state.failures.extend(_Failure(status, dict(headers or {}), body) for _ in range(count))

    def stall_next(self) -> None:
        """Read the next request and never answer it, until :meth:`stop`: a Gitea that hangs."""
        with self._state.lock:
            self._state.failures.append(_Failure(0, {}, None, threading.Event()))

    def stop(self) -> None:
        """Stop serving and close the port; a second call does nothing."""
        if self._stopped:
            return
        self._stopped = True
        with self._state.lock:
            for failure in self._state.failures:
                if failure.stall is not None:
                    failure.stall.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()


class _Handler(BaseHTTPRequestHandler):
    state: _State
    server_version = "Gitea"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class names it
        pass  # the tests read self.state.requests, not stderr

    def do_GET(self) -> None:  # noqa: N802 - http.server dispatches on this name
        self._serve()

    def do_PUT(self) -> None:  # noqa: N802
        self._serve()

    def do_POST(self) -> None:  # noqa: N802
        self._serve()

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            payload: Any = json.loads(raw)
        except ValueError:
            payload = None
        authorization = self.headers.get("Authorization")
        with self.state.lock:
            self.state.requests.append(Recorded(self.command, self.path, self.headers.get("Accept"),
                                                authorization.split(" ", 1)[0] if authorization else None,
                                                payload))
            failure = self.state.failures.pop(0) if self.state.failures else None
        if failure is not None:
            self._fail(failure)
            return
        match = _BATCH.fullmatch(self.path)
        if self.command != "POST" or match is None:
            self._send(404, b"<!DOCTYPE html><title>Page Not Found - Gitea</title>\n", "text/html; charset=utf-8")
            return
        if (self.headers.get("Accept") or "").split(";")[0] != MEDIA_TYPE:
            self._status(415)
            return
        objects = _batch_objects(payload)
        if objects is None or payload.get("operation") != "download":
            self._status(400)
            return
        owner, name = match.group(1), match.group(2).removesuffix(".git")
        repository = f"{owner}/{name}".lower()
        with self.state.lock:
            known = repository in self.state.repositories
            user = _user(self.state.tokens, authorization or "")
            readable = user is not None and (user, repository) in self.state.readers
            rows = {oid: size for (repo, oid), size in self.state.rows.items() if repo == repository}
        if not known:
            self._status(404)
            return
        if not readable:
            self._status(401, {"WWW-Authenticate": "Basic realm=gitea-lfs"})
            return
        answer = [self._object(owner, name, oid, size, rows.get(oid), authorization) for oid, size in objects]
        self._send(200, (json.dumps({"objects": answer or None}, separators=(",", ":")) + "\n").encode(),
                   MEDIA_TYPE)

    def _object(self, owner: str, name: str, oid: str, size: int, row: int | None,
                authorization: str | None) -> dict[str, Any]:
        entry: dict[str, Any] = {"oid": oid, "size": size}
        if not _OID.fullmatch(oid) or size < 0:
            entry["error"] = {"code": 422, "message": "Oid or size are invalid"}
        elif row is not None and row != size:
            entry["error"] = {"code": 422, "message": f"Object {oid} is not {size} bytes"}
        elif row is None or not (self.state.lfs_root / oid[0:2] / oid[2:4] / oid[4:]).is_file():
            entry["error"] = {"code": 404, "message": "Not Found"}
        else:
            link: dict[str, Any] = {"href": f"{self.state.url}{owner}/{name}.git/info/lfs/objects/{oid}"}
            if authorization:
                link["header"] = {"Authorization": authorization}
            entry["actions"] = {"download": link}
        return entry

    def _fail(self, failure: _Failure) -> None:
        if failure.stall is not None:
            failure.stall.wait()
            return
        if failure.body is not None:
            self._send(failure.status, failure.body, failure.headers.pop("Content-Type", MEDIA_TYPE),
                       failure.headers)
        else:
            self._status(failure.status, failure.headers)

    def _status(self, status: int, headers: dict[str, str] | None = None) -> None:
        """Gitea's ``writeStatus``: the status text as ``{"Message": ...}``, in the LFS media type."""
        body = json.dumps({"Message": HTTPStatus(status).phrase}) + "\n"
        self._send(status, body.encode(), MEDIA_TYPE, headers)

    def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)


def _batch_objects(payload: Any) -> list[tuple[str, int]] | None:
    """The ``(oid, size)`` pairs of a batch request, or None when Go's decoder would refuse the body.

    A missing key decodes as Go's zero value, as Gitea's does; a key of the wrong type fails the decode.
    """
    if not isinstance(payload, dict) or not isinstance(payload.get("operation", ""), str):
        return None
    entries = payload.get("objects")
    if entries is None:
        entries = []
    if not isinstance(entries, list):
        return None
    objects = []
    for entry in entries:
        if not isinstance(entry, dict):
            return None
        oid, size = entry.get("oid", ""), entry.get("size", 0)
        if not isinstance(oid, str) or not isinstance(size, int) or isinstance(size, bool):
            return None
        objects.append((oid, size))
    return objects


def _user(tokens: dict[str, str], authorization: str) -> str | None:
    """Whose token the header carries: ``token <T>`` (case-sensitive word), ``Bearer <T>`` (any case), or Basic
    with the token as password, or as user name with an empty or ``x-oauth-basic`` password."""
    scheme, _, value = authorization.partition(" ")
    if scheme == "token" or scheme.lower() == "bearer":
        return tokens.get(value.strip())
    if scheme.lower() == "basic":
        try:
            user, _, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        if password in ("", "x-oauth-basic"):
            return tokens.get(user)
        return user if tokens.get(password) == user else None
    return None
