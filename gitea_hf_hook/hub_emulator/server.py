"""The emulator application: configuration, authentication, routing, test-control endpoints, and ``serve``.

Routes match the raw (still percent-encoded) request path, because the client percent-encodes revisions
(``refs%2Fpr%2F1``) and tree paths (``sub%2Fdir``) into single segments; handlers unquote the pieces.
"""

from __future__ import annotations

import re
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import api_files, api_repos, transfers
from .auth import Principal, TokenTable, principal_from_json
from .errors import HubError, repo_not_found
from .faults import Fault, FaultInjector, RequestLog, Stats
from .httpbase import EmulatorHTTPServer, Request, Response, json_response
from .model import Repo, RepoKey
from .storage import Store

MiB = 1024 * 1024


@dataclass
class EmulatorConfig:
    """Tunables. Small values let tests exercise pagination and multipart uploads with little data."""

    page_size: int = 1000                   # entries per page of tree and commit listings
    multipart_threshold: int = 64 * MiB     # LFS objects larger than this are offered multipart transfer
    chunk_size: int = 16 * MiB              # part size of multipart transfers
    orgs: list[str] = field(default_factory=list)  # organisations every user belongs to (whoami)
    verbose: bool = False                   # access log on stderr (redacted)


Handler = Callable[..., Response]
_T = r"(?P<t>models|datasets|spaces)/(?P<ns>[^/]+)/(?P<name>[^/]+)"
_GIT = r"(?:(?P<t>datasets|spaces)/)?(?P<ns>[^/]+)/(?P<name>[^/]+)"


class Emulator:
    """Everything a request handler needs: the store, tokens, configuration and test instrumentation."""

    def __init__(self, data_dir: str, tokens: list[str], config: EmulatorConfig | None = None) -> None:
        self.config = config or EmulatorConfig()
        if self.config.page_size < 1 or self.config.chunk_size < 1:
            raise ValueError("page_size and chunk_size must be positive")
        self.tokens = TokenTable(tokens)
        self.store = Store(data_dir)
        self.store.clear_tmp()
        self.faults = FaultInjector()
        self.log = RequestLog()
        self.stats = Stats()
        self.uploads = transfers.UploadRegistry()
        self.routes: list[tuple[re.Pattern[str], dict[str, Handler]]] = [
            (re.compile(pattern), methods) for pattern, methods in self._route_table()
        ]

    def _route_table(self) -> list[tuple[str, dict[str, Handler]]]:
        return [
            (r"^/api/whoami-v2$", {"GET": api_repos.whoami}),
            (r"^/api/repos/create$", {"POST": api_repos.create_repo}),
            (r"^/api/repos/delete$", {"DELETE": api_repos.delete_repo}),
            (r"^/api/validate-yaml$", {"POST": api_repos.validate_yaml}),
            (rf"^/api/{_T}(?:/revision/(?P<rev>.+))?$", {"GET": api_repos.repo_info}),
            (rf"^/api/{_T}/settings$", {"PUT": api_repos.update_settings}),
            (rf"^/api/{_T}/refs$", {"GET": api_repos.list_refs}),
            (rf"^/api/{_T}/commits/(?P<rev>.+)$", {"GET": api_repos.list_commits}),
            (rf"^/api/{_T}/branch/(?P<branch>.+)$",
             {"POST": api_repos.create_branch, "DELETE": api_repos.delete_branch}),
            (rf"^/api/{_T}/tag/(?P<rev>.+)$", {"POST": api_repos.create_tag, "DELETE": api_repos.delete_tag}),
            (rf"^/api/{_T}/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?$", {"GET": api_files.list_tree}),
            (rf"^/api/{_T}/paths-info/(?P<rev>.+)$", {"POST": api_files.paths_info}),
            (rf"^/api/{_T}/preupload/(?P<rev>.+)$", {"POST": api_files.preupload}),
            (rf"^/api/{_T}/commit/(?P<rev>.+)$", {"POST": api_files.commit}),
            (rf"^/{_GIT}\.git/info/lfs/objects/batch$", {"POST": transfers.batch}),
            (rf"^/{_GIT}\.git/info/lfs/objects/verify$", {"POST": transfers.verify}),
            (r"^/lfs-uploads/(?P<upload_id>[A-Za-z0-9_-]+)$",
             {"PUT": transfers.put_object, "POST": transfers.complete_multipart}),
            (r"^/lfs-uploads/(?P<upload_id>[A-Za-z0-9_-]+)/(?P<part>[0-9]+)$", {"PUT": transfers.put_part}),
            (rf"^/{_GIT}/resolve/(?P<rev>[^/]+)/(?P<path>.+)$",
             {"GET": api_files.resolve, "HEAD": api_files.resolve}),
            (r"^/_emulator/faults$", {"GET": _faults_get, "POST": _faults_post, "DELETE": _faults_delete}),
            (r"^/_emulator/requests$", {"GET": _requests_get, "DELETE": _requests_delete}),
            (r"^/_emulator/stats$", {"GET": _stats_get}),
            (r"^/_emulator/tokens$", {"POST": _tokens_post}),
        ]

    # -- dispatch -------------------------------------------------------------------------------------------

    def handle(self, req: Request) -> Response:
        """Authenticate and route one request."""
        self._authenticate(req)
        for pattern, methods in self.routes:
            match = pattern.match(req.raw_path)
            if match is None:
                continue
            handler = methods.get(req.method)
            if handler is None:
                raise HubError(405, f"Method {req.method} not allowed here", headers={"Allow": ", ".join(methods)})
            if req.raw_path.startswith("/_emulator/"):
                self.require_user(req)
            return handler(self, req, **{k: v for k, v in match.groupdict().items() if v is not None})
        raise HubError(404, f"Not found: {req.raw_path}")

    def _authenticate(self, req: Request) -> None:
        value = req.headers.get("Authorization") or ""
        scheme, _, token = value.partition(" ")
        if value:
            req.token_given = True
            if scheme.lower() == "bearer" and token.strip():
                req.principal = self.tokens.lookup(token.strip())

    # -- authorisation helpers used by the routes ------------------------------------------------------------

    def require_user(self, req: Request, write: bool = False) -> Principal:
        """The caller, or 401 (no or unknown token) / 403 (read-only token on a write)."""
        if req.principal is None:
            if req.token_given:
                # This exact message keeps the client from reporting a bad token as RepositoryNotFoundError.
                raise HubError(401, "Invalid credentials in Authorization header")
            raise HubError(401, "Authorization header is required")
        if write and req.principal.role == "read":
            raise HubError(403, "This token does not have write access")
        return req.principal

    def require_write(self, req: Request, key: RepoKey) -> Principal:
        """The caller, if its token may write ``key``: a fine-grained token only where its scopes say
        ``repo.write`` (its namespace, or the repository itself); else 401 or 403."""
        principal = self.require_user(req, write=True)
        if not principal.can_write(key.type, key.namespace, key.name):
            raise HubError(403, f"This token does not have write access to {key.repo_id}")
        return principal

    def readable_repo(self, req: Request, key: RepoKey) -> Repo:
        """A repository the caller may read: public ones anonymously, private ones with a valid token."""
        if req.token_given and req.principal is None:
            self.require_user(req)
        repo = self.store.get(key)
        if repo is None or (repo.private and req.principal is None):
            raise repo_not_found(key.repo_id)
        return repo

    def writable_repo(self, req: Request, key: RepoKey) -> tuple[Repo, Principal]:
        """A repository the caller may write to, with the caller."""
        principal = self.require_write(req, key)
        return self.store.require(key), principal


