"""On-disk state of the emulated Hub: repositories, their commits and refs, file snapshots, blobs and LFS objects.

Layout of the data directory::

    repos/<type>/<namespace>/<name>.json   metadata, refs and the commit graph of one repository
    trees/<id>.json                        one full file snapshot (path -> blob oid, size, lfs sha256)
    blobs/<git sha1>                       content of a regular file
    lfs/<sha256>                           content of an LFS object
    tmp/, uploads/                         files being written; never read as state

Every file is written to ``tmp/`` and renamed into place, so a crash or a restart never sees half a file.
One re-entrant lock guards the in-memory index and every metadata write; blobs, trees and LFS objects are
content-addressed and immutable, so they are read without it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Iterator

from . import gitobj
from .errors import HubError, bad_request, entry_not_found, repo_not_found, revision_not_found
from .model import Commit, Entry, Op, Repo, RepoKey, now_iso

_NAME_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9_])?$")
_REF_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._/-]{0,199}$")



class Store:
    """Thread-safe, persistent store of every repository of the emulated Hub."""

    def __init__(self, data_dir: str) -> None:
        self.root = os.path.abspath(data_dir)
        for sub in ("repos", "trees", "blobs", "lfs", "tmp", "uploads"):
            os.makedirs(os.path.join(self.root, sub), exist_ok=True)
        self.lock = threading.RLock()
        self._repos: dict[RepoKey, Repo] = {}
        self._trees: OrderedDict[str, dict[str, Entry]] = OrderedDict()
        self._dir_oids: OrderedDict[str, dict[str, str]] = OrderedDict()
        self._load()

    # -- files ----------------------------------------------------------------------------------------------

    def tmp_path(self) -> str:
        """A fresh path in the data directory's ``tmp/``, on the same file system as the final place."""
        return os.path.join(self.root, "tmp", uuid.uuid4().hex)

    def _write_atomic(self, path: str, data: bytes) -> None:
        # No fsync: the rename keeps readers and restarts consistent, which is what an emulator needs;
        # surviving a power cut is not a goal.
        tmp = self.tmp_path()
        with open(tmp, "wb") as handle:
            handle.write(data)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        os.replace(tmp, path)

    def blob_path(self, oid: str) -> str:
        """Where the content of a regular file with git blob ``oid`` lives."""
        return os.path.join(self.root, "blobs", oid)

    def lfs_path(self, sha256: str) -> str:
        """Where the LFS object ``sha256`` lives."""
        return os.path.join(self.root, "lfs", sha256)

    def put_blob(self, data: bytes) -> Entry:
        """Store regular file content; returns its snapshot entry."""
        oid = gitobj.git_blob_oid(data)
        path = self.blob_path(oid)
        if not os.path.exists(path):
            self._write_atomic(path, data)
        return Entry(oid, len(data))

    def lfs_size(self, sha256: str) -> int | None:
        """Size of a stored LFS object, or None when it is not stored."""
        try:
            return os.path.getsize(self.lfs_path(sha256))
        except OSError:
            return None

    def adopt_lfs(self, tmp_file: str, sha256: str) -> None:
        """Move a received and verified file into ``lfs/``; a concurrent upload of the same object is harmless."""
        os.replace(tmp_file, self.lfs_path(sha256))

    # -- snapshots ------------------------------------------------------------------------------------------

    def _save_tree(self, files: dict[str, Entry]) -> str:
        rows = [[p, e.oid, e.size, e.lfs] for p, e in sorted(files.items())]
        data = json.dumps(rows, separators=(",", ":")).encode()
        tree_id = hashlib.sha1(data).hexdigest()
        path = os.path.join(self.root, "trees", f"{tree_id}.json")
        if not os.path.exists(path):
            self._write_atomic(path, data)
        return tree_id

    def tree(self, tree_id: str) -> dict[str, Entry]:
        """The file snapshot ``tree_id`` (path -> entry). Callers must not mutate it."""
        with self.lock:
            cached = self._trees.get(tree_id)
            if cached is not None:
                self._trees.move_to_end(tree_id)
                return cached
        with open(os.path.join(self.root, "trees", f"{tree_id}.json"), "rb") as handle:
            rows = json.load(handle)
        files = {p: Entry(oid, size, lfs) for p, oid, size, lfs in rows}
        with self.lock:
            self._trees[tree_id] = files
            while len(self._trees) > 64:
                self._trees.popitem(last=False)
        return files

    def dir_oids(self, commit: Commit) -> dict[str, str]:
        """Git tree oid of every directory of a commit's snapshot (``""`` is the root)."""
        with self.lock:
            cached = self._dir_oids.get(commit.tree)
        if cached is None:
            cached = gitobj.tree_oids({p: e.oid for p, e in self.tree(commit.tree).items()})
            with self.lock:
                self._dir_oids[commit.tree] = cached
                while len(self._dir_oids) > 64:
                    self._dir_oids.popitem(last=False)
        return cached

    # -- repositories ---------------------------------------------------------------------------------------

    def _repo_file(self, key: RepoKey) -> str:
        return os.path.join(self.root, "repos", key.type, key.namespace, f"{key.name}.json")

    def _load(self) -> None:
        base = os.path.join(self.root, "repos")
        for dirpath, _, filenames in os.walk(base):
            for filename in filenames:
                if filename.endswith(".json"):
                    with open(os.path.join(dirpath, filename), encoding="utf-8") as handle:
                        repo = Repo.from_json(json.load(handle))
                    self._repos[repo.key] = repo

    def _save(self, repo: Repo) -> None:
        self._write_atomic(self._repo_file(repo.key), json.dumps(repo.to_json()).encode())

    def get(self, key: RepoKey) -> Repo | None:
        """The repository, or None."""
        with self.lock:
            return self._repos.get(key)

    def require(self, key: RepoKey) -> Repo:
        """The repository, or a RepoNotFound error."""
        repo = self.get(key)
        if repo is None:
            raise repo_not_found(key.repo_id)
        return repo

    def all_repos(self) -> list[Repo]:
        """Every repository, for statistics."""
        with self.lock:
            return list(self._repos.values())

    def create(self, key: RepoKey, private: bool, sdk: str | None, author: str) -> tuple[Repo, bool]:
        """Create a repository with the Hub's initial commit; ``(repo, created)``, created False if it existed."""
        valid = _NAME_RE.match(key.name) and _NAME_RE.match(key.namespace)
        if not valid or "--" in key.name or ".." in key.name:
            raise bad_request(f"Invalid repo name: {key.repo_id}")
        with self.lock:
            existing = self._repos.get(key)
            if existing is not None:
                return existing, False
            stamp = now_iso()
            repo = Repo(key, private, sdk, stamp, stamp)
            files = {".gitattributes": self.put_blob(gitobj.DEFAULT_GITATTRIBUTES.encode())}
            if key.type == "space":
                readme = f"---\ntitle: {key.name}\nsdk: {sdk}\npinned: false\n---\n"
                files["README.md"] = self.put_blob(readme.encode())
            commit = self._new_commit(files, [], "initial commit", "", author)
            repo.commits[commit.id] = commit
            repo.branches["main"] = commit.id
            self._repos[key] = repo
            self._save(repo)
            return repo, True

    def delete(self, key: RepoKey) -> None:
        """Delete a repository (its blobs stay: they may be shared and are harmless)."""
        with self.lock:
            self.require(key)
            del self._repos[key]
            os.remove(self._repo_file(key))

    def set_private(self, key: RepoKey, private: bool) -> None:
        """Change a repository's visibility."""
        with self.lock:
            repo = self.require(key)
            repo.private = private
            self._save(repo)

    # -- revisions ------------------------------------------------------------------------------------------

    def resolve(self, repo: Repo, rev: str) -> str:
        """Commit id of a branch, tag, ``refs/heads/..``/``refs/tags/..``, full commit id or unique prefix."""
        with self.lock:
            name = rev[len("refs/heads/"):] if rev.startswith("refs/heads/") else rev
            if name in repo.branches:
                return repo.branches[name]
            name = rev[len("refs/tags/"):] if rev.startswith("refs/tags/") else rev
            if name in repo.tags:
                return repo.tags[name]["commit"]
            if re.fullmatch(r"[0-9a-f]{7,40}", rev):
                found = [cid for cid in repo.commits if cid.startswith(rev)]
                if len(found) == 1:
                    return found[0]
        raise revision_not_found(rev)

    def history(self, repo: Repo, commit_id: str) -> list[Commit]:
        """Commits reachable from ``commit_id``, newest first."""
        with self.lock:
            seen: set[str] = set()
            todo = [commit_id]
            out: list[Commit] = []
            while todo:
                cid = todo.pop()
                if cid in seen or cid not in repo.commits:
                    continue
                seen.add(cid)
                out.append(repo.commits[cid])
                # Every commit the emulator makes has at most one parent, so this walk is already newest first.
                todo.extend(reversed(repo.commits[cid].parents))
        return out

    def _signature(self, commit: Commit) -> dict[str, str]:
        files = self.tree(commit.tree)
        sig = {p: e.oid for p, e in files.items()}
        sig.update(self.dir_oids(commit))
        return sig

    def last_commits(self, repo: Repo, commit_id: str, paths: Iterable[str]) -> dict[str, Commit]:
        """For each path (file or directory), the newest commit that changed it, following first parents."""
        remaining = set(paths)
        found: dict[str, Commit] = {}
        head = repo.commits[commit_id]
        sig = self._signature(head)
        current: Commit | None = head
        while remaining and current is not None:
            parent = repo.commits.get(current.parents[0]) if current.parents else None
            parent_sig = self._signature(parent) if parent else {}
            for path in list(remaining):
                if sig.get(path) != parent_sig.get(path):
                    found[path] = current
                    remaining.discard(path)
            current, sig = parent, parent_sig
        return found

    # -- writes ---------------------------------------------------------------------------------------------

    def _new_commit(self, files: dict[str, Entry], parents: list[str], title: str, message: str,
                    author: str) -> Commit:
        tree_id = self._save_tree(files)
        root = gitobj.tree_oids({p: e.oid for p, e in files.items()})[""]
        full = f"{title}\n\n{message}" if message else title
        cid = gitobj.commit_oid(root, parents, author, int(time.time()), full)
        return Commit(cid, tree_id, root, parents, title, message, now_iso(), author)

    def commit(self, key: RepoKey, branch: str, ops: list[Op], title: str, message: str,
               parent: str | None, author: str) -> Commit:
        """Apply ``ops`` on top of ``branch`` as one new commit; 412 if ``parent`` is not the branch head."""
        with self.lock:
            repo = self.require(key)
            name = branch[len("refs/heads/"):] if branch.startswith("refs/heads/") else branch
            if name not in repo.branches:
                self.resolve(repo, branch)  # raises RevisionNotFound for an unknown revision
                raise bad_request(f"Cannot commit to {branch}: not a branch")
            head = repo.branches[name]
            if parent is not None and not head.startswith(parent):
                raise HubError(412, f"A commit has happened since. Please refresh and try again. "
                                    f"(parentCommit {parent} is not the head {head} of {name})")
            files = dict(self.tree(repo.commits[head].tree))
            for op in ops:
                if op[0] == "add":
                    entry = op[2]  # type: ignore[misc]
                    if entry.lfs and self.lfs_size(entry.lfs) != entry.size:
                        raise bad_request(f"LFS object {entry.lfs} for {op[1]} was not uploaded")
                    files[op[1]] = entry
                elif op[0] == "delete":
                    if files.pop(op[1], None) is None:
                        raise entry_not_found(op[1], "A file with this name doesn't exist")
                else:
                    prefix = op[1].rstrip("/") + "/"
                    doomed = [p for p in files if p.startswith(prefix)]
                    if not doomed:
                        raise entry_not_found(op[1], "A folder with this name doesn't exist")
                    for path in doomed:
                        del files[path]
            dirs = {p.rsplit("/", 1)[0] for p in files if "/" in p}
            dirs = {"/".join(d.split("/")[:i]) for d in dirs for i in range(1, d.count("/") + 2)}
            if clash := sorted(dirs & files.keys()):
                raise bad_request(f"Path is both a file and a folder: {clash[0]}")
            commit = self._new_commit(files, [head], title, message, author)
            repo.commits[commit.id] = commit
            repo.branches[name] = commit.id
            repo.last_modified = commit.date
            self._save(repo)
            return commit

    def create_branch(self, key: RepoKey, branch: str, start: str | None) -> None:
        """New branch at ``start`` (default: head of main); 409 if it exists."""
        with self.lock:
            repo = self.require(key)
            _check_ref_name(branch)
            if branch in repo.branches:
                raise HubError(409, f"Reference already exists: refs/heads/{branch}")
            repo.branches[branch] = self.resolve(repo, start or "main")
            self._save(repo)

    def delete_branch(self, key: RepoKey, branch: str) -> None:
        """Delete a branch; the default branch cannot be deleted."""
        with self.lock:
            repo = self.require(key)
            if branch == "main":
                raise HubError(403, "Cannot delete the default branch")
            if repo.branches.pop(branch, None) is None:
                raise revision_not_found(branch)
            self._save(repo)

    def create_tag(self, key: RepoKey, rev: str, tag: str, message: str) -> None:
        """Tag the commit ``rev`` resolves to; 409 if the tag exists."""
        with self.lock:
            repo = self.require(key)
            _check_ref_name(tag)
            target = self.resolve(repo, rev)
            if tag in repo.tags:
                raise HubError(409, f"Tag already exists: {tag}")
            repo.tags[tag] = {"commit": target, "message": message, "date": now_iso()}
            self._save(repo)

    def delete_tag(self, key: RepoKey, tag: str) -> None:
        """Delete a tag."""
        with self.lock:
            repo = self.require(key)
            if repo.tags.pop(tag, None) is None:
                raise revision_not_found(tag)
            self._save(repo)

    def iter_file(self, entry: Entry, start: int = 0, length: int | None = None,
                  chunk: int = 1 << 20) -> Iterator[bytes]:
        """Stream a file's content (or a byte range of it) from its blob or LFS object."""
        path = self.lfs_path(entry.lfs) if entry.lfs else self.blob_path(entry.oid)
        remaining = entry.size - start if length is None else length
        with open(path, "rb") as handle:
            handle.seek(start)
            while remaining > 0:
                data = handle.read(min(chunk, remaining))
                if not data:
                    break
                remaining -= len(data)
                yield data

    def clear_tmp(self) -> None:
        """Remove leftovers of interrupted writes and uploads (called at start-up)."""
        for sub in ("tmp", "uploads"):
            shutil.rmtree(os.path.join(self.root, sub), ignore_errors=True)
            os.makedirs(os.path.join(self.root, sub), exist_ok=True)


def _check_ref_name(name: str) -> None:
    if not _REF_RE.match(name) or ".." in name or name.endswith(("/", ".lock")) or name.startswith("refs/"):
        raise bad_request(f"Invalid reference name: {name}")
