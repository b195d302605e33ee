"""Ref rules: force-pushes, deletions, and tags that must sit on a publishing branch."""

from __future__ import annotations

import subprocess

from tests.support.gitea_server import Clone, GiteaServer, assert_rejected
from tests.support.rules import CARD, GROUPS, RULE


def rejected(ref: str) -> str:
    kind = "branch main" if ref.startswith("refs/heads/") else f"tag {ref.rsplit('/', 1)[1]}"
    return (f"hf-publish: rejected {ref} of acme/bert-tiny, which publishes to "
            f"https://huggingface.co/acme/bert-tiny ({kind}):")


def allow(gitea: GiteaServer, key: str) -> None:
    text = gitea.config_path.read_text().replace("    tags:", f"    {key}: true\n    tags:")
    gitea.config_path.write_text(text)


def test_a_fast_forward_is_accepted(clone: Clone):
    clone.commit()
    assert clone.push("main").ok
    clone.commit({"notes.txt": "more"})
    assert clone.push("main").ok


def test_a_force_push_is_refused_unless_allowed(clone: Clone, gitea: GiteaServer):
    clone.commit(message="one")
    clone.commit({"a.txt": "a"}, message="two")
    assert clone.push("main").ok
    clone.git("reset", "--hard", "HEAD~1")
    clone.commit({"b.txt": "b"}, message="rewritten")
    assert_rejected(clone, "main", force=True, lines=[rejected("refs/heads/main"),
                                                               "  refs/heads/main: force-push would rewrite history already published to "
                                                               "acme/bert-tiny (push a new commit on top instead, or ask an admin to set allow_force_push)"])
    allow(gitea, "allow_force_push")
    assert clone.push("main", force=True).ok


def test_deleting_a_publishing_branch_is_refused_unless_allowed(clone: Clone, gitea: GiteaServer):
    clone.commit()
    assert clone.push("main", "main:develop", "main:other").ok
    # Git itself refuses to delete the branch HEAD names; here Gitea's default branch is develop.
    subprocess.run(["git", "symbolic-ref", "HEAD", "refs/heads/develop"], cwd=clone.bare, check=True)
    assert clone.push(":other").ok  # not a publishing branch
    assert_rejected(clone, ":main", lines=[rejected("refs/heads/main"),
                                                    "  refs/heads/main: deleting it would delete Hub branch main of acme/bert-tiny "
                                                    "(ask an admin to set allow_delete if that is intended)"])
    allow(gitea, "allow_delete")
    jobs_before = len(gitea.queued_jobs())
    deleted = clone.push(":main")
    assert deleted.ok
    assert deleted.remote[0].startswith("hf-publish: queued deletion of branch main -> "
                                        "https://huggingface.co/acme/bert-tiny (main), job ")
    assert len(gitea.queued_jobs()) == jobs_before + 1


def test_a_release_tag_on_a_published_commit_is_accepted(clone: Clone, gitea: GiteaServer):
    commit = clone.commit()
    assert clone.push("main").ok
    clone.git("tag", "-a", "v1.0", "-m", "release 1.0")
    result = clone.push("v1.0")
    assert result.ok
    assert result.remote[0].startswith(f"hf-publish: queued acme/bert-tiny@{commit[:7]} -> "
                                       "https://huggingface.co/acme/bert-tiny (v1.0), job ")


def test_a_tag_and_its_branch_may_arrive_in_one_push(clone: Clone):
    clone.commit()
    clone.git("tag", "v1.0")
    result = clone.push("main", "v1.0")
    assert result.ok
    assert len(result.remote) == 2


def test_a_tag_on_a_commit_no_publishing_branch_has_is_refused(clone: Clone):
    clone.commit()
    assert clone.push("main").ok
    clone.git("checkout", "--quiet", "-b", "experiment")
    commit = clone.commit({"x.txt": "x"})
    clone.git("tag", "v2.0")
    assert_rejected(clone, "experiment", "v2.0", lines=[rejected("refs/tags/v2.0"),
                                                                 f"  refs/tags/v2.0: tagged commit {commit[:12]} is not on a publishing branch "
                                                                 "(push it to main first, or in the same push)"])


def test_tags_that_do_not_match_are_not_published(clone: Clone, gitea: GiteaServer):
    clone.git("checkout", "--quiet", "-b", "experiment")
    clone.commit({"model.bin": b"\x80\x04K\x01."})
    clone.git("tag", "experiment-3")
    result = clone.push("experiment", "experiment-3")
    assert result.ok and result.remote == []
    assert gitea.queued_jobs() == []


def test_a_tag_on_a_tree_or_a_blob_is_refused(clone: Clone):
    clone.commit()
    assert clone.push("main").ok
    tree = clone.git("rev-parse", "HEAD^{tree}")
    blob = clone.git("rev-parse", "HEAD:README.md")
    clone.git("tag", "-a", "v-tree", "-m", "a tree", tree)
    clone.git("tag", "v-blob", blob)
    assert_rejected(clone, "v-tree", "v-blob", lines=[
        rejected("refs/tags/v-tree"),
        "  refs/tags/v-tree: points at a tree, not a commit (tag a commit: git tag -a NAME COMMIT)",
        rejected("refs/tags/v-blob"),
        "  refs/tags/v-blob: points at a blob, not a commit (tag a commit: git tag -a NAME COMMIT)",
    ])


def test_moving_a_published_tag_is_refused(clone: Clone):
    clone.commit()
    clone.git("tag", "v1.0")
    assert clone.push("main", "v1.0").ok
    clone.commit({"x.txt": "x"})
    clone.git("tag", "-f", "v1.0")
    assert_rejected(clone, "main", "v1.0", force=True, lines=[rejected("refs/tags/v1.0"),
                                                                       "  refs/tags/v1.0: moving a published tag rewrites acme/bert-tiny's tag v1.0 "
                                                                       "(create a new tag instead, or ask an admin to set allow_force_push)"])


def test_deleting_a_release_tag_is_refused(clone: Clone):
    clone.commit()
    clone.git("tag", "v1.0")
    assert clone.push("main", "v1.0").ok
    assert_rejected(clone, ":refs/tags/v1.0", lines=[
        rejected("refs/tags/v1.0"),
        "  refs/tags/v1.0: deleting it would delete Hub tag v1.0 of acme/bert-tiny "
        "(ask an admin to set allow_delete if that is intended)",
    ])


def test_a_sha256_repository_queues_a_push_and_rejects_bad_json_on_branch_and_tag(server: GiteaServer, tmp_path):
    server.write_config(RULE, extra=GROUPS)
    server.create_repo("acme", "bert-tiny", object_format="sha256")
    server.install("acme/bert-tiny")
    clone = server.clone("acme", "bert-tiny", tmp_path / "w", object_format="sha256")
    first = clone.commit({"README.md": CARD})
    assert len(first) == 64
    pushed = clone.push("main")
    assert pushed.ok and pushed.remote[0].startswith(f"hf-publish: queued acme/bert-tiny@{first[:7]} ")
    clone.commit({"config.json": "{"})
    clone.git("tag", "-a", "v1.0", "-m", "release")
    assert_rejected(clone, "main", "v1.0", lines=[
        rejected("refs/heads/main"), "  config.json: not valid JSON at line 1 (fix the file, or exclude it)",
        rejected("refs/tags/v1.0"), "  config.json: not valid JSON at line 1 (fix the file, or exclude it)"])
