"""Paths the Hub cannot hold are refused at push time, by the same rule the worker publishes with."""

from __future__ import annotations

from tests.support.gitea_server import Clone, GiteaServer, assert_rejected

HEADER = ("hf-publish: rejected refs/heads/main of acme/bert-tiny, which publishes to "
          "https://huggingface.co/acme/bert-tiny (branch main):")
HINT = "(rename it, or exclude it in the rule)"


def test_a_file_under_a_cache_folder_is_refused_instead_of_silently_never_published(clone: Clone):
    clone.commit({".cache/huggingface/download/config.json": "{}", "config.json": "{}"})
    assert_rejected(clone, "main", lines=[
        HEADER,
        f"  .cache/huggingface/download/config.json: the Hub cannot hold a file or folder named .cache {HINT}",
    ])


def test_a_tree_entry_named_dot_dot_is_refused(clone: Clone):
    # git's index refuses such a name, so the tree is written with plumbing, as a hostile pusher would.
    blob = clone.git("hash-object", "-w", "--stdin", input=b"{}\n")
    card = clone.git("hash-object", "-w", "README.md")
    inner = clone.git("mktree", input=f"100644 blob {blob}\tconfig.json\n".encode())
    tree = clone.git("mktree", "--missing",
                     input=f"100644 blob {card}\tREADME.md\n040000 tree {inner}\t..\n".encode())
    commit = clone.git("commit-tree", tree, "-m", "crafted")
    assert_rejected(clone, f"{commit}:refs/heads/main", lines=[
        HEADER,
        f"  ../config.json: the Hub cannot hold a path with a '..' segment {HINT}",
    ])


def test_an_excluded_cache_folder_is_not_checked(clone: Clone, gitea: GiteaServer):
    gitea.config_path.write_text(gitea.config_path.read_text().replace(
        "    checks:", '    exclude: [".cache/"]\n    checks:'))
    clone.commit({".cache/huggingface/config.json": "{}"})
    assert clone.push("main").ok


def test_a_file_entry_naming_a_commit_is_refused(clone: Clone):
    # A tree written byte by byte, as a hostile pusher would: a file's mode, and the id of a commit whose message
    # could hold anything, past every content check.
    card = clone.git("hash-object", "-w", "README.md")
    payload = clone.git("commit-tree", clone.git("mktree", input=b""), "-m", "any bytes at all")
    entries = (b"100644 README.md\0" + bytes.fromhex(card) + b"100644 leak.txt\0" + bytes.fromhex(payload))
    tree = clone.git("hash-object", "-t", "tree", "-w", "--literally", "--stdin", input=entries)
    commit = clone.git("commit-tree", tree, "-m", "crafted")
    assert_rejected(clone, f"{commit}:refs/heads/main", lines=[
        HEADER, "  leak.txt: is a git commit, not a file (rebuild the commit with git add and git commit)"])
