"""The git plumbing the hooks use: one batch process, safe to abandon half read."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gitea_hf_hook.errors import GitError
from gitea_hf_hook.gitea import git
from tests.support.gitea_server import Clone, GiteaServer


def test_a_content_batch_abandoned_early_does_not_hang(server: GiteaServer, tmp_path: Path):
    """A caller that stops after the first object while git still has megabytes to say must not block."""
    clone = Clone(server, tmp_path / "unused.git", "acme", "x", tmp_path / "w")
    clone.commit({f"big{i}.bin": bytes([i]) * 300_000 for i in range(40)})
    oids = clone.git("ls-tree", "-r", "--format=%(objectname)", "HEAD").split()
    # Enough requests that neither side's pipe can hold them: the writer and git both block unless our
    # end closes first.
    script = ("import sys; from gitea_hf_hook.gitea import git; objects = git.read_objects(sys.argv[1:] * 2000); "
              "first = next(objects); objects.close(); print(first[2])")
    done = subprocess.run([sys.executable, "-c", script, *oids], cwd=clone.path, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "300000\n"


def _history(server: GiteaServer, tmp_path: Path) -> tuple[Clone, str, str]:
    clone = Clone(server, tmp_path / "unused.git", "acme", "x", tmp_path / "w")
    first = clone.commit({"a.txt": "one\n"}, "first")
    second = clone.commit({"b.txt": "two\n"}, "Second commit\n\nWith a body.\n")
    return clone, first, second


def test_rev_parse_names_what_a_ref_points_at_and_none_for_what_does_not_exist(server: GiteaServer, tmp_path: Path):
    clone, first, second = _history(server, tmp_path)
    clone.git("tag", "-a", "-m", "release", "v1", first)
    cwd = str(clone.path)
    assert git.rev_parse("refs/heads/main", cwd) == second
    assert git.rev_parse("HEAD~1", cwd) == first
    assert git.rev_parse("v1", cwd) == clone.git("rev-parse", "refs/tags/v1")  # the tag object, not its commit
    assert git.rev_parse("refs/heads/missing", cwd) is None
    assert git.rev_parse("1" * 40 + "^{commit}", cwd) is None


def test_commit_message_is_what_follows_the_headers(server: GiteaServer, tmp_path: Path):
    clone, first, second = _history(server, tmp_path)
    cwd = str(clone.path)
    assert git.commit_message(second, cwd) == b"Second commit\n\nWith a body.\n"
    clone.git("tag", "-a", "-m", "release", "v1", first)
    assert git.commit_message("v1", cwd) == b"first\n"  # a tag is followed to its commit
    # A signature header spans lines, one of them blank but for its leading space: still a header.
    tree = clone.git("rev-parse", f"{second}^{{tree}}")
    raw = (f"tree {tree}\nauthor A <a@example.com> 1700000000 +0000\ncommitter A <a@example.com> 1700000000 +0000\n"
           "gpgsig -----BEGIN PGP SIGNATURE-----\n \n iQEz\n -----END PGP SIGNATURE-----\n\nSigned\n")
    signed = clone.git("hash-object", "-t", "commit", "-w", "--stdin", input=raw.encode())
    assert git.commit_message(signed, cwd) == b"Signed\n"
    with pytest.raises(GitError) as caught:
        git.commit_message(tree, cwd)
    assert str(caught.value) == (f"git cat-file failed in {cwd}: fatal: git cat-file {tree}: bad file "
                                 "(check that the repository is intact with git fsck)")


def test_a_revision_that_looks_like_an_option_is_read_as_a_revision(server: GiteaServer, tmp_path: Path):
    """A name starting with "-" comes from a ref or a job file: git must never take it for an option."""
    clone, first, second = _history(server, tmp_path)
    cwd = str(clone.path)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    option = f"--output={victim}"
    with pytest.raises(GitError) as caught:
        git.diff(option, second, cwd)
    assert str(caught.value) == (f"git diff-tree failed in {cwd}: fatal: option '{option}' must come before "
                                 "non-option arguments (check that the repository is intact with git fsck)")
    with pytest.raises(GitError) as caught:
        git.changed_files(first, option, cwd)
    assert str(caught.value) == (f"git diff-tree failed in {cwd}: fatal: option '{option}' must come before "
                                 "non-option arguments (check that the repository is intact with git fsck)")
    with pytest.raises(GitError) as caught:
        git.list_tree(option, cwd)
    assert str(caught.value) == (f"git ls-tree failed in {cwd}: fatal: Not a valid object name {option} "
                                 "(check that the repository is intact with git fsck)")
    with pytest.raises(GitError) as caught:
        git.commit_message(option, cwd)
    assert str(caught.value) == (f"git cat-file failed in {cwd}: fatal: Not a valid object name {option} "
                                 "(check that the repository is intact with git fsck)")
    assert git.rev_parse(option, cwd) is None
    assert git.rev_parse("--git-dir", cwd) is None  # not the repository's folder
    assert victim.read_text() == "precious\n"
    with pytest.raises(GitError):
        git.is_ancestor("--help", second, cwd)
    # After --end-of-options a tip is a revision too: "--not" can no longer be smuggled in as one.
    with pytest.raises(GitError):
        git.reachable_from_any(second, ["--all"], cwd)
    assert git.reachable_from_any(first, [second], cwd)
    assert not git.reachable_from_any(second, [first], cwd)
    assert git.refs("--format=%(refname)", cwd) == {}
    assert git.refs("refs/heads/", cwd) == {"refs/heads/main": second}


@pytest.mark.parametrize("args", [("log", "-1"), ("diff", "HEAD"), ("show",), ("archive", "HEAD"),
                                  ("cat-file", "--filters", "HEAD:a"), ("diff-tree", "-p", "HEAD")])
def test_a_confined_reader_runs_plumbing_only(tmp_path: Path, args: tuple[str, ...]) -> None:
    """Drivers the repository's attributes choose run in porcelain whatever the settings: confined, git refuses
    to start it at all."""
    subprocess.run(["git", "init", "--bare", "--quiet", str(tmp_path)], check=True)
    with git.confined(), pytest.raises(GitError) as refused:
        git.run(*args, cwd=str(tmp_path))
    assert refused.value.message == f"git {' '.join(args[:2])} is not run by a reader that trusts no repository"


def test_a_git_command_interrupted_by_the_push_deadline_is_stopped_and_reaped(tmp_path: Path):
    """The push's deadline raises in the middle of a read: the git it was waiting for must not run on."""
    script = """
import os, signal, sys
from gitea_hf_hook.gitea import git
class Deadline(BaseException):
    pass
def expire(signum, frame):
    raise Deadline
signal.signal(signal.SIGALRM, expire)
signal.setitimer(signal.ITIMER_REAL, 0.3)
try:
    git.run("-c", "alias.slow=!exec sleep 10", "slow")
except Deadline:
    pass
children = open(f"/proc/self/task/{os.getpid()}/children").read().split()
print("children:", children)
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=20)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "children: []\n"
