"""The emulated Hub's data model: repository keys, file entries, commits and repositories (JSON-serialisable)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Union
from urllib.parse import unquote

from . import gitobj

#: API path segment (``/api/models/...``) to repository type.
REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
#: Repository type to the prefix of its web and git URLs.
URL_PREFIXES = {"model": "", "dataset": "datasets/", "space": "spaces/"}


# A type alias is evaluated at import, where "X | Y" cannot combine a tuple type with a forward reference.
Op = Union[tuple[str, str, "Entry"], tuple[str, str]]  # noqa: UP007
"""A commit operation: ``("add", path, entry)``, ``("delete", path)`` or ``("delete_folder", path)``."""


def repo_key(t: str | None, ns: str, name: str) -> RepoKey:
    """Key from route groups; ``t`` is a plural API segment (``models``) or URL prefix word (``datasets``)."""
    return RepoKey(REPO_TYPES.get(t or "models", "model"), unquote(ns), unquote(name))


def now_iso() -> str:
    """Current UTC time in the one format the client parses (``%Y-%m-%dT%H:%M:%S.%fZ``)."""
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


@dataclass(frozen=True)
class RepoKey:
    """Identity of a repository: type (model, dataset, space), namespace and name."""

    type: str
    namespace: str
    name: str

    @property
    def repo_id(self) -> str:
        """``namespace/name``."""
        return f"{self.namespace}/{self.name}"

    @property
    def url_prefix(self) -> str:
        """``""``, ``"datasets/"`` or ``"spaces/"``."""
        return URL_PREFIXES[self.type]


@dataclass(frozen=True)
class Entry:
    """A file in a snapshot: git blob oid, size of the content, and the sha256 when stored in LFS."""

    oid: str
    size: int
    lfs: str | None = None

    @property
    def pointer_size(self) -> int:
        """Byte size of the LFS pointer git stores for this file (0 for a regular file)."""
        return len(gitobj.lfs_pointer(self.lfs, self.size)) if self.lfs else 0

    @property
    def etag(self) -> str:
        """What the Hub reports as the file's ETag: the sha256 for LFS files, the git blob sha1 otherwise."""
        return self.lfs or self.oid


@dataclass
class Commit:
    """One commit: a full snapshot (``tree``: snapshot file id, ``root``: git tree oid) plus its history links."""

    id: str
    tree: str
    root: str
    parents: list[str]
    title: str
    message: str
    date: str
    author: str


@dataclass
class Repo:
    """A repository: settings, refs and the whole commit graph (``commits`` keyed by id)."""

    key: RepoKey
    private: bool
    sdk: str | None
    created_at: str
    last_modified: str
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, dict[str, str]] = field(default_factory=dict)
    commits: dict[str, Commit] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """Serialisable form, as stored in ``repos/<type>/<ns>/<name>.json``."""
        return {
            "type": self.key.type, "namespace": self.key.namespace, "name": self.key.name,
            "private": self.private, "sdk": self.sdk, "createdAt": self.created_at,
            "lastModified": self.last_modified, "branches": self.branches, "tags": self.tags,
            "commits": {cid: asdict(c) for cid, c in self.commits.items()},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Repo:
        """Inverse of :meth:`to_json`."""
        return cls(
            key=RepoKey(data["type"], data["namespace"], data["name"]), private=data["private"],
            sdk=data.get("sdk"), created_at=data["createdAt"], last_modified=data["lastModified"],
            branches=data["branches"], tags=data["tags"],
            commits={cid: Commit(**c) for cid, c in data["commits"].items()},
        )
