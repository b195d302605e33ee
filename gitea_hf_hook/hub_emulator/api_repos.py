"""Repository-level routes: whoami, create/delete/settings, repo info, refs, commit listing, branches, tags,
and README metadata validation."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlencode

from .errors import bad_request
from .httpbase import Request, Response, json_response
from .model import REPO_TYPES, RepoKey, repo_key

if TYPE_CHECKING:
    from .server import Emulator

_SPACE_SDKS = ("gradio", "streamlit", "docker", "static")


def _truthy(value: str | None) -> bool:
    return (value or "").lower() in ("1", "true", "yes")


def paged(req: Request, items: list[Any], page_size: int, param: str = "cursor",
          on_page: Callable[[list[Any]], None] | None = None) -> Response:
    """One page of ``items`` with a ``Link: <url>; rel="next"`` header when more follow, as the Hub paginates.

    The page position travels in the query parameter ``param``; the other parameters are kept as sent.
    ``on_page`` may enrich the entries of the page in place (costly details are computed for one page only).
    """
    try:
        start = int(req.arg(param) or 0)
    except ValueError:
        raise bad_request(f"invalid {param}") from None
    page = items[start:start + page_size]
    if on_page is not None:
        on_page(page)
    headers = {}
    if start + page_size < len(items):
        query = [(k, v) for k, values in req.query.items() if k != param for v in values]
        query.append((param, str(start + page_size)))
        headers["Link"] = f'<{req.base_url}{req.raw_path}?{urlencode(query)}>; rel="next"'
    return json_response(page, headers=headers)


def whoami(app: Emulator, req: Request) -> Response:
    """``GET /api/whoami-v2``."""
    principal = app.require_user(req)
    uid = hashlib.sha1(principal.user.encode()).hexdigest()[:24]
    return json_response({
        "type": "user", "id": uid, "name": principal.user, "fullname": principal.user,
        "email": f"{principal.user}@users.noreply.invalid", "emailVerified": True, "isPro": False,
        "canPay": False, "avatarUrl": "", "periodEnd": None,
        "orgs": [{"type": "org", "name": org, "fullname": org, "roleInOrg": "admin",
                  "id": hashlib.sha1(org.encode()).hexdigest()[:24]} for org in app.config.orgs],
        "auth": {"type": "access_token", "accessToken": principal.access_token()},
    })


def _repo_url(req: Request, key: RepoKey) -> str:
    return f"{req.base_url}/{key.url_prefix}{key.repo_id}"


def _key_from_body(app: Emulator, req: Request, body: Any, user: str) -> RepoKey:
    if not isinstance(body, dict) or not isinstance(body.get("name"), str):
        raise bad_request("expected a JSON object with 'name'")
    repo_type = body.get("type") or "model"
    if repo_type not in REPO_TYPES.values():
        raise bad_request(f"invalid repo type: {repo_type}")
    return RepoKey(repo_type, body.get("organization") or user, body["name"])


def create_repo(app: Emulator, req: Request) -> Response:
    """``POST /api/repos/create``: 200 with ``url``; 409 (still with ``url``) when the repository exists."""
    principal = app.require_user(req, write=True)
    body = req.json()
    key = _key_from_body(app, req, body, principal.user)
    app.require_write(req, key)
    sdk = body.get("sdk")
    if key.type == "space" and sdk not in _SPACE_SDKS:
        raise bad_request(f"a Space needs 'sdk', one of {', '.join(_SPACE_SDKS)}")
    private = body.get("visibility") == "private" if "visibility" in body else bool(body.get("private"))
    repo, created = app.store.create(key, private, sdk if key.type == "space" else None, principal.user)
    url = _repo_url(req, key)
    if not created:
        return json_response({"error": f"You already created this {key.type} repo", "url": url}, 409)
    return json_response({"url": url, "name": key.repo_id, "id": key.repo_id})


def delete_repo(app: Emulator, req: Request) -> Response:
    """``DELETE /api/repos/delete``."""
    principal = app.require_user(req, write=True)
    key = _key_from_body(app, req, req.json(), principal.user)
    app.require_write(req, key)
    app.store.delete(key)
    return json_response({})


def update_settings(app: Emulator, req: Request, t: str, ns: str, name: str) -> Response:
    """``PUT /api/{T}/{repo}/settings``: only visibility is emulated."""
    app.writable_repo(req, repo_key(t, ns, name))
    body = req.json() or {}
    if "visibility" in body or "private" in body:
        private = body["visibility"] == "private" if "visibility" in body else bool(body["private"])
        app.store.set_private(repo_key(t, ns, name), private)
    return json_response({})


def repo_info(app: Emulator, req: Request, t: str, ns: str, name: str, rev: str = "main") -> Response:
    """``GET /api/{T}/{repo}[/revision/{rev}]``; ``?blobs=true`` adds size, blob id and LFS data per file."""
    key = repo_key(t, ns, name)
    repo = app.readable_repo(req, key)
    commit = repo.commits[app.store.resolve(repo, unquote(rev))]
    files = app.store.tree(commit.tree)
    blobs = _truthy(req.arg("blobs"))
    siblings = []
    for path, entry in sorted(files.items()):
        sibling: dict[str, Any] = {"rfilename": path}
        if blobs:
            sibling.update(size=entry.size, blobId=entry.oid)
            if entry.lfs:
                sibling["lfs"] = {"size": entry.size, "sha256": entry.lfs, "pointerSize": entry.pointer_size}
        siblings.append(sibling)
    info: dict[str, Any] = {
        "_id": hashlib.sha1(f"{key.type}/{key.repo_id}".encode()).hexdigest()[:24], "id": key.repo_id,
        "author": key.namespace, "sha": commit.id, "lastModified": commit.date, "createdAt": repo.created_at,
        "private": repo.private, "gated": False, "disabled": False, "downloads": 0, "likes": 0, "tags": [],
        "siblings": siblings, "usedStorage": sum(e.size for e in files.values()),
    }
    if key.type == "space":
        info["sdk"] = repo.sdk
    expand = req.query.get("expand") or req.query.get("expand[]")
    if expand:
        info = {k: v for k, v in info.items() if k in ("_id", "id") or k in expand}
    return json_response(info)


def list_refs(app: Emulator, req: Request, t: str, ns: str, name: str) -> Response:
    """``GET /api/{T}/{repo}/refs``."""
    repo = app.readable_repo(req, repo_key(t, ns, name))
    data: dict[str, Any] = {
        "branches": [{"name": b, "ref": f"refs/heads/{b}", "targetCommit": c}
                     for b, c in sorted(repo.branches.items())],
        "converts": [],
        "tags": [{"name": n, "ref": f"refs/tags/{n}", "targetCommit": t_["commit"]}
                 for n, t_ in sorted(repo.tags.items())],
    }
    if _truthy(req.arg("include_prs")):
        data["pullRequests"] = []
    return json_response(data)


def list_commits(app: Emulator, req: Request, t: str, ns: str, name: str, rev: str) -> Response:
    """``GET /api/{T}/{repo}/commits/{rev}``, newest first, paginated with ``?p=``."""
    repo = app.readable_repo(req, repo_key(t, ns, name))
    formatted = "formatted" in (req.query.get("expand[]") or req.query.get("expand") or [])
    items = []
    for commit in app.store.history(repo, app.store.resolve(repo, unquote(rev))):
        item: dict[str, Any] = {"id": commit.id, "title": commit.title, "message": commit.message,
                                "date": commit.date, "authors": [{"user": commit.author, "avatar": ""}]}
        if formatted:
            item["formatted"] = {"title": commit.title, "message": commit.message}
        items.append(item)
    return paged(req, items, app.config.page_size, param="p")


def create_branch(app: Emulator, req: Request, t: str, ns: str, name: str, branch: str) -> Response:
    """``POST /api/{T}/{repo}/branch/{branch}`` with optional ``startingPoint``; 409 if it exists."""
    key = repo_key(t, ns, name)
    app.writable_repo(req, key)
    body = req.json() or {}
    app.store.create_branch(key, unquote(branch), body.get("startingPoint"))
    return json_response({})


def delete_branch(app: Emulator, req: Request, t: str, ns: str, name: str, branch: str) -> Response:
    """``DELETE /api/{T}/{repo}/branch/{branch}``."""
    key = repo_key(t, ns, name)
    app.writable_repo(req, key)
    app.store.delete_branch(key, unquote(branch))
    return json_response({})


def create_tag(app: Emulator, req: Request, t: str, ns: str, name: str, rev: str) -> Response:
    """``POST /api/{T}/{repo}/tag/{rev}`` with ``tag`` and optional ``message``; 409 if the tag exists."""
    key = repo_key(t, ns, name)
    app.writable_repo(req, key)
    body = req.json()
    if not isinstance(body, dict) or not isinstance(body.get("tag"), str):
        raise bad_request("expected a JSON object with 'tag'")
    app.store.create_tag(key, unquote(rev), body["tag"], str(body.get("message") or ""))
    return json_response({})


def delete_tag(app: Emulator, req: Request, t: str, ns: str, name: str, rev: str) -> Response:
    """``DELETE /api/{T}/{repo}/tag/{tag}`` (the route's ``rev`` segment is the tag name here)."""
    key = repo_key(t, ns, name)
    app.writable_repo(req, key)
    app.store.delete_tag(key, unquote(rev))
    return json_response({})


def validate_yaml(app: Emulator, req: Request) -> Response:
    """``POST /api/validate-yaml``: a shallow check of README front matter (no YAML parser: stdlib only).

    Refused: an opening ``---`` never closed, and tab-indented lines (YAML forbids tabs for indentation).
    """
    app.require_user(req)
    body = req.json()
    if not isinstance(body, dict) or not isinstance(body.get("content"), str):
        raise bad_request("expected a JSON object with 'content'")
    lines = body["content"].replace("\r\n", "\n").split("\n")
    errors = []
    if lines and lines[0].strip() == "---":
        end = next((i for i, line in enumerate(lines[1:], 1) if line.strip() in ("---", "...")), None)
        if end is None:
            errors.append("YAML front matter is not closed by a '---' line")
        else:
            errors += [f"line {i + 1}: tab character used for indentation" for i in range(1, end)
                       if lines[i].startswith("\t")]
    if errors:
        return json_response({"errors": [{"message": m} for m in errors], "warnings": []}, 400,
                             {"X-Error-Message": "Invalid metadata in README.md"})
    return json_response({"errors": [], "warnings": []})

