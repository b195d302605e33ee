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

It also serves ``POST /api/v1/repos/{owner}/{repo}/statuses/{sha}`` as the reference's section 1 says, in
the order of Gitea's middleware: a known token without ``write:repository`` (or ``all``), 403 "token does not
have at least one of required scope(s)..."; an unknown repository, or one the token's user cannot read, 404
(every repository here is private, so a request without a token Gitea knows is a 404 too); a user who may only
read, 403; a body Go's decoder refuses, 422; a commit the repository does not hold (looked up with git in the
repository folder, which Gitea keeps beside its LFS store by default), 500; a state longer than its
``VARCHAR(7)`` column, 500. Otherwise it trims the fields, always adds a row with the next index for
(repository, sha), and answers 201 with ``api.CommitStatus``, whose state key is ``status``. No state is
refused, and no length limit is applied, as Gitea applies none. These errors carry Gitea's ``APIError`` body,
``{"message", "url"}``. ``GET`` on the same path lists a commit's statuses (section 2b): a known token without
``read:repository`` (``write:repository`` or ``all`` imply it), 403 with the same message; an unknown or unreadable
repository, 404; else 200 with every row, newest first, and ``X-Total-Count``. Requests to the API are recorded
in :attr:`GiteaApi.status_requests`, apart from the LFS server's in :attr:`GiteaApi.requests`.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import secrets
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, NamedTuple

from gitea_hf_hook.gitea import isolation

MEDIA_TYPE = "application/vnd.git-lfs+json"
_BATCH = re.compile(r"/([^/]+)/([^/]+)/info/lfs/objects/batch")
_OID = re.compile(r"[a-f\d]{64}")
_STATUSES = re.compile(r"/api/v1/repos/([^/]+)/([^/]+)/statuses/([^/]*)")
_SHA = re.compile(r"[0-9a-fA-F]{4,64}")
WORKER_SCOPES = ("read:repository", "write:repository")  # what the worker's token needs: LFS reads, statuses


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
class Hold:
    """The next request to a path matching ``pattern``, held unanswered: ``arrived`` is set when it comes in,
    and it is served as usual once :meth:`release` is called (or the server stops)."""

    pattern: re.Pattern[str]
    arrived: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)

    def release(self) -> None:
        self.released.set()


