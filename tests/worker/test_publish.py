"""Publishing: alice pushes to Gitea, the post-receive hook queues a job, publish() puts it on the Hub.

Every test pushes for real, reads the queued job, publishes it to the Hub emulator with the real client, and
checks what a user of the Hub then sees (``snapshot_download``, refs, commit history) or what the worker is told.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from huggingface_hub.hf_api import RepoFile

from gitea_hf_hook.errors import PublishError
from gitea_hf_hook.spool.state import PublishResult
from gitea_hf_hook.worker.publish import marker_of
from tests.support.gitea_server import GiteaServer
from tests.support.hub import Hub
from tests.support.publishing import (
    HUB_GITATTRIBUTES,
    READ_TOKEN,
    RULE,
    TOKEN,
    configure,
    git_files,
    lfs_store_object,
    publish_job,
    take_job,
    tree_text,
)

CARD = "---\nlicense: mit\n---\n# tiny model\n"
WEIGHTS = bytes(range(256)) * 64          # 16 KiB of binary: stored as LFS on the Hub
VOCAB = bytes(range(200, 256)) * 4        # binary, regular in git
CORPUS = b"plain text tracked with Git LFS\n" * 8
_names = itertools.count()


class World:
    """One Gitea repository acme/<name>, alice's clone of it, and the Hub repository it publishes to."""

    def __init__(self, server: GiteaServer, hub: Hub, tmp_path: Path, name: str) -> None:
        self.server, self.hub, self.name, self.tmp = server, hub, name, tmp_path
        self.repo_id = f"acme/{name}"
        server.create_repo("acme", name)
        self.configure()
        server.install(f"acme/{name}")
        self.clone = server.clone("acme", name, tmp_path / "work")
        self.downloads = itertools.count()

    def configure(self, rule_extra: str = "", **options: Any) -> None:
        self.config = configure(self.server, self.hub, RULE + rule_extra, **options)

    def push(self, *refspecs: str) -> None:
        result = self.clone.push(*refspecs)
        assert result.ok, result.output

    def publish(self, ref: str = "refs/heads/main", state: PublishResult | None = None) -> PublishResult:
        return publish_job(self.config, take_job(self.server, ref), state)

    def hub_files(self, **options: Any) -> dict[str, bytes]:
        return self.hub.files(self.repo_id, self.tmp / f"hf-cache-{next(self.downloads)}", **options)

    def git_files(self, commit: str) -> dict[str, bytes]:
        return git_files(self.clone.bare, commit, self.server.lfs_root)

    def hub_commits(self, revision: str = "main", repo_type: str = "model") -> list[Any]:
        return self.hub.api().list_repo_commits(self.repo_id, revision=revision, repo_type=repo_type)


@pytest.fixture
def world(server: GiteaServer, hub: Hub, tmp_path: Path) -> World:
    hub.reset()
    return World(server, hub, tmp_path, f"model-{next(_names)}")


def first_commit(world: World) -> str:
    world.clone.write({"README.md": CARD, "config.json": '{"hidden": 8}\n', "notes.txt": "draft\n",
                       "src/a.txt": "aaa\n"})
    world.clone.write_lfs("weights.bin", WEIGHTS)
    # Stored the other way round on the Hub: binary kept in git as is (LFS there), text kept in Git LFS.
    world.clone.write({"vocab.bin": VOCAB})
    world.clone.write_lfs("docs/corpus.txt", CORPUS)
    return world.clone.commit(message="Add tiny model\n\nlonger body")


def test_first_publish_puts_the_git_tree_on_the_hub(world: World):
    commit = first_commit(world)
    world.push("main")
    state = world.publish()

    files = world.hub_files()
    assert files.pop(".gitattributes") == HUB_GITATTRIBUTES  # the Hub's own, kept: git has none
    assert files == world.git_files(commit)
    assert files["weights.bin"] == WEIGHTS
    assert state.git_commit == commit and state.skipped is False
    assert state.hub_commit == world.hub_commits()[0].commit_id
    assert state.hub_commits == (state.hub_commit,)
    assert (state.uploaded, state.deleted) == (7, 0)
    json.dumps(state)  # the worker stores it
    head = world.hub_commits()[0]
    assert head.title == "Add tiny model"
    gitea = world.config.gitea_url
    assert head.message == (f"Published from Gitea repository {gitea}/{world.repo_id}\n\n"
                            f"Commit: {gitea}/{world.repo_id}/commit/{commit}\n"
                            f"Ref: refs/heads/main\nPushed by: alice\n\nGitea-Commit: {commit}\n")
    assert world.hub.api().repo_info(world.repo_id).private is True


