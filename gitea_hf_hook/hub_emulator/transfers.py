"""Git LFS over HTTP: the batch API, basic and multipart uploads, and verify.

Upload URLs point back at the emulator (``/lfs-uploads/<id>``). As with the Hub's pre-signed storage URLs,
the client sends them no token (``lfs.py::_upload_single_part``, multipart completion), so the unguessable
upload id is what authorises them. Every received object is checked against the sha256 and size announced
in the batch request before it is stored: a mismatch is refused and nothing is kept.
"""

from __future__ import annotations

import hashlib
import math
import os
import secrets
import shutil
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from .errors import HubError, bad_request
from .httpbase import Request, Response, json_response
from .model import repo_key

if TYPE_CHECKING:
    from .server import Emulator

_LFS_JSON = {"Content-Type": "application/vnd.git-lfs+json"}
_SESSION_TTL = 3600.0


@dataclass
class UploadSession:
    """An object the batch API told the client to upload: what must arrive, and the parts received so far."""

    id: str
    oid: str
    size: int
    chunk_size: int | None  # None for a basic (single PUT) transfer
    created: float = field(default_factory=time.monotonic)
    parts: dict[int, str] = field(default_factory=dict)  # part number -> ETag

    @property
    def part_count(self) -> int:
        """Number of parts of a multipart transfer."""
        return math.ceil(self.size / self.chunk_size) if self.chunk_size else 1


class UploadRegistry:
    """Upload sessions, in memory only: an upload interrupted by a restart is simply asked for again."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sessions: dict[str, UploadSession] = {}

    def open(self, oid: str, size: int, chunk_size: int | None) -> UploadSession:
        """A new session (and forget expired ones)."""
        session = UploadSession(secrets.token_urlsafe(24), oid, size, chunk_size)
        with self._lock:
            now = time.monotonic()
            for stale in [s for s in self._sessions.values() if now - s.created > _SESSION_TTL]:
                del self._sessions[stale.id]
            self._sessions[session.id] = session
        return session

    def get(self, upload_id: str) -> UploadSession:
        """The session, or 404 (unknown or expired id)."""
        with self._lock:
            session = self._sessions.get(upload_id)
        if session is None:
            raise HubError(404, "Unknown or expired upload URL")
        return session


def batch(app: Emulator, req: Request, ns: str, name: str, t: str | None = None) -> Response:
    """``POST /{prefix}{repo}.git/info/lfs/objects/batch``: stored objects get no ``actions``."""
    key = repo_key(t, ns, name)
    app.writable_repo(req, key)
    body = req.json()
    if not isinstance(body, dict) or not isinstance(body.get("objects"), list):
        raise bad_request("expected a JSON object with 'objects'")
    if body.get("operation") != "upload":
        raise bad_request("only the 'upload' operation is supported by the emulator")
    if body.get("hash_algo", "sha256") != "sha256":
        raise bad_request("only sha256 is supported")
    multipart = "multipart" in (body.get("transfers") or ["basic"])
    expires = (datetime.now(UTC) + timedelta(seconds=_SESSION_TTL)).strftime("%Y-%m-%dT%H:%M:%SZ")
    verify = {"href": f"{req.base_url}/{key.url_prefix}{key.repo_id}.git/info/lfs/objects/verify"}
    answers: list[dict[str, Any]] = []
    used_multipart = False
    for obj in body["objects"]:
        oid, size = (obj.get("oid"), obj.get("size")) if isinstance(obj, dict) else (None, None)
        if not isinstance(oid, str) or len(oid) != 64 or any(c not in "0123456789abcdef" for c in oid) \
                or not isinstance(size, int) or size < 0:
            answers.append({"oid": str(oid), "size": size if isinstance(size, int) else 0,
                            "error": {"code": 422, "message": "invalid oid or size"}})
            continue
        stored = app.store.lfs_size(oid)
        if stored is not None:
            answer: dict[str, Any] = {"oid": oid, "size": size, "authenticated": True}
            if stored != size:
                answer["error"] = {"code": 422, "message": f"object {oid} is stored with size {stored}"}
            answers.append(answer)
            continue
        chunk = app.config.chunk_size if multipart and size > app.config.multipart_threshold else None
        session = app.uploads.open(oid, size, chunk)
        href = f"{req.base_url}/lfs-uploads/{session.id}"
        upload: dict[str, Any] = {"href": href, "expires_at": expires}
        if chunk:
            used_multipart = True
            upload["header"] = {"chunk_size": str(chunk),
                                **{str(n): f"{href}/{n}" for n in range(1, session.part_count + 1)}}
        answers.append({"oid": oid, "size": size, "authenticated": True,
                        "actions": {"upload": upload, "verify": verify}})
    return json_response({"transfer": "multipart" if used_multipart else "basic", "objects": answers,
                          "hash_algo": "sha256"}, headers=_LFS_JSON)


def verify(app: Emulator, req: Request, ns: str, name: str, t: str | None = None) -> Response:
    """``POST .../info/lfs/objects/verify`` ``{"oid", "size"}``: 200 when the object is stored with that size."""
    app.writable_repo(req, repo_key(t, ns, name))
    body = req.json()
    if not isinstance(body, dict) or not isinstance(body.get("oid"), str):
        raise bad_request("expected a JSON object with 'oid'")
    stored = app.store.lfs_size(body["oid"]) if len(body["oid"]) == 64 else None
    if stored is None or stored != body.get("size"):
        raise HubError(422, f"object {body['oid']} is not stored with size {body.get('size')}")
    return json_response({"message": "ok"}, headers=_LFS_JSON)


def _receive(app: Emulator, req: Request, target: str) -> tuple[int, str]:
    """Stream the request body into ``target``; returns its size and sha256 (hex)."""
    digest = hashlib.sha256()
    size = 0
    with open(target, "wb") as handle:
        for data in req.body.chunks():
            handle.write(data)
            digest.update(data)
            size += len(data)
    app.stats.bump("lfs_bytes_received", size)
    return size, digest.hexdigest()


def _refuse(app: Emulator, path: str, message: str) -> HubError:
    if os.path.exists(path):
        os.remove(path)
    app.stats.bump("lfs_uploads_refused")
    return bad_request(message)


def put_object(app: Emulator, req: Request, upload_id: str) -> Response:
    """``PUT /lfs-uploads/<id>``: a basic transfer of the whole object."""
    session = app.uploads.get(upload_id)
    if session.chunk_size:
        raise bad_request("this upload is multipart: PUT the numbered parts")
    tmp = app.store.tmp_path()
    size, sha256 = _receive(app, req, tmp)
    if size != session.size or sha256 != session.oid:
        raise _refuse(app, tmp, f"received {size} bytes with sha256 {sha256}, "
                                f"expected {session.size} bytes with sha256 {session.oid}")
    app.store.adopt_lfs(tmp, session.oid)
    app.stats.bump("lfs_objects_stored")
    return Response(200, b"", {"ETag": f'"{sha256[:32]}"'})


def _part_dir(app: Emulator, session: UploadSession) -> str:
    return os.path.join(app.store.root, "uploads", session.id)


def put_part(app: Emulator, req: Request, upload_id: str, part: str) -> Response:
    """``PUT /lfs-uploads/<id>/<n>``: one part of a multipart transfer; answers the part's ``ETag``."""
    session = app.uploads.get(upload_id)
    number = int(part)
    if not session.chunk_size or not 1 <= number <= session.part_count:
        raise bad_request(f"no part {number} in this upload")
    expected = min(session.chunk_size, session.size - session.chunk_size * (number - 1))
    os.makedirs(_part_dir(app, session), exist_ok=True)
    tmp = app.store.tmp_path()
    size, sha256 = _receive(app, req, tmp)
    if size != expected:
        raise _refuse(app, tmp, f"part {number} has {size} bytes, expected {expected}")
    os.replace(tmp, os.path.join(_part_dir(app, session), str(number)))
    etag = f'"{sha256[:32]}"'
    session.parts[number] = etag
    return Response(200, b"", {"ETag": etag})