@dataclass
class _State:
    lfs_root: Path
    repo_root: Path
    url: str = ""
    tokens: dict[str, str] = field(default_factory=dict)  # token -> user name
    scopes: dict[str, tuple[str, ...]] = field(default_factory=dict)  # token -> its scopes
    readers: set[tuple[str, str]] = field(default_factory=set)  # (user, repository lowercased)
    writers: set[tuple[str, str]] = field(default_factory=set)  # (user, repository lowercased)
    repositories: set[str] = field(default_factory=set)  # lowercased
    rows: dict[tuple[str, str], int] = field(default_factory=dict)  # lfs_meta_object: (repository, oid) -> size
    statuses: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)  # (repository, sha) -> rows
    requests: list[Recorded] = field(default_factory=list)
    status_requests: list[Recorded] = field(default_factory=list)
    failures: list[_Failure] = field(default_factory=list)
    holds: list[Hold] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class GiteaApi:
    """Gitea's LFS batch endpoint and commit-status API on 127.0.0.1, in a daemon thread; ``url`` is its ROOT_URL
    (with the slash). ``repo_root`` holds the repositories, by default beside ``lfs_root`` as in Gitea's own
    defaults (``APP_DATA_PATH/gitea-repositories`` and ``APP_DATA_PATH/lfs``)."""

    def __init__(self, lfs_root: Path, repo_root: Path | None = None) -> None:
        self._state = _State(lfs_root, repo_root or lfs_root.parent / "gitea-repositories")
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
        self._holder: socket.socket | None = None

    @property
    def url(self) -> str:
        return self._state.url

    @property
    def lfs_root(self) -> Path:
        return self._state.lfs_root

    @property
    def requests(self) -> list[Recorded]:
        """What reached the LFS server (and any path that is neither it nor the API), oldest first."""
        with self._state.lock:
            return list(self._state.requests)

    @property
    def status_requests(self) -> list[Recorded]:
        """What reached the API (``/api/v1/...``), oldest first."""
        with self._state.lock:
            return list(self._state.status_requests)

    def statuses(self, repository: str, sha: str) -> list[dict[str, Any]]:
        """Every status row of a commit, oldest first, each as the API answered it when it was created."""
        with self._state.lock:
            return [dict(row) for row in self._state.statuses.get((repository.lower(), sha), [])]

    def add_token(self, user: str, scopes: tuple[str, ...] = WORKER_SCOPES) -> str:
        """A new access token for ``user`` (Gitea's are 40 hex digits) with ``scopes``, made now."""
        token = secrets.token_hex(20)
        with self._state.lock:
            self._state.tokens[token] = user
            self._state.scopes[token] = scopes
        return token

    def grant(self, user: str, repository: str, *, write: bool = True) -> None:
        """Give ``user`` write access to the code of ``repository`` (``owner/name``), which implies read access;
        ``write=False``: read access only."""
        with self._state.lock:
            self._state.repositories.add(repository.lower())
            self._state.readers.add((user, repository.lower()))
            if write:
                self._state.writers.add((user, repository.lower()))
            else:
                self._state.writers.discard((user, repository.lower()))

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

    def hold(self, path: str) -> Hold:
        """Hold the next request whose path matches the regular expression ``path`` (see :class:`Hold`)."""
        hold = Hold(re.compile(path))
        with self._state.lock:
            self._state.holds.append(hold)
        return hold

    def stop(self) -> None:
        """Stop serving, as a Gitea that is down: its port stays bound but not listening, so a connection to it is
        refused, and no other server on the machine can take the port meanwhile (that one would answer instead).
        :meth:`close` frees it. A second call does nothing."""
        if self._stopped:
            return
        self._stopped = True
        with self._state.lock:
            for failure in self._state.failures:
                if failure.stall is not None:
                    failure.stall.set()
            for hold in self._state.holds:
                hold.release()
        self._httpd.shutdown()
        port = self._httpd.server_address[1]
        self._httpd.server_close()
        self._thread.join()
        self._holder = socket.socket()
        self._holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._holder.bind(("127.0.0.1", port))

    def close(self) -> None:
        """Stop serving, if still serving, and free the port: at the end of a test."""
        self.stop()
        holder, self._holder = self._holder, None
        if holder is not None:
            holder.close()


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
        api = self.path.startswith("/api/v1/")
        with self.state.lock:
            (self.state.status_requests if api else self.state.requests).append(Recorded(
                self.command, self.path, self.headers.get("Accept"),
                authorization.split(" ", 1)[0] if authorization else None, payload))
            failure = self.state.failures.pop(0) if self.state.failures else None
            hold = next((h for h in self.state.holds if h.pattern.search(self.path)), None)
            if hold is not None:
                self.state.holds.remove(hold)
        if hold is not None:
            hold.arrived.set()
            hold.released.wait()
        if failure is not None:
            self._fail(failure)
            return
        if api:
            self._api(authorization or "", raw, payload)
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

    # -- the API: commit statuses ---------------------------------------------------------------------------------

    def _api(self, authorization: str, raw: bytes, payload: Any) -> None:
        match = _STATUSES.fullmatch(self.path.split("?", 1)[0])
        if self.command not in ("GET", "POST") or match is None:
            self._api_error(404, "The target couldn't be found.")  # only this route is served here
            return
        owner, name, sha = match.groups()
        listing = self.command == "GET"  # the level rule: GET needs read:repository, POST write:repository
        repository = f"{owner}/{name}".lower()
        token = _token(authorization)
        with self.state.lock:
            user = _user(self.state.tokens, authorization)
            scopes = self.state.scopes.get(token, ()) if user is not None and token is not None else None
            readable = user is not None and (user, repository) in self.state.readers
            writable = user is not None and (user, repository) in self.state.writers
            known = repository in self.state.repositories
        needed = "read:repository" if listing else "write:repository"
        if scopes is not None and not {"all", "write:repository", needed} & set(scopes):  # tokenRequiresScopes
            self._api_error(403, f"token does not have at least one of required scope(s), required=[{needed}],"
                                 f" token scope={','.join(scopes)}")
            return
        if not known or not readable:  # repoAssignment: no such repository, or no access to any of its units
            self._api_error(404, "The target couldn't be found.")
            return
        if listing:
            self._list_statuses(repository, owner, name, sha)
            return
        if not writable:  # reqRepoWriter(unit.TypeCode)
            self._api_error(403, "user should have a permission to write to a repo")
            return
        option = _status_option(payload, raw)
        if option is None:  # bind(api.CreateStatusOption{})
            self._api_error(422, "validationError")
            return
        if not sha:
            self._api_error(400, "sha not given")
            return
        commit = self._commit(owner, name, sha)
        if commit is None or len(option["state"]) > 7:  # GetCommit fails, or the VARCHAR(7) column refuses it
            self._api_error(500, "")
            return
        with self.state.lock:
            rows = self.state.statuses.setdefault((repository, commit), [])
            created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            row = {"id": len(rows) + 1, "status": option["state"], "target_url": option["target_url"],
                   "description": option["description"],
                   "url": f"{self.state.url}api/v1/repos/{owner}/{name}/statuses/{commit}",
                   "context": option["context"], "creator": {"id": 99, "login": user, "username": user},
                   "created_at": created, "updated_at": created}
            rows.append(row)
        self._send(201, (json.dumps(row) + "\n").encode(), "application/json;charset=utf-8")

    def _list_statuses(self, repository: str, owner: str, name: str, sha: str) -> None:
        """``GET .../statuses/{sha}`` (section 2b): every row of the commit, newest first (the default sort), with
        ``X-Total-Count``; a sha the repository does not hold has none."""
        commit = self._commit(owner, name, sha) or sha  # MustConvertToSHA1 leaves what it cannot expand
        with self.state.lock:
            rows = list(reversed(self.state.statuses.get((repository, commit), [])))
        self._send(200, (json.dumps(rows) + "\n").encode(), "application/json;charset=utf-8",
                   {"X-Total-Count": str(len(rows))})

    def _commit(self, owner: str, name: str, sha: str) -> str | None:
        """The full id of commit ``sha`` in the repository, or None when it holds no such commit."""
        if not _SHA.fullmatch(sha):
            return None
        folder = os.path.realpath(self.state.repo_root / owner.lower() / f"{name.lower()}.git")
        # Confined as the worker confines its git: this runs as the tests' user, and some tests plant repository
        # config that would run programs (a lazy fetch of the missing commit, for one) if git were let.
        found = subprocess.run(["git", *isolation.ARGUMENTS, "-c", f"safe.directory={folder}", f"--git-dir={folder}",
                                "rev-parse", "--verify", "--quiet", "--end-of-options", f"{sha}^{{commit}}"],
                               capture_output=True, text=True, env=isolation.environment(os.environ))
        return found.stdout.strip() if found.returncode == 0 else None

    def _api_error(self, status: int, message: str) -> None:
        """Gitea's ``APIError``."""
        body = json.dumps({"message": message, "url": f"{self.state.url}api/swagger"}) + "\n"
        self._send(status, body.encode(), "application/json;charset=utf-8")

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


def _status_option(payload: Any, raw: bytes) -> dict[str, str] | None:
    """``api.CreateStatusOption`` as Go decodes it, its fields trimmed as Gitea trims them; None when the
    decoder would refuse the body. A missing key is the zero value; the state is not checked against a list."""
    if not raw.strip():
        payload = {}
    if not isinstance(payload, dict):
        return None
    option = {}
    for key in ("state", "target_url", "description", "context"):
        value = payload.get(key, "")
        if value is None:
            value = ""
        if not isinstance(value, str):
            return None
        option[key] = value.strip() if key != "state" else value
    return option


def _token(authorization: str) -> str | None:
    """The token an Authorization header carries, however it is sent (see :func:`_user`)."""
    scheme, _, value = authorization.partition(" ")
    if scheme == "token" or scheme.lower() == "bearer":
        return value.strip()
    if scheme.lower() == "basic":
        try:
            user, _, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return user if password in ("", "x-oauth-basic") else password
    return None


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
