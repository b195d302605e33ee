"""File-level routes: tree listing, paths-info, preupload, the NDJSON commit, and file downloads (resolve)."""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote

from . import gitobj
from .api_repos import paged
from .errors import HubError, bad_request, entry_not_found
from .httpbase import Request, Response, json_response
from .model import Commit, Entry, Op, Repo, repo_key

if TYPE_CHECKING:
    from .server import Emulator

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def _truthy(value: str | None) -> bool:
    return (value or "").lower() in ("1", "true", "yes")


def _entry_json(path: str, files: dict[str, Entry], dirs: dict[str, str]) -> dict[str, Any]:
    entry = files.get(path)
    if entry is None:
        return {"type": "directory", "oid": dirs[path], "size": 0, "path": path}
    item: dict[str, Any] = {"type": "file", "oid": entry.oid, "size": entry.size, "path": path}
    if entry.lfs:
        item["lfs"] = {"oid": entry.lfs, "size": entry.size, "pointerSize": entry.pointer_size}
    return item


def _expand(app: Emulator, repo: Repo, commit: Commit, items: list[dict[str, Any]]) -> None:
    """Add ``lastCommit`` (and a clean ``securityFileStatus`` for files), as ``expand=true`` does on the Hub."""
    last = app.store.last_commits(repo, commit.id, [item["path"] for item in items])
    for item in items:
        changed = last.get(item["path"], commit)
        item["lastCommit"] = {"id": changed.id, "title": changed.title, "date": changed.date}
        if item["type"] == "file":
            item["securityFileStatus"] = {"status": "safe", "avScan": {"virusFound": False, "virusNames": None},
                                          "pickleImportScan": None}


def _snapshot(app: Emulator, req: Request, t: str | None, ns: str, name: str,
              rev: str) -> tuple[Repo, Commit, dict[str, Entry], dict[str, str]]:
    repo = app.readable_repo(req, repo_key(t, ns, name))
    commit = repo.commits[app.store.resolve(repo, unquote(rev))]
    return repo, commit, app.store.tree(commit.tree), app.store.dir_oids(commit)


def list_tree(app: Emulator, req: Request, t: str, ns: str, name: str, rev: str, path: str = "") -> Response:
    """``GET /api/{T}/{repo}/tree/{rev}[/{path}]?recursive=&expand=``, paginated with ``Link``."""
    repo, commit, files, dirs = _snapshot(app, req, t, ns, name, rev)
    base = unquote(path).strip("/")
    if base and base not in dirs:
        raise entry_not_found(base, "No such directory")
    prefix = f"{base}/" if base else ""
    recursive = _truthy(req.arg("recursive"))
    paths = [p for p in list(files) + [d for d in dirs if d] if p.startswith(prefix)
             and (recursive or "/" not in p[len(prefix):])]
    items = [_entry_json(p, files, dirs) for p in sorted(paths)]
    if not _truthy(req.arg("expand")):
        return paged(req, items, app.config.page_size)
    # The Hub pages expanded listings by 50, since each entry costs a history walk.
    return paged(req, items, min(app.config.page_size, 50), on_page=lambda page: _expand(app, repo, commit, page))


def paths_info(app: Emulator, req: Request, t: str, ns: str, name: str, rev: str) -> Response:
    """``POST /api/{T}/{repo}/paths-info/{rev}`` (form-encoded ``paths``, ``expand``): entries that exist."""
    repo, commit, files, dirs = _snapshot(app, req, t, ns, name, rev)
    if "json" in (req.headers.get("Content-Type") or ""):
        form = req.json() or {}
        if not isinstance(form, dict):
            raise bad_request("expected a JSON object with 'paths'")
        wanted, expand = [str(p) for p in form.get("paths") or []], bool(form.get("expand"))
    else:
        fields = parse_qs(req.read_all().decode("utf-8", "replace"), keep_blank_values=True)
        wanted, expand = fields.get("paths", []), _truthy((fields.get("expand") or [""])[0])
    items = [_entry_json(p.strip("/"), files, dirs) for p in wanted
             if p.strip("/") in files or (p.strip("/") and p.strip("/") in dirs)]
    if expand:
        _expand(app, repo, commit, items)
    return json_response(items)


