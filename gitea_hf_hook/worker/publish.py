"""Publishing one job to the Hub: a branch as commits, a tag on the commit that published it, or a deletion.

The worker calls :func:`publish` once per job and owns retries: this module never sleeps, and says through
``PublishError.retryable`` whether trying again may help. Each Hub commit carries the line
``Gitea-Commit: <sha>``, which makes a retry safe: the client does not retry its ``/commit`` POST, so an
answer lost after the commit landed is found again on the Hub instead of committing twice.

huggingface_hub is imported inside functions only, so that importing this module costs nothing until a publish.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Iterator
from typing import Any

from ..config.model import Config, RepoRule
from ..errors import GitError, PublishError
from ..gitea import git
from ..gitea.hook_input import is_zero
from ..spool.job import Job
from ..spool.state import PublishResult, TargetState
from .tree import File

MAX_LFS_FILES_PER_COMMIT = 25_000     # the Hub's limit per commit
MAX_REGULAR_BYTES_PER_COMMIT = 10**9  # 1 GB of regular (base64-inlined) content per commit
_MARKER = re.compile(r"^Gitea-Commit: ([0-9a-f]{40,64})(?: \(part (\d+) of (\d+)\))?\s*$", re.M)

ApiFactory = Callable[..., Any]


def publish(config: Config, job: Job, state: TargetState | None, *,
            api_factory: ApiFactory | None = None) -> PublishResult:
    """Publish one job; return what it did, or raise PublishError.

    ``state`` is the previous successful publish to the same target. ``api_factory`` is called as
    ``api_factory(endpoint=..., token=...)`` and defaults to ``huggingface_hub.HfApi``. A change of ``scope``
    (the rule's file selection) since ``state`` forces a full comparison with the Hub.
    """
    from . import hub_client

    target = job.target
    full_name = job.request.repository
    rule = config.rule_for(full_name)
    if rule is None:
        raise PublishError(f"{full_name} no longer matches any repos entry of {config.path}",
                           "nothing to publish; add a rule and push again if it should publish")
    token = hub_client.read_token(config, target.hub_repo)
    token_hint = f"the file named by hub.tokens.{hub_client.token_key(config, target.hub_repo)}"
    hub_client.prepare(config)
    api = (api_factory or hub_client.make_api)(endpoint=config.hub_endpoint, token=token)
    run = _Run(config, job, rule, api, token)
    try:
        with hub_client.session(config.worker.timeout_seconds):
            if is_zero(job.request.new):
                return run.delete_ref()
            if target.kind == "tag":
                return run.tag()
            return run.branch(state)
    except PublishError:
        raise
    except GitError as exc:
        raise PublishError(f"reading {full_name} failed: {exc.message}", exc.hint) from None
    except Exception as exc:  # noqa: BLE001 - classified below; anything else is a bug and propagates
        error = hub_client.as_publish_error(exc, run.doing, token=token, token_hint=token_hint)
        if error is None:
            if isinstance(exc, (ValueError, OSError)):  # the client's own validation; unreadable local files
                error = PublishError(hub_client.scrub(f"{run.doing}: {exc}", token),
                                     "fix the cause above, then push again or requeue the job")
            else:
                raise
        raise error from None


def _result(commit: str, hub_commit: str | None, **extra: Any) -> PublishResult:
    return PublishResult(git_commit=commit, hub_commit=hub_commit, **extra)


def scope_of(rule: RepoRule) -> str:
    """A fingerprint of the rule's settings that decide which files publish where.

    An incremental publish diffs git commits, which is only right if these did not change since.
    """
    data = [rule.subdir, list(rule.include), list(rule.exclude), rule.delete_missing, rule.repo_type]
    return hashlib.sha1(json.dumps(data).encode()).hexdigest()[:12]


def marker_of(message: str) -> tuple[str, bool] | None:
    """The git commit a Hub commit message publishes, and whether it is the last part; None without a marker."""
    match = _MARKER.search(message or "")
    if match is None:
        return None
    part, total = match.group(2), match.group(3)
    return match.group(1), part is None or part == total


class _Run:
    """One publish call: the job, its rule, the client, and what is being done (for error messages)."""

    def __init__(self, config: Config, job: Job, rule: RepoRule, api: Any, token: str) -> None:
        self.config, self.job, self.rule, self.api, self.token = config, job, rule, api, token
        self.target = job.target
        self.repo_id, self.repo_type = self.target.hub_repo, self.target.repo_type
        self.revision = self.target.revision
        self.commit = job.commit
        self.cwd = job.request.repo_dir
        self.what = self.target.repo_path
        self.doing = f"publishing to {self.what}"

    # -- Hub reads ----------------------------------------------------------------------------------------------

    def refs(self, *, create: bool) -> Any:
        """The Hub refs; creates the repository first when it is missing, ``create`` is set and the rule allows."""
        from huggingface_hub.errors import RepositoryNotFoundError

        self.doing = f"reading the refs of {self.what}"
        try:
            return self.api.list_repo_refs(self.repo_id, repo_type=self.repo_type)
        except RepositoryNotFoundError:
            if not create:
                raise PublishError(f"the Hub repository {self.what} does not exist, or the token cannot see it",
                                   "publish its branch first") from None
            if not self.rule.create:
                raise PublishError(f"the Hub repository {self.what} does not exist, or the token cannot see it, "
                                   f"and repos[{self.rule.position}] has create: false",
                                   "create it on the Hub or set create: true, or give the token access") from None
        self.doing = f"creating {self.what}"
        self.api.create_repo(self.repo_id, repo_type=self.repo_type, private=self.rule.private, exist_ok=True,
                             space_sdk=self.rule.space_sdk if self.repo_type == "space" else None)
        self.doing = f"reading the refs of {self.what}"
        return self.api.list_repo_refs(self.repo_id, repo_type=self.repo_type)

    def head_message(self, revision: str) -> tuple[str, str] | None:
        """The newest Hub commit of ``revision``: (id, message); one page of the listing."""
        from . import hub_client

        for item in hub_client.commits(self.api, self.token, self.repo_id, self.repo_type, revision):
            return item["id"], f"{item.get('title') or ''}\n{item.get('message') or ''}"
        return None

    def find_published(self, branches: list[str]) -> str | None:
        """The Hub commit that completed publishing ``self.commit``, searched on ``branches``."""
        from . import hub_client

        for branch in branches:
            for item in hub_client.commits(self.api, self.token, self.repo_id, self.repo_type, branch):
                mark = marker_of(f"{item.get('title') or ''}\n{item.get('message') or ''}")
                if mark == (self.commit, True):
                    return str(item["id"])
        return None

    # -- branch ---------------------------------------------------------------------------------------------------

    def branch(self, state: TargetState | None) -> PublishResult:
        """Make the Hub branch hold what the git commit publishes."""
        from . import tree

        refs = self.refs(create=True)
        head = _branch_head(refs, self.revision)
        if head is None:
            self.doing = f"creating branch {self.revision} of {self.what}"
            self.api.create_branch(self.repo_id, branch=self.revision, repo_type=self.repo_type, exist_ok=True)
            head = _branch_head(self.refs(create=False), self.revision)
        scope = scope_of(self.rule)
        last = state.result if state is not None else None
        same_scope = last is None or last.scope in ("", scope)
        ours = last is not None and head is not None and last.hub_commit == head
        # The head is the commit we made last, for another git commit: its marker cannot name this one.
        if head and not (ours and last is not None and last.git_commit != self.commit):
            self.doing = f"reading the history of {self.what} ({self.revision})"
            newest = self.head_message(self.revision)
            if newest is not None and marker_of(newest[1]) == (self.commit, True) and same_scope:
                # Already there: typically our own commit whose answer was lost, and the worker retried.
                return _result(self.commit, newest[0], scope=scope, mode="already")

        self.doing = f"reading {self.job.request.ref} in {self.cwd}"
        changes = None
        if ours and last is not None and last.scope == scope and last.git_commit and not is_zero(last.git_commit):
            try:
                changes = tree.changes_between(self.rule, last.git_commit, self.commit, self.cwd)
            except GitError:
                changes = None  # the commit we last published is gone from git (history rewritten): compare trees
        incremental = changes is not None
        if changes is not None:
            uploads, deletes = changes
            if not self.rule.delete_missing:
                deletes = []
        else:
            wanted = tree.published_files(self.rule, self.commit, self.cwd)
            self.doing = f"listing the files of {self.what} ({self.revision})"
            remote = tree.hub_files(self.api, self.repo_id, self.repo_type, head) if head else {}
            keep = (".gitattributes", "README.md") if self.repo_type == "space" else (".gitattributes",)
            uploads, deletes = tree.differences(wanted, remote, lfs_root=self.config.lfs_root, cwd=self.cwd,
                                                   delete_missing=self.rule.delete_missing, keep=keep)
        mode = "incremental" if incremental else "full"
        if not uploads and not deletes:
            return _result(self.commit, head, scope=scope, mode=mode)
        made, uploaded, deleted = self.commit_all(uploads, deletes, head)
        return _result(self.commit, made[-1] if made else head, hub_commits=tuple(made), uploaded=uploaded,
                       deleted=deleted, skipped=not made, scope=scope, mode=mode)

    def commit_all(self, uploads: list[File], deletes: list[str], head: str | None) -> tuple[list[str], int, int]:
        """Commit the changes in as few Hub commits as the limits allow; returns (commit ids, added, deleted)."""
        from huggingface_hub import CommitOperationDelete

        self.check_store(uploads)
        # Deletions first: a path that turns from a file into a folder must be gone before its children arrive.
        plan: list[File | str] = [*deletes, *uploads]
        batches = list(_batches(plan, self.config.worker.max_files_per_commit))
        summary = self.subject()
        made: list[str] = []
        uploaded = deleted = 0
        for number, batch in enumerate(batches, 1):
            part = f" (part {number} of {len(batches)})" if len(batches) > 1 else ""
            operations: list[Any] = [CommitOperationDelete(path_in_repo=p) for p in batch if isinstance(p, str)]
            operations += self.additions([f for f in batch if isinstance(f, File)])
            self.doing = f"committing to {self.what} ({self.revision}){part}"
            info = self.api.create_commit(self.repo_id, operations, commit_message=summary + part,
                                          commit_description=self.description(part), repo_type=self.repo_type,
                                          revision=self.revision, parent_commit=head)
            if info.oid != head:  # the client commits nothing when every file was unchanged
                made.append(info.oid)
                head = info.oid
                uploaded += len(operations) - sum(1 for p in batch if isinstance(p, str))
                deleted += sum(1 for p in batch if isinstance(p, str))
        return made, uploaded, deleted

    def check_store(self, uploads: list[File]) -> None:
        """Every LFS object to upload is in Gitea's store, whole: fail before anything is committed."""
        from . import tree

        for file in uploads:
            if file.lfs is None:
                continue
            path = tree.store_path(self.config.lfs_root, file)
            if not tree.exists(path):
                raise PublishError(f"{file.path} is a Git LFS pointer to object {file.lfs}, which is not in "
                                   f"Gitea's LFS store ({path})",
                                   "push the object with git lfs push --all, then push again")
            if os.path.getsize(path) != file.size:
                raise PublishError(f"{file.path}: Gitea's LFS object {path} has {os.path.getsize(path)} bytes, "
                                   f"the pointer says {file.size}", "the store object is damaged: push it again")

    def additions(self, files: list[File]) -> list[Any]:
        """Add operations: LFS content straight from Gitea's store, regular content from one cat-file batch."""
        from huggingface_hub import CommitOperationAdd

        from . import tree

        contents = tree.blob_contents([f.blob for f in files if f.lfs is None and f.content is None], self.cwd)
        operations = []
        for file in files:
            if file.lfs is not None:
                op = CommitOperationAdd(path_in_repo=file.path,
                                        path_or_fileobj=tree.store_path(self.config.lfs_root, file))
                # The pointer names the sha256: the client then never reads or hashes an object the Hub has.
                op.upload_info.sha256 = bytes.fromhex(file.lfs)
            elif file.content is not None:
                op = CommitOperationAdd(path_in_repo=file.path, path_or_fileobj=file.content)
            else:
                if file.blob not in contents:
                    raise PublishError(f"{file.path}: blob {file.blob} is missing from {self.cwd}",
                                       "check the repository with git fsck")
                op = CommitOperationAdd(path_in_repo=file.path, path_or_fileobj=contents[file.blob])
            operations.append(op)
        return operations

    def subject(self) -> str:
        """The git commit's subject line, read with plumbing: porcelain commands honour repository config."""
        out = git.run("cat-file", "commit", self.commit, cwd=self.cwd).stdout
        _headers, _, message = out.partition(b"\n\n")
        subject = message.decode("utf-8", "replace").strip().split("\n\n", 1)[0]
        return " ".join(subject.split()) or f"Publish {self.commit[:12]}"

    def description(self, part: str) -> str:
        """Where the commit comes from, and the marker that makes retries safe."""
        full_name = self.job.request.repository
        base = f"{self.config.gitea_url}/{full_name}" if self.config.gitea_url else full_name
        link = f"{base}/commit/{self.commit}" if self.config.gitea_url else self.commit
        return (f"Published from Gitea repository {base}\n\n"
                f"Commit: {link}\nRef: {self.job.request.ref}\nPushed by: {self.job.pushed.pusher or 'unknown'}\n\n"
                f"Gitea-Commit: {self.commit}{part}\n")

    # -- tag and deletion -----------------------------------------------------------------------------------------

    def tag(self) -> PublishResult:
        """Tag the Hub commit that published the tagged git commit."""
        from huggingface_hub.errors import HfHubHTTPError

        not_yet = PublishError(f"tag {self.revision}: the tagged commit {self.commit[:12]} is not published to "
                               f"{self.what} yet", "the worker will try again after its branch is published",
                               retryable=True)
        try:
            refs = self.refs(create=False)
        except PublishError:
            raise not_yet from None  # no repository yet: its branch job has not run
        existing = next((t.target_commit for t in refs.tags if t.name == self.revision), None)
        branches = sorted((b.name for b in refs.branches), key=lambda name: (name != "main", name))
        self.doing = f"looking for {self.commit[:12]} in the history of {self.what}"
        published = self.find_published(branches)
        if published is None:
            raise not_yet
        if existing is not None:
            return self._tag_result(existing, published)
        self.doing = f"creating tag {self.revision} on {self.what}"
        try:
            self.api.create_tag(self.repo_id, tag=self.revision, revision=published, repo_type=self.repo_type,
                                tag_message=f"Gitea-Commit: {self.commit}")
        except HfHubHTTPError as exc:
            if getattr(exc.response, "status_code", 0) != 409:
                raise
            # Created meanwhile by someone else: fine if it is on the same commit.
            existing = next(t.target_commit for t in self.refs(create=False).tags if t.name == self.revision)
            return self._tag_result(existing, published)
        return _result(self.commit, published, skipped=False)

    def _tag_result(self, existing: str, published: str) -> PublishResult:
        if existing != published:
            raise PublishError(f"the Hub tag {self.revision} of {self.what} already points at {existing[:12]}, not "
                               f"at {published[:12]}, which published {self.commit[:12]}",
                               "delete the tag on the Hub if it should move, or push a new tag")
        return _result(self.commit, published)

    def delete_ref(self) -> PublishResult:
        """Delete the Hub branch or tag of a deleted git ref, if the rule allows it."""
        from huggingface_hub.errors import HfHubHTTPError

        if not self.rule.allow_delete:
            return _result(self.commit, None)
        kind = self.target.kind
        if kind == "branch" and self.revision == "main":
            raise PublishError(f"refusing to delete branch main of {self.what}: the Hub cannot have a repository "
                               "without it", "delete the repository on the Hub if that is intended")
        refs = self.refs(create=False)
        names = [r.name for r in (refs.branches if kind == "branch" else refs.tags)]
        if self.revision not in names:
            return _result(self.commit, None)
        self.doing = f"deleting {kind} {self.revision} of {self.what}"
        try:
            if kind == "branch":
                self.api.delete_branch(self.repo_id, branch=self.revision, repo_type=self.repo_type)
            else:
                self.api.delete_tag(self.repo_id, tag=self.revision, repo_type=self.repo_type)
        except HfHubHTTPError as exc:
            if getattr(exc.response, "status_code", 0) != 404:
                raise
        return _result(self.commit, None, skipped=False)


def _branch_head(refs: Any, name: str) -> str | None:
    return next((b.target_commit for b in refs.branches if b.name == name), None)


def _batches(plan: list[File | str], max_files: int) -> Iterator[list[File | str]]:
    """Split changes at the Hub's per-commit limits: files, LFS files, and bytes of regular content."""
    batch: list[File | str] = []
    lfs_count = regular_bytes = 0
    for item in plan:
        is_lfs = isinstance(item, File) and item.lfs is not None
        size = item.size if isinstance(item, File) and item.lfs is None else 0
        if batch and (len(batch) >= max_files or (is_lfs and lfs_count >= MAX_LFS_FILES_PER_COMMIT)
                      or regular_bytes + size > MAX_REGULAR_BYTES_PER_COMMIT):
            yield batch
            batch, lfs_count, regular_bytes = [], 0, 0
        batch.append(item)
        lfs_count += is_lfs
        regular_bytes += size
    if batch:
        yield batch
