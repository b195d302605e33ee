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
import re
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO, cast

from ..config.model import Config, RepoRule
from ..errors import GitError, PublishError
from ..gitea import git
from ..gitea.hook_input import is_zero
from ..spool.job import Job
from ..spool.state import PublishResult, TargetState
from . import store
from .derive import Derived, derive
from .tree import File

MAX_LFS_FILES_PER_COMMIT = 25_000     # the Hub's limit per commit
MAX_REGULAR_BYTES_PER_COMMIT = 10**9  # 1 GB of regular (base64-inlined) content per commit
_MARKER = re.compile(r"Gitea-Commit: ([0-9a-f]{40}|[0-9a-f]{64})(?: \(part ([1-9]\d*) of ([1-9]\d*)\))?\Z")

MAX_PROBLEMS_SHOWN = 20  # as many as a pusher is shown
ApiFactory = Callable[..., Any]


def publish(config: Config, job: Job, state: TargetState | None, *,
            api_factory: ApiFactory | None = None) -> PublishResult:
    """Publish one job; return what it did, or raise PublishError.

    ``state`` is the previous successful publish to the same target. ``api_factory`` is called as
    ``api_factory(endpoint=..., token=...)`` and defaults to ``huggingface_hub.HfApi``. A change of ``scope``
    (the rule's file selection) since ``state`` forces a full comparison with the Hub. What is published where,
    and with which token, comes from the config and git (:mod:`.derive`), never from the job file.
    """
    from . import hub_client

    derived = derive(config, job)
    target = derived.target
    token = hub_client.read_token(config, target.hub_repo)
    token_hint = f"the file named by hub.tokens.{hub_client.token_key(config, target.hub_repo)}"
    hub_client.prepare(config)
    api = (api_factory or hub_client.make_api)(endpoint=config.hub_endpoint, token=token)
    run = _Run(config, job, derived, api, token)
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
        raise PublishError(f"reading {job.request.repository} failed: {exc.message}", exc.hint) from None
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


def marker_of(description: str) -> tuple[str, bool] | None:
    """The git commit a Hub commit publishes, and whether it is the last part; None without a marker.

    Only the last line of the description counts: the worker writes the marker there as a trailer, and a pusher
    controls the subject and could put a marker in it, to capture the Hub tag of another commit.
    """
    lines = (description or "").rstrip().rsplit("\n", 1)
    match = _MARKER.match(lines[-1].strip())
    if match is None:
        return None
    part, total = match.group(2), match.group(3)
    return match.group(1), part is None or part == total