def test_an_incremental_publish_sends_only_what_changed(world: World):
    first_commit(world)
    world.push("main")
    state = world.publish()
    # The unchanged LFS file must not be read again: without its store object, reading it would fail.
    os.remove(lfs_store_object(world.server, world.clone.write_lfs("weights.bin", WEIGHTS)))
    world.clone.git("rm", "-q", "notes.txt")
    world.clone.git("mv", "src/a.txt", "src/b.txt")
    commit = world.clone.commit({"config.json": '{"hidden": 16}\n'}, message="Widen")
    world.push("main")
    world.hub.control("DELETE", "/_emulator/requests")
    job = take_job(world.server, "refs/heads/main")
    new = publish_job(world.config, job, state)

    assert (new.uploaded, new.deleted, new.mode) == (2, 2, "incremental")
    requests = world.hub.requests()
    assert not [r for r in requests if "lfs" in r["path"]]  # no LFS traffic at all
    assert [r["path"].split("?")[0] for r in requests if r["method"] == "GET" and "/tree/" in r["path"]] == []
    world.server.store_lfs(WEIGHTS)  # back in the store, to compute what git holds
    files = world.hub_files()
    files.pop(".gitattributes")
    assert files == world.git_files(commit)
    assert len(world.hub_commits()) == 3  # initial, first publish, this one
    listing = world.hub.api().list_repo_tree(world.repo_id, recursive=True, expand=True)
    touched = {f.path for f in listing if isinstance(f, RepoFile) and f.last_commit.oid == new.hub_commit}
    assert touched == {"config.json", "src/b.txt"}

    # Publishing the same job again changes nothing on the Hub.
    again = publish_job(world.config, job, new)
    assert again.skipped is True and again.hub_commit == new.hub_commit
    assert len(world.hub_commits()) == 3


def test_subdir_include_and_exclude_decide_what_publishes(world: World):
    world.configure('    subdir: model\n    include: ["**"]\n    exclude: ["*.tmp", "drafts/**"]\n')
    world.clone.write({"README.md": CARD, "train.py": "print(1)\n", "model/README.md": CARD,
                       "model/config.json": "{}\n", "model/scratch.tmp": "x\n", "model/drafts/old.txt": "old\n"})
    world.clone.write_lfs("model/weights.bin", WEIGHTS)
    world.clone.commit(message="Layout")
    world.push("main")
    state = world.publish()
    files = world.hub_files()
    assert files == {".gitattributes": HUB_GITATTRIBUTES, "README.md": CARD.encode(), "config.json": b"{}\n",
                     "weights.bin": WEIGHTS}

    # Moving a file into an excluded folder is a deletion on the Hub.
    world.clone.git("mv", "model/config.json", "model/drafts/config.json")
    world.clone.commit(message="Retire config")
    world.push("main")
    new = world.publish(state=state)
    assert (new.uploaded, new.deleted) == (0, 1)
    assert "config.json" not in world.hub_files()

    # An admin narrows the rule: the next publish compares whole trees. README.md is outside the rule now, so
    # the rule no longer speaks for it: it stays on the Hub, as anything the rule does not publish does.
    world.configure('    subdir: model\n    exclude: ["*.tmp", "drafts/**", "*.md"]\n')
    world.clone.commit({"model/extra.txt": "x\n"}, message="Extra")
    world.push("main")
    narrowed = world.publish(state=new)
    assert (narrowed.mode, narrowed.uploaded, narrowed.deleted) == ("full", 1, 0)
    assert sorted(world.hub_files()) == [".gitattributes", "README.md", "extra.txt", "weights.bin"]