# -- /_emulator/* ----------------------------------------------------------------------------------------------

def _faults_get(app: Emulator, req: Request) -> Response:
    return json_response({"faults": app.faults.list()})


def _faults_post(app: Emulator, req: Request) -> Response:
    payload: Any = req.json()
    rules = [Fault.from_json(item) for item in (payload if isinstance(payload, list) else [payload])]
    app.faults.add(rules)
    return json_response({"faults": app.faults.list()})


def _faults_delete(app: Emulator, req: Request) -> Response:
    app.faults.clear()
    return json_response({"faults": []})


def _requests_get(app: Emulator, req: Request) -> Response:
    return json_response({"requests": app.log.entries()})


def _requests_delete(app: Emulator, req: Request) -> Response:
    app.log.clear()
    return json_response({"requests": []})


def _tokens_post(app: Emulator, req: Request) -> Response:
    """Accept one more token, with the role, scopes and creation date whoami-v2 reports for it (see
    :func:`.auth.principal_from_json`): how tests make fine-grained, classic and old tokens."""
    try:
        token, principal = principal_from_json(req.json(), time.time())
    except ValueError as exc:
        raise HubError(400, str(exc)) from None
    app.tokens.add(token, principal)
    return json_response({"user": principal.user, "role": principal.role})


def _stats_get(app: Emulator, req: Request) -> Response:
    data = app.stats.to_json()
    data["repos"] = len(app.store.all_repos())
    return json_response(data)


# -- entry points ----------------------------------------------------------------------------------------------

def make_server(host: str, port: int, data_dir: str, tokens: list[str],
                config: EmulatorConfig | None = None) -> EmulatorHTTPServer:
    """Bind (port 0 picks a free port) without serving yet; ``server.server_address`` gives the real port."""
    if not tokens:
        raise ValueError("at least one token is required")
    return EmulatorHTTPServer((host, port), Emulator(data_dir, tokens, config))


def server_url(server: EmulatorHTTPServer) -> str:
    """``http://host:port`` of a bound server."""
    host, port = server.server_address[:2]
    host = f"[{host!s}]" if ":" in str(host) else str(host)
    return f"http://{host}:{port}"


def _announce(url: str) -> None:
    sys.stdout.write(f"hub-emulator listening on {url}\n")
    sys.stdout.flush()


def serve(host: str, port: int, data_dir: str, tokens: list[str], *, page_size: int = 1000,
          multipart_threshold: int = 64 * MiB, chunk_size: int = 16 * MiB, orgs: list[str] | None = None,
          verbose: bool = False, on_ready: Callable[[str], None] | None = _announce) -> None:
    """Run the emulator until SIGTERM/SIGINT (or ``shutdown``), then return.

    ``tokens`` are specifications ``TOKEN``, ``USER=TOKEN`` or ``USER=TOKEN:read``. Once bound, ``on_ready``
    receives the base URL; by default it prints ``hub-emulator listening on URL`` to stdout (flushed).
    """
    config = EmulatorConfig(page_size=page_size, multipart_threshold=multipart_threshold,
                            chunk_size=chunk_size, orgs=list(orgs or []), verbose=verbose)
    server = make_server(host, port, data_dir, tokens, config)

    def stop(signum: int, frame: object) -> None:
        # shutdown() waits for serve_forever() to return, which runs in this very thread: do it elsewhere.
        threading.Thread(target=server.shutdown, daemon=True).start()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
    try:
        if on_ready is not None:
            on_ready(server_url(server))
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