class _Run:
    """One publish call: the job, its rule, the client, and what is being done (for error messages)."""

    def __init__(self, config: Config, job: Job, derived: Derived, api: Any, token: str) -> None:
        self.config, self.job, self.rule, self.api, self.token = config, job, derived.rule, api, token
        self.target = derived.target
        self.repo_id, self.repo_type = self.target.hub_repo, self.target.repo_type
        self.revision = self.target.revision
        self.commit = job.commit  # checked by derive(): on the ref, in this repository
        self.cwd = derived.repo_dir
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
        """The newest Hub commit of ``revision``: (id, description); one page of the listing."""
        from . import hub_client

        for item in hub_client.commits(self.api, self.token, self.repo_id, self.repo_type, revision):
            return item["id"], str(item.get("message") or "")
        return None

    def find_published(self, branches: list[str]) -> str | None:
        """The Hub commit that completed publishing ``self.commit``, searched on ``branches``."""
        from . import hub_client

        for branch in branches:
            for item in hub_client.commits(self.api, self.token, self.repo_id, self.repo_type, branch):
                mark = marker_of(str(item.get("message") or ""))
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
        previous = last.git_commit if last is not None and last.git_commit and not is_zero(last.git_commit) else None
        changes = None
        if ours and previous is not None and last is not None and last.scope == scope:
            try:
                changes = tree.changes_between(self.rule, previous, self.commit, self.cwd)
            except GitError:
                changes = None  # the commit we last published is gone from git (history rewritten): compare trees
        if changes is not None:
            uploads, deletes = changes
            if not self.rule.delete_missing:
                deletes = []
        else:
            if previous is None and head:
                self.doing = f"reading the history of {self.what} ({self.revision})"
                previous = self.last_published(self.revision)
            wanted = tree.published_files(self.rule, self.commit, self.cwd)
            self.doing = f"listing the files of {self.what} ({self.revision})"
            remote = tree.hub_files(self.api, self.repo_id, self.repo_type, head) if head else {}
            keep = (".gitattributes", "README.md") if self.repo_type == "space" else (".gitattributes",)
            if previous is None:
                self.check_adoption(remote, keep)
            self.doing = f"reading {self.job.request.ref} in {self.cwd}"
            deletable = self.published_before(previous) if self.rule.delete_missing else {}
            uploads, deletes = tree.differences(wanted, remote, lfs_root=self.config.lfs_root, cwd=self.cwd,
                                                   deletable=deletable, keep=keep)
        mode = "incremental" if changes is not None else "full"
        if not uploads and not deletes:
            return _result(self.commit, head, scope=scope, mode=mode)
        # An incremental publish uploads what changed since the commit published last; any other may upload
        # anything of the tree (a first publish, a changed rule, drift on the Hub), so all of it is checked.
        self.check_content(previous if changes is not None else None)
        made, uploaded, deleted = self.commit_all(uploads, deletes, head)
        return _result(self.commit, made[-1] if made else head, hub_commits=tuple(made), uploaded=uploaded,
                       deleted=deleted, skipped=not made, scope=scope, mode=mode)

    def last_published(self, revision: str) -> str | None:
        """The git commit the newest of our Hub commits on ``revision`` completed publishing, or None.

        This rebuilds, from the Hub itself, what a lost or refused target state would have said.
        """
        from . import hub_client

        for item in hub_client.commits(self.api, self.token, self.repo_id, self.repo_type, revision):
            mark = marker_of(str(item.get("message") or ""))
            if mark is not None and mark[1]:
                return mark[0]
        return None

    def published_before(self, previous: str | None) -> dict[str, File]:
        """What we published last time, by Hub path: what the rule maps from the commit we published then.

        Deleting only these, and only while the Hub holds that content, keeps ``delete_missing`` from removing
        what others put in the Hub repository.
        """
        from . import tree

        if previous is None:
            return {}
        try:
            return tree.published_files(self.rule, previous, self.cwd)
        except (GitError, PublishError):
            return {}  # that commit is gone from git: delete nothing rather than guess

    def check_adoption(self, remote: dict[str, Any], keep: tuple[str, ...]) -> None:
        """A first publish goes into a Hub repository holding other files only when the rule says ``adopt``."""
        foreign = sorted(p for p in remote if p not in keep)
        if foreign and not self.rule.adopt:
            example = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
            raise PublishError(f"{self.what} ({self.revision}) already holds {len(foreign)} files that were not "
                               f"published from Gitea ({example}), and repos[{self.rule.position}] does not adopt it",
                               f"set adopt: true on repos[{self.rule.position}] to publish into it (its other files "
                               "are kept), or publish to another Hub repository")

    def check_content(self, base: str | None) -> None:
        """The push-time content checks, with the same code, on what is about to be uploaded.

        Content pushed before the hooks were installed, or while no rule covered the ref, was never checked; the
        files changed since the commit published last (all of them on a first publish) are checked here.
        """
        from ..checks.content import check

        self.doing = f"checking what {self.job.request.ref} publishes"
        try:
            problems = check(self.config, self.rule, self.commit, base, cwd=self.cwd, markers=False)
        except GitError:
            if base is None:
                raise
            # The commit published last is gone from git (history rewritten): check the whole tree instead.
            problems = check(self.config, self.rule, self.commit, None, cwd=self.cwd, markers=False)
        if not problems:
            return
        # The lines a pusher reads, on one line: the job's reason and the log both keep one line per event.
        lines = "; ".join(str(p) for p in problems[:MAX_PROBLEMS_SHOWN])
        more = f"; and {len(problems) - MAX_PROBLEMS_SHOWN} more" if len(problems) > MAX_PROBLEMS_SHOWN else ""
        what = f"what {self.commit[:12]} would publish to {self.target.label}: {lines}{more}"
        # Whatever enforce says: with it off a push lands in Gitea, but only what passes every rule publishes.
        raise PublishError(f"the checks refuse {what}", "fix it in git and push again; gitea-hf-hook check lists "
                                                         "every problem")

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
            objects: dict[str, store.VerifiedObject] = {}  # open for one commit at a time: descriptors are few
            try:
                part = f" (part {number} of {len(batches)})" if len(batches) > 1 else ""
                operations: list[Any] = [CommitOperationDelete(path_in_repo=p) for p in batch if isinstance(p, str)]
                operations += self.additions([f for f in batch if isinstance(f, File)], objects)
                self.doing = f"committing to {self.what} ({self.revision}){part}"
                try:
                    info = self.api.create_commit(self.repo_id, operations, commit_message=summary + part,
                                                  commit_description=self.description(part),
                                                  repo_type=self.repo_type, revision=self.revision,
                                                  parent_commit=head)
                except Exception:  # noqa: BLE001 - a store object that failed its oid explains any failure
                    for obj in objects.values():
                        if obj.mismatch:
                            raise PublishError(f"{obj.shown}: the bytes of Gitea's LFS object are not those of oid "
                                               f"{obj.oid}; nothing of it was committed",
                                               "the store object is damaged or altered: push it again with "
                                               "git lfs push --all") from None
                    raise
                if info.oid != head:  # the client commits nothing when every file was unchanged
                    made.append(info.oid)
                    head = info.oid
                    uploaded += len(operations) - sum(1 for p in batch if isinstance(p, str))
                    deleted += sum(1 for p in batch if isinstance(p, str))
            finally:
                for obj in objects.values():
                    obj.close()
        return made, uploaded, deleted

    def check_store(self, uploads: list[File]) -> None:
        """Every LFS object to upload is linked to this repository by Gitea, and in its store whole and not
        through a link: checked before anything is committed."""
        lfs_files = [f for f in uploads if f.lfs is not None]
        if not lfs_files:
            return
        if self.config.gitea_verify_lfs:
            from .gitea_lfs import unlinked

            self.doing = f"asking Gitea whether {self.job.request.repository} holds its LFS objects"
            refused = {u.oid: u for u in unlinked(self.config, self.job.request.repository,
                                                   [(f.lfs, f.size) for f in lfs_files if f.lfs is not None])}
            for file in lfs_files:
                if file.lfs in refused:
                    raise PublishError(f"{file.path} is a Git LFS pointer to object {file.lfs}, which Gitea does not "
                                       f"hold for {self.job.request.repository} ({refused[file.lfs].why})",
                                       "push the object to this repository with git lfs push --all, then push "
                                       "again")
        for file in lfs_files:
            assert file.lfs is not None
            store.open_object(self.config.lfs_root, file.lfs, file.size, file.path).close()

    def additions(self, files: list[File], objects: dict[str, store.VerifiedObject]) -> list[Any]:
        """Add operations: LFS content streamed from Gitea's store (opened into ``objects``, which the caller
        closes), regular content from one cat-file batch."""
        from huggingface_hub import CommitOperationAdd
        from huggingface_hub.lfs import UploadInfo

        from . import tree

        contents = tree.blob_contents([f.blob for f in files if f.lfs is None and f.content is None], self.cwd)
        operations = []
        for file in files:
            if file.lfs is not None:
                obj = objects[file.path] = store.open_object(self.config.lfs_root, file.lfs, file.size, file.path)
                # Made empty, then given the open object: the client would otherwise read and hash the whole
                # object up front. The pointer names the sha256, so an object the Hub has is never read at all.
                op = CommitOperationAdd(path_in_repo=file.path, path_or_fileobj=b"")
                op.path_or_fileobj = cast("BinaryIO", obj)
                op.upload_info = UploadInfo(size=file.size, sample=obj.sample(), sha256=bytes.fromhex(file.lfs))
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
        message = git.commit_message(self.commit, cwd=self.cwd)
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