def test_a_tag_lands_on_the_hub_commit_that_published_its_commit(world: World):
    commit = first_commit(world)
    world.clone.git("tag", "-a", "v1.0", "-m", "release")
    world.push("main", "v1.0")
    tag_job = take_job(world.server, "refs/tags/v1.0")
    with pytest.raises(PublishError) as early:
        publish_job(world.config, tag_job, None)  # the branch job has not run yet
    assert early.value.retryable
    assert early.value.message == f"tag v1.0: the tagged commit {commit[:12]} is not published to {world.repo_id} yet"

    state = world.publish()
    tagged = publish_job(world.config, tag_job, None)
    refs = world.hub.api().list_repo_refs(world.repo_id)
    assert [(t.name, t.target_commit) for t in refs.tags] == [("v1.0", state.hub_commit)]
    assert tagged.hub_commit == state.hub_commit and tagged.skipped is False
    assert world.hub_files(revision="v1.0") == world.hub_files()
    assert publish_job(world.config, tag_job, None).skipped is True  # done already

    # A job that claims the tag is on another commit than git says is refused, naming the field.
    world.clone.commit({"more.txt": "more\n"})
    world.push("main")
    world.publish(state=state)
    head = world.clone.git("rev-parse", "HEAD")
    moved = tag_job._replace(request=tag_job.request._replace(new=head, commit=head))
    with pytest.raises(PublishError) as forged:
        publish_job(world.config, moved, None)
    assert forged.value.message == (f"request.commit: {head[:12]} is not on refs/tags/v1.0 of {world.repo_id}, "
                                    f"which points at {commit[:12]}")

    # The tag moved in git: that cannot move the Hub tag.
    subprocess.run(["git", "update-ref", "refs/tags/v1.0", head], cwd=world.clone.bare, check=True)
    with pytest.raises(PublishError) as clash:
        publish_job(world.config, moved, None)
    assert not clash.value.retryable
    assert clash.value.message.startswith(f"the Hub tag v1.0 of {world.repo_id} already points at "
                                          f"{state.hub_commit[:12]}")


def test_an_extra_branch_becomes_a_hub_branch_and_can_be_deleted(world: World):
    world.configure("    branches: {main: main, dev: dev}\n    allow_delete: true\n")
    first_commit(world)
    world.push("main")
    world.publish()
    dev = world.clone.commit({"dev.txt": "experimental\n"}, message="Try something")
    world.push("main:dev")
    state = world.publish("refs/heads/dev")
    assert (state.uploaded, state.deleted) == (1, 0)  # branched from main, so only the new file
    files = world.hub_files(revision="dev")
    files.pop(".gitattributes")
    assert files == world.git_files(dev)
    assert "dev.txt" not in world.hub_files()

    world.push(":dev")
    deletion = take_job(world.server, "refs/heads/dev")
    world.configure("    branches: {main: main, dev: dev}\n")  # allow_delete withdrawn meanwhile: kept
    assert publish_job(world.config, deletion, state).skipped is True
    assert "dev" in [b.name for b in world.hub.api().list_repo_refs(world.repo_id).branches]
    world.configure("    branches: {main: main, dev: dev}\n    allow_delete: true\n")
    gone = publish_job(world.config, deletion, state)
    assert gone.skipped is False
    assert [b.name for b in world.hub.api().list_repo_refs(world.repo_id).branches] == ["main"]


@pytest.mark.parametrize("repo_type, extra", [("dataset", ""), ("space", "    space_sdk: gradio\n")])
def test_datasets_and_spaces_publish_like_models(world: World, repo_type: str, extra: str):
    world.configure(f"    repo_type: {repo_type}\n{extra}")
    readme = "---\ntitle: tiny\nsdk: gradio\n---\n" if repo_type == "space" else CARD
    world.clone.write({"README.md": readme, "app.py": "print('hi')\n"})
    world.clone.write_lfs("data/train.npz", WEIGHTS)
    commit = world.clone.commit(message="Data")
    world.push("main")
    state = world.publish()
    files = world.hub_files(repo_type=repo_type)
    files.pop(".gitattributes")
    assert files == world.git_files(commit)
    assert state.hub_commit == world.hub_commits(repo_type=repo_type)[0].commit_id