def preupload(app: Emulator, req: Request, t: str, ns: str, name: str, rev: str) -> Response:
    """``POST /api/{T}/{repo}/preupload/{rev}``: upload mode per file and the oid of the remote file.

    LFS when the file is larger than 10 MiB, its sample looks binary, or ``.gitattributes`` of the revision
    assigns it ``filter=lfs``; empty files are always regular. The remote ``oid`` (sha256 for LFS, git sha1
    otherwise) lets the client drop files that did not change.
    """
    key = repo_key(t, ns, name)
    repo, _ = app.writable_repo(req, key)
    if _truthy(req.arg("create_pr")):
        raise bad_request("pull requests are not supported by the emulator")
    commit = repo.commits[app.store.resolve(repo, unquote(rev))]
    files = app.store.tree(commit.tree)
    patterns: list[str] = []
    if ".gitattributes" in files:
        text = b"".join(app.store.iter_file(files[".gitattributes"])).decode("utf-8", "replace")
        patterns = gitobj.lfs_patterns(text)
    body = req.json()
    if not isinstance(body, dict) or not isinstance(body.get("files"), list):
        raise bad_request("expected a JSON object with 'files'")
    answers = []
    for item in body["files"]:
        try:
            path = gitobj.check_path(item["path"])
            size = int(item["size"])
            sample = base64.b64decode(item.get("sample") or "", validate=True)
        except (KeyError, TypeError, ValueError, binascii.Error):
            raise bad_request(f"invalid preupload entry: {str(item)[:200]}") from None
        lfs = size > 0 and (size > gitobj.REGULAR_FILE_MAX or gitobj.is_binary_sample(sample, size)
                            or gitobj.matches_lfs_pattern(path, patterns))
        remote = files.get(path)
        answers.append({"path": path, "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False,
                        "oid": remote.etag if remote else None})
    return json_response({"files": answers, "commitOid": commit.id})


def _parse_ops(lines: list[bytes], app: Emulator) -> tuple[dict[str, Any], list[Op]]:
    header: dict[str, Any] | None = None
    ops: list[Op] = []
    for number, line in enumerate(lines, 1):
        try:
            item = json.loads(line)
            key, value = item["key"], item["value"]
        except (ValueError, KeyError, TypeError):
            raise bad_request(f"line {number} of the commit payload is not a {{key, value}} JSON object") from None
        if key == "header":
            header = value
            continue
        if header is None:
            raise bad_request("the commit payload must start with a header line")
        path = gitobj.check_path(str(value.get("path", "")).strip("/") if key == "deletedFolder"
                                 else value.get("path"))
        if key == "file":
            try:
                if value.get("encoding", "base64") == "base64":
                    data = base64.b64decode(value["content"], validate=True)
                else:
                    data = str(value["content"]).encode()
            except (KeyError, ValueError, binascii.Error):
                raise bad_request(f"invalid content for {path}") from None
            if len(data) > gitobj.REGULAR_FILE_MAX:
                raise bad_request(f"{path} is larger than 10 MiB: it must be uploaded with LFS")
            ops.append(("add", path, app.store.put_blob(data)))
        elif key == "lfsFile":
            oid = value.get("oid")
            if value.get("algo", "sha256") != "sha256" or not isinstance(oid, str) or not _SHA256.match(oid):
                raise bad_request(f"invalid LFS oid for {path}")
            size = value.get("size")
            if size is None:
                size = app.store.lfs_size(oid)
            if not isinstance(size, int) or size < 0:
                raise bad_request(f"LFS object {oid} for {path} was not uploaded")
            ops.append(("add", path, Entry(gitobj.lfs_blob_oid(oid, size)[0], size, oid)))
        elif key == "deletedFile":
            ops.append(("delete", path))
        elif key == "deletedFolder":
            ops.append(("delete_folder", path))
        else:
            raise bad_request(f"unsupported commit operation: {key}")
    if header is None:
        raise bad_request("the commit payload has no header line")
    return header, ops


