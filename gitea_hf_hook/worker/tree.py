"""What a git commit publishes, and how it differs from a Hub tree or from an earlier commit.

A file is identified without hashing its content: a regular file by its git blob id, which is the Hub's
``oid`` for regular files, and a Git LFS file by the sha256 in its pointer, which is the Hub's ``lfs.oid``.
Only where the Hub stored a file in the other mode than git has it is content read to compare.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from ..checks.problems import show_path
from ..config.model import RepoRule, unfit
from ..errors import GitError, PublishError
from ..gitea import git, lfs
from ..gitea.git import REGULAR_MODES
from . import store


@dataclass(frozen=True)
class File:
    """One file to publish: its path on the Hub, its git blob, and the LFS object its pointer names, if any."""

    path: str
    blob: str
    size: int  # of the content: the LFS object's size for a pointer
    lfs: str | None = None
    content: bytes | None = None  # already read: a small regular file


@dataclass(frozen=True)
class HubFile:
    """One file of a Hub tree listing."""

    path: str
    blob: str
    size: int
    lfs: str | None


def hub_path(rule: RepoRule, path: bytes) -> str | None:
    """Where a git path lands on the Hub, or None when the rule does not publish it.

    The pre-receive hook rejects paths the Hub cannot hold; one that got in anyway (pushed before our hooks
    were installed) fails the publish by name rather than being silently left out.
    """
    published = rule.hub_path(path)
    if published is not None and (why := unfit(published)):
        raise PublishError(f"{show_path(path)}: {why}",
                           "rename or remove it in git, or exclude it in the rule, then push again")
    return published


def _files(rule: RepoRule, entries: list[git.Entry], cwd: str) -> dict[str, File]:
    """File records for tree entries that publish; reads only blobs small enough to be LFS pointers.

    One ``cat-file --batch`` gives every size and the content of the small blobs alone.
    """
    wanted = [(p, e) for e in entries if e.mode in REGULAR_MODES and (p := hub_path(rule, e.path)) is not None]
    sizes: dict[str, int] = {}
    pointers = {}
    small: dict[str, bytes] = {}  # kept: the upload needs them, and they are read already
    for item in git.read_objects(sorted({e.oid for _, e in wanted}), cwd=cwd, limit=lfs.MAX_POINTER_SIZE):
        if item is None:
            continue
        oid, kind, size, data = item
        if kind != "blob":
            # A tree entry with a file's mode can name a commit or a tree: its bytes are no file of the push.
            raise GitError(f"{oid} is published as a file but is a git {kind}",
                           "rebuild the commit with git add and git commit")
        sizes[oid] = size
        if data is not None:
            if (pointer := lfs.parse_pointer(data)) is not None:
                pointers[oid] = pointer
            else:
                small[oid] = data
    for path, entry in wanted:
        if entry.oid not in sizes:
            raise GitError(f"blob {entry.oid} of {path} is missing", "check the repository with git fsck")
    result = {}
    for path, entry in wanted:
        pointer = pointers.get(entry.oid)
        if pointer is not None:
            result[path] = File(path, entry.oid, pointer.size, pointer.oid)
        else:
            result[path] = File(path, entry.oid, sizes[entry.oid], content=small.get(entry.oid))
    return result


def blob_contents(oids: list[str], cwd: str) -> dict[str, bytes]:
    """The content of each blob that exists, by id (one ``git cat-file --batch`` process for all)."""
    return {item[0]: item[3] or b"" for item in git.read_objects(oids, cwd=cwd) if item is not None}


def published_files(rule: RepoRule, commit: str, cwd: str) -> dict[str, File]:
    """Every file ``commit`` publishes, by Hub path."""
    return _files(rule, git.list_tree(commit, cwd=cwd), cwd)


def changes_between(rule: RepoRule, old: str, new: str, cwd: str) -> tuple[list[File], list[str]]:
    """Files to upload and Hub paths to delete to go from ``old``'s publication to ``new``'s.

    No rename detection: a rename is a delete plus an add, so a file moving out of ``include`` is a delete.
    """
    added: list[git.Entry] = []
    deleted: list[str] = []
    for change in git.diff(old, new, cwd=cwd):
        if change.new_mode not in REGULAR_MODES:
            # Deleted, or now a symlink or submodule: the Hub may hold the old file, never a path it cannot hold.
            target = rule.hub_path(change.path)
            if target is not None and change.old_mode in REGULAR_MODES and unfit(target) is None:
                deleted.append(target)
            continue
        if hub_path(rule, change.path) is not None:
            added.append(git.Entry(change.new_mode, change.new_oid, change.path))
    return sorted(_files(rule, added, cwd).values(), key=lambda f: f.path), sorted(deleted)


def hub_files(api: Any, repo_id: str, repo_type: str, revision: str) -> dict[str, HubFile]:
    """The files of a Hub revision, by path (one paginated recursive listing)."""
    result = {}
    for item in api.list_repo_tree(repo_id, recursive=True, revision=revision, repo_type=repo_type):
        if not hasattr(item, "blob_id"):
            continue  # a folder
        lfs_info = getattr(item, "lfs", None)
        sha256 = (lfs_info.get("sha256") if isinstance(lfs_info, dict) else getattr(lfs_info, "sha256", None))
        result[item.path] = HubFile(item.path, item.blob_id, item.size, sha256)
    return result


def _git_blob_id(data: bytes) -> str:
    """The git blob id of some content (used only for small files the Hub stored as regular files)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def differences(wanted: dict[str, File], hub: dict[str, HubFile], *, lfs_root: str, cwd: str,
                deletable: dict[str, File], keep: tuple[str, ...]) -> tuple[list[File], list[str]]:
    """Files to upload, and Hub paths to delete, so the Hub holds ``wanted``.

    Only files in ``deletable`` (what we published before) are ever deleted, and only while the Hub still holds
    that content: a file someone else put there, or changed since, stays. Never those in ``keep`` (the
    ``.gitattributes`` the Hub creates) unless git publishes them.
    """
    uploads: list[File] = []
    cross: list[tuple[File, HubFile]] = []  # regular in git, stored as LFS on the Hub: compare by sha256
    for path, file in sorted(wanted.items()):
        remote = hub.get(path)
        if remote is None or remote.size != file.size:
            uploads.append(file)
        elif file.lfs is not None:
            # An LFS file the Hub chose to store as a regular file is compared by blob id; it is small then.
            same = remote.lfs == file.lfs if remote.lfs else (
                _git_blob_id(store.read_small(lfs_root, file.lfs, file.size, file.path)) == remote.blob)
            if not same:
                uploads.append(file)
        elif remote.lfs is None:
            if remote.blob != file.blob:
                uploads.append(file)
        else:
            cross.append((file, remote))
    if cross:
        contents = blob_contents([f.blob for f, _ in cross], cwd)
        for file, remote in cross:
            data = contents.get(file.blob)
            if data is None or hashlib.sha256(data).hexdigest() != remote.lfs:
                uploads.append(file)
        uploads.sort(key=lambda f: f.path)
    deletes = sorted(p for p, remote in hub.items() if p not in wanted and p not in keep and p in deletable
                     and _same(deletable[p], remote))
    return uploads, deletes


def _same(file: File, remote: HubFile) -> bool:
    """Whether the Hub file is still the content ``file`` published, told without reading any content."""
    if file.lfs is not None and remote.lfs is not None:
        return file.lfs == remote.lfs
    if file.lfs is None and remote.lfs is None:
        return file.blob == remote.blob
    return file.size == remote.size  # stored the other way on the Hub: its size is what we can tell cheaply