def test_hub_drift_is_reconciled(world: World):
    first_commit(world)
    world.push("main")
    state = world.publish()
    # Someone commits on the Hub directly: a stray file and an edit.
    world.hub.api().upload_file(path_or_fileobj=b"stray\n", path_in_repo="stray.txt", repo_id=world.repo_id)
    world.hub.api().upload_file(path_or_fileobj=b"{}\n", path_in_repo="config.json", repo_id=world.repo_id)
    commit = world.clone.commit({"src/c.txt": "ccc\n"}, message="More")
    world.push("main")
    new = world.publish(state=state)
    assert new.mode == "full"
    assert (new.uploaded, new.deleted) == (2, 0)  # c.txt, and config.json back; stray.txt is not ours: it stays
    files = world.hub_files()
    files.pop(".gitattributes")
    assert files == {**world.git_files(commit), "stray.txt": b"stray\n"}


def test_large_changes_are_split_into_several_commits(world: World):
    world.configure(worker="worker:\n  max_files_per_commit: 3\n")
    commit = first_commit(world)
    world.push("main")
    state = world.publish()
    assert len(state.hub_commits) == 3
    titles = [c.title for c in world.hub_commits()[:3]]
    assert titles == [f"Add tiny model (part {n} of 3)" for n in (3, 2, 1)]
    files = world.hub_files()
    files.pop(".gitattributes")
    assert files == world.git_files(commit)


def test_a_read_only_token_is_a_permanent_error_with_the_hubs_message(world: World):
    world.configure(token=READ_TOKEN)
    first_commit(world)
    world.push("main")
    with pytest.raises(PublishError) as error:
        world.publish()
    assert not error.value.retryable
    assert error.value.message == (f"creating {world.repo_id}: the Hub answered 403: "
                                   "This token does not have write access")
    assert READ_TOKEN not in str(error.value) and READ_TOKEN not in repr(error.value.__dict__)


def test_a_model_card_the_hub_refuses_is_a_permanent_error_with_its_message(world: World):
    world.clone.write({"README.md": "---\nlicense: mit\n# never closed\n"})
    world.clone.commit(message="Card")
    world.push("main")
    with pytest.raises(PublishError) as error:
        world.publish()
    assert not error.value.retryable
    assert "YAML front matter is not closed by a '---' line" in error.value.message
    assert error.value.message.startswith(f"committing to {world.repo_id} (main): ")


def test_a_missing_token_names_the_namespace_and_the_config_key(world: World):
    world.configure(tokens="    other: /nonexistent\n")
    first_commit(world)
    world.push("main")
    with pytest.raises(PublishError) as error:
        world.publish()
    assert not error.value.retryable
    assert str(error.value) == (f"no Hub token for namespace acme: hub.tokens has no entry 'acme' and no '*' "
                                f"fallback in {world.config.path} (add hub.tokens.acme: /path/to/token-file, "
                                f"holding a token with write access)")


def test_a_missing_repo_without_create_is_permanent(world: World):
    world.configure("    create: false\n")
    first_commit(world)
    world.push("main")
    with pytest.raises(PublishError) as error:
        world.publish()
    assert not error.value.retryable
    assert "has create: false" in error.value.message


def test_a_missing_lfs_object_is_permanent_and_names_path_and_oid(world: World):
    first_commit(world)
    world.push("main")
    oid = world.clone.write_lfs("weights.bin", WEIGHTS)
    os.remove(lfs_store_object(world.server, oid))
    with pytest.raises(PublishError) as error:
        world.publish()
    assert not error.value.retryable
    # The worker's own run of the push-time checks finds it first, with the line a pusher would have read.
    assert error.value.message == (f"the checks refuse what {world.clone.git('rev-parse', 'HEAD')[:12]} would "
                                   f"publish to {world.repo_id} branch main: weights.bin: Git LFS object "
                                   f"{oid[:12]} is not on the server, or does not match its pointer (run: git lfs push --all origin, then push "
                                   "again)")


def test_with_enforce_off_the_worker_still_publishes_only_what_passes_every_check(world: World):
    world.configure(worker="enforce: false\n")
    first_commit(world)
    world.push("main")
    oid = world.clone.write_lfs("more.bin", WEIGHTS + b"more")
    world.clone.commit()
    world.push("main")
    take_job(world.server, "refs/heads/main")  # the first push's job
    os.remove(lfs_store_object(world.server, oid))
    with pytest.raises(PublishError) as error:
        world.publish()
    assert not error.value.retryable
    assert error.value.message.startswith("the checks refuse what ")
    assert set(world.hub_files()) == {".gitattributes"}  # the Hub's own: nothing of the push was published