def commit(app: Emulator, req: Request, t: str, ns: str, name: str, rev: str) -> Response:
    """``POST /api/{T}/{repo}/commit/{rev}`` (NDJSON): one new commit on the branch ``rev``."""
    key = repo_key(t, ns, name)
    _, principal = app.writable_repo(req, key)
    if _truthy(req.arg("create_pr")):
        raise bad_request("pull requests are not supported by the emulator")
    lines = [line for line in req.read_all().splitlines() if line.strip()]
    header, ops = _parse_ops(lines, app)
    summary = header.get("summary")
    if not isinstance(summary, str) or not summary.strip():
        raise bad_request("the commit header needs a non-empty 'summary'")
    parent = header.get("parentCommit")
    if parent is not None and (not isinstance(parent, str) or not re.fullmatch(r"[0-9a-f]{5,40}", parent)):
        raise bad_request("invalid parentCommit")
    new = app.store.commit(key, unquote(rev), ops, summary.strip(), str(header.get("description") or ""),
                           parent, principal.user)
    app.stats.bump("commits", repo=f"{key.url_prefix}{key.repo_id}")
    return json_response({"success": True, "commitOid": new.id, "pullRequestUrl": None,
                          "commitUrl": f"{req.base_url}/{key.url_prefix}{key.repo_id}/commit/{new.id}"})


def _byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``(start, length)`` for a single ``bytes=a-b``/``bytes=a-``/``bytes=-n`` range, None for the whole file."""
    match = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", header or "")
    if not match or not any(match.groups()):
        return None
    first, last = match.groups()
    if first:
        start, end = int(first), min(int(last), size - 1) if last else size - 1
    else:
        start, end = max(size - int(last), 0), size - 1
    if start >= size or end < start:
        raise HubError(416, "Requested range not satisfiable", headers={"Content-Range": f"bytes */{size}"})
    return start, end - start + 1


def resolve(app: Emulator, req: Request, t: str | None = None, *, ns: str, name: str, rev: str,
            path: str) -> Response:
    """``HEAD``/``GET /{prefix}{repo}/resolve/{rev}/{path}``: the file, with the headers downloads rely on.

    ``X-Repo-Commit`` and ``ETag`` (sha256 for LFS, git sha1 otherwise) are required by ``hf_hub_download``;
    LFS files also carry ``X-Linked-Etag``/``X-Linked-Size`` as the Hub sends them. No redirect: the content
    is served here directly, which the client accepts.
    """
    _, commit_, files, _ = _snapshot(app, req, t, ns, name, rev)
    file_path = unquote(path)
    entry = files.get(file_path)
    if entry is None:
        err = entry_not_found(file_path)
        err.headers["X-Repo-Commit"] = commit_.id
        raise err
    headers = {"X-Repo-Commit": commit_.id, "ETag": f'"{entry.etag}"', "Accept-Ranges": "bytes",
               "Content-Type": "application/octet-stream"}
    if entry.lfs:
        headers.update({"X-Linked-Etag": f'"{entry.lfs}"', "X-Linked-Size": str(entry.size)})
    span = _byte_range(req.headers.get("Range"), entry.size) if req.method == "GET" else None
    if span is None:
        return Response(200, app.store.iter_file(entry), headers, entry.size)
    start, length = span
    headers["Content-Range"] = f"bytes {start}-{start + length - 1}/{entry.size}"
    return Response(206, app.store.iter_file(entry, start, length), headers, length)