def complete_multipart(app: Emulator, req: Request, upload_id: str) -> Response:
    """``POST /lfs-uploads/<id>`` ``{"oid", "parts": [{"partNumber", "etag"}]}``: assemble, check, store."""
    session = app.uploads.get(upload_id)
    body = req.json()
    if not session.chunk_size or not isinstance(body, dict) or body.get("oid") != session.oid:
        raise bad_request("completion does not match this upload")
    try:
        announced = {int(p["partNumber"]): str(p["etag"]) for p in body.get("parts") or []}
    except (KeyError, TypeError, ValueError):
        raise bad_request("malformed 'parts'") from None
    wanted = set(range(1, session.part_count + 1))
    if set(announced) != wanted or any(session.parts.get(n) != etag for n, etag in announced.items()):
        raise bad_request("parts are missing or their ETags do not match the parts received")
    tmp = app.store.tmp_path()
    digest = hashlib.sha256()
    with open(tmp, "wb") as out:
        for number in sorted(wanted):
            with open(os.path.join(_part_dir(app, session), str(number)), "rb") as part_file:
                while data := part_file.read(1 << 20):
                    out.write(data)
                    digest.update(data)
    size = os.path.getsize(tmp)
    shutil.rmtree(_part_dir(app, session), ignore_errors=True)
    if size != session.size or digest.hexdigest() != session.oid:
        session.parts.clear()
        raise _refuse(app, tmp, f"assembled {size} bytes with sha256 {digest.hexdigest()}, "
                                f"expected {session.size} bytes with sha256 {session.oid}")
    app.store.adopt_lfs(tmp, session.oid)
    app.stats.bump("lfs_objects_stored")
    return json_response({"oid": session.oid, "size": size}, headers=_LFS_JSON)