def test_hub_outages_are_retryable_and_fail_fast(world: World):
    first_commit(world)
    world.push("main")
    job = take_job(world.server, "refs/heads/main")
    world.hub.fault(method="POST", path="/preupload/", status=503, retry_after=7, times=-1)
    started = time.monotonic()
    with pytest.raises(PublishError) as error:
        publish_job(world.config, job, None)
    assert time.monotonic() - started < 5  # the client's own retry loop (23 s of sleeping) is not used
    assert error.value.retryable and error.value.retry_after == 7
    assert error.value.message == f"committing to {world.repo_id} (main): the Hub answered 503: injected fault"

    world.hub.reset()
    world.hub.fault(path="/refs", drop=True, times=-1)
    with pytest.raises(PublishError) as dropped:
        publish_job(world.config, job, None)
    assert dropped.value.retryable
    assert "cannot reach the Hub" in dropped.value.message

    world.hub.reset()
    assert publish_job(world.config, job, None).skipped is False


def test_a_commit_whose_answer_was_lost_is_not_made_twice(world: World):
    commit = first_commit(world)
    world.push("main")
    job = take_job(world.server, "refs/heads/main")
    world.hub.api().create_repo(world.repo_id, private=True)
    before = [c.commit_id for c in world.hub_commits()]
    # The Hub makes the commit, then the connection drops before its answer: the worker never hears of it.
    world.hub.fault(method="POST", path="/commit/", drop_after=True)
    with pytest.raises(PublishError) as error:
        publish_job(world.config, job, None)
    assert error.value.retryable
    assert error.value.message == f"committing to {world.repo_id} (main): cannot reach the Hub (RemoteProtocolError)"
    landed = world.hub_commits()[0]
    assert [c.commit_id for c in world.hub_commits()] == [landed.commit_id, *before]
    assert landed.title == "Add tiny model" and landed.message.endswith(f"Gitea-Commit: {commit}\n")

    retried = publish_job(world.config, job, None)  # the worker's retry finds it instead of committing again
    assert (retried.git_commit, retried.hub_commit, retried.hub_commits) == (commit, landed.commit_id, ())
    assert (retried.mode, retried.skipped, retried.uploaded, retried.deleted) == ("already", True, 0, 0)
    assert [c.commit_id for c in world.hub_commits()] == [landed.commit_id, *before]
    commit_posts = [r["status"] for r in world.hub.requests() if r["method"] == "POST" and "/commit/" in r["path"]]
    assert commit_posts == [None]  # one commit call, by the first attempt, never answered
    files = world.hub_files()
    files.pop(".gitattributes")
    assert files == world.git_files(commit)


def test_the_token_is_absent_from_the_state_the_error_and_the_spool(world: World):
    first_commit(world)
    world.push("main")
    state = world.publish()
    world.clone.commit({"x.txt": "x\n"})
    world.push("main")
    world.hub.fault(path="/commit/", status=500, times=-1)
    with pytest.raises(PublishError) as error:
        world.publish(state=state)
    assert TOKEN not in json.dumps(state)
    assert TOKEN not in str(error.value) and TOKEN not in repr(vars(error.value))
    assert error.value.__cause__ is None and error.value.__suppress_context__
    assert TOKEN not in tree_text(world.server.spool)


def test_only_the_descriptions_last_line_is_read_as_the_marker() -> None:
    """A pusher writes the subject; the worker writes the description, and its marker is the trailer."""
    sha = "a" * 40
    assert marker_of(f"Published from Gitea\n\nGitea-Commit: {sha}\n") == (sha, True)
    assert marker_of(f"Published from Gitea\n\nGitea-Commit: {sha} (part 1 of 2)\n") == (sha, False)
    assert marker_of(f"Gitea-Commit: {sha}\nPushed by: alice\n") is None
    assert marker_of(f"Gitea-Commit: {sha} and more") is None
