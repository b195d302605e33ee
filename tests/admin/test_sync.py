"""An admin's timer runs ``sync``: repositories made since get the hooks, hooks that were edited, lost their run bit
or name an interpreter that is gone are written again, and when all is in order nothing changes and the output is
the same each time. A pusher who meets a hook whose interpreter is gone reads one line saying an admin must run
``sync``."""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path

import pytest

from gitea_hf_hook.admin.install import render
from tests.support.gitea_server import DISPATCHER, GITEA_STAND_IN, Clone, GiteaServer, assert_rejected
from tests.support.rules import CARD, GROUPS, RULE

HOOKS = ("pre-receive", "post-receive")
GONE = "/opt/removed/bin/python3"
PRE_GONE = ("hf-publish: rejected: the publishing check cannot run on this server (its program was moved or "
            "removed), so pushes to branches and tags are refused until a Gitea admin runs: gitea-hf-hook sync")
POST_GONE = ("hf-publish: the push landed, but it was not queued for publishing: the publishing hook cannot run on "
             "this server (its program was moved or removed); a Gitea admin must run: gitea-hf-hook sync")
LINK_HINT = ("Gitea's user could point a link anywhere, so none inside the repositories is followed; replace it with "
             "the real folder")


def hook_file(repo: Path, hook: str) -> Path:
    return repo / "hooks" / f"{hook}.d" / "hf-publish"


def expected(server: GiteaServer, hook: str, python: str = sys.executable) -> str:
    return render(hook, python, str(server.config_path))


def snapshot(*folders: Path) -> dict[str, tuple[int, int, int, int]]:
    """Every entry under ``folders``: inode, mode, modification and change times; any write or chmod shows."""
    return {str(p): (st.st_ino, st.st_mode, st.st_mtime_ns, st.st_ctime_ns)
            for folder in folders for p in (folder, *sorted(folder.rglob("*"))) for st in (p.lstat(),)}


def assert_in_order(server: GiteaServer, repo: Path) -> None:
    for hook in HOOKS:
        ours = hook_file(repo, hook)
        assert ours.read_text() == expected(server, hook)
        assert ours.stat().st_mode & 0o7777 == 0o755
        assert (repo / "hooks" / hook).read_text() == DISPATCHER
        assert (repo / "hooks" / f"{hook}.d" / "gitea").read_text() == GITEA_STAND_IN


@pytest.fixture
def site(server: GiteaServer) -> GiteaServer:
    server.write_config(RULE, extra=GROUPS)
    return server


def test_sync_installs_where_hooks_are_missing_and_then_changes_nothing_and_says_the_same(site: GiteaServer):
    site.create_repo("acme", "old")
    site.install("acme/old")
    new = [site.create_repo("acme", "new"), site.create_repo("zeta", "migrated")]
    wiki = site.create_repo("acme", "new", wiki=True)
    first = site.cli("sync")
    assert (first.returncode, first.stderr) == (0, "")
    assert first.stdout.splitlines() == ["installed acme/new", "installed zeta/migrated",
                                         "3 repositories: 2 installed, 1 in order"]
    for repo in new:
        assert_in_order(site, repo)
    assert not hook_file(wiki, "pre-receive").exists()
    before = snapshot(site.repo_root, site.spool)
    again = [site.cli("sync") for _ in range(2)]
    assert [(r.returncode, r.stdout, r.stderr) for r in again] == 2 * [(0, "all 3 repositories in order\n", "")]
    assert snapshot(site.repo_root, site.spool) == before


def test_sync_repairs_a_modified_hook_a_lost_run_bit_a_gone_interpreter_and_a_lost_file(site: GiteaServer):
    repos = {name: site.create_repo("acme", name) for name in ("edited", "chmodded", "moved", "half")}
    site.install("--all")
    with hook_file(repos["edited"], "pre-receive").open("a") as f:
        f.write("echo 'skipping checks today' >&2; exit 0\n")
    hook_file(repos["chmodded"], "post-receive").chmod(0o644)
    for hook in HOOKS:
        hook_file(repos["moved"], hook).write_text(expected(site, hook, GONE))
    hook_file(repos["half"], "post-receive").unlink()
    result = site.cli("sync")
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.splitlines() == [
        "repaired acme/chmodded: hooks/post-receive.d/hf-publish: it was not executable (mode 0644)",
        "repaired acme/edited: hooks/pre-receive.d/hf-publish: it was modified, or written by another installation",
        "repaired acme/half: hooks/post-receive.d/hf-publish was missing",
        f"repaired acme/moved: hooks/pre-receive.d/hf-publish: its interpreter {GONE} no longer exists",
        f"repaired acme/moved: hooks/post-receive.d/hf-publish: its interpreter {GONE} no longer exists",
        "4 repositories: 4 repaired",
    ]
    for repo in repos.values():
        assert_in_order(site, repo)
    assert site.cli("sync").stdout == "all 4 repositories in order\n"


def test_sync_names_a_hook_whose_package_is_gone(site: GiteaServer, tmp_path: Path):
    repo = site.create_repo("acme", "a")
    site.install("acme/a")
    lines = expected(site, "pre-receive").split("\n")
    at = next(i for i, line in enumerate(lines) if line.startswith("exec "))
    argv = shlex.split(lines[at][len("exec "):])
    argv[7] = str(tmp_path / "uninstalled")  # the first import folder: the one holding our package
    lines[at] = "exec " + shlex.join(argv)
    hook_file(repo, "pre-receive").write_text("\n".join(lines))
    result = site.cli("sync")
    assert result.stdout.splitlines() == [
        f"repaired acme/a: hooks/pre-receive.d/hf-publish: its package is no longer in {tmp_path / 'uninstalled'}",
        "1 repository: 1 repaired",
    ]
    assert_in_order(site, repo)


def test_sync_leaves_a_foreign_hf_publish_and_giteas_files_alone_and_goes_on(site: GiteaServer):
    theirs = site.create_repo("acme", "theirs")
    site.create_repo("acme", "plain")
    foreign = hook_file(theirs, "post-receive")
    foreign.write_text("#!/bin/sh\necho 'the team notifier'\n")
    foreign.chmod(0o700)
    before = snapshot(theirs)
    result = site.cli("sync")
    assert result.stdout.splitlines() == [
        "installed acme/plain",
        f"refused acme/theirs: {foreign} exists and was not written by gitea-hf-hook (move it aside, then run "
        "gitea-hf-hook sync again)",
        "2 repositories: 1 installed, 1 refused",
    ]
    assert (result.returncode, result.stderr) == (1, "gitea-hf-hook: error: 1 repository refused, without our hooks "
                                                     "(each 'refused' line above says what is in the way and how to "
                                                     "fix it)\n")
    assert snapshot(theirs) == before  # not even our pre-receive: half a pair would check but never queue


def test_sync_follows_no_link_and_skips_a_repository_that_is_one(site: GiteaServer, tmp_path: Path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "root-file").write_text("root's own\n")
    repo = site.create_repo("acme", "a")
    shutil.rmtree(repo / "hooks" / "post-receive.d")
    (repo / "hooks" / "post-receive.d").symlink_to(outside)
    (site.repo_root / "acme" / "evil.git").symlink_to(outside)
    before = snapshot(outside)
    result = site.cli("sync")
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        f"refused acme/a: {repo}/hooks/post-receive.d is a symbolic link ({LINK_HINT})",
        f"skipped acme/evil: {site.repo_root}/acme/evil.git is a symbolic link ({LINK_HINT})",
        "2 repositories: 1 skipped, 1 refused",
    ]
    assert snapshot(outside) == before
    assert os.listdir(repo / "hooks" / "pre-receive.d") == ["gitea"]


def test_sync_says_when_repo_root_is_missing(site: GiteaServer):
    shutil.rmtree(site.repo_root)
    result = site.cli("sync")
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (f"gitea-hf-hook: error: {site.config_path}: gitea.repo_root: {site.repo_root} does not "
                             "exist (set it to Gitea's [repository] ROOT, by default "
                             "<APP_DATA_PATH>/gitea-repositories)\n")


def break_hooks(clone: Clone, *hooks: str) -> None:
    """The hooks as an install whose package was since removed left them: naming an interpreter that is gone."""
    for hook in hooks:
        hook_file(clone.bare, hook).write_text(expected(clone.server, hook, GONE))


def test_a_push_meets_one_line_saying_an_admin_must_run_sync_when_the_interpreter_is_gone(clone: Clone,
                                                                                           gitea: GiteaServer):
    break_hooks(clone, *HOOKS)
    clone.commit()
    result = assert_rejected(clone, "main", lines=[PRE_GONE])
    assert "not found" not in result.output
    assert gitea.cli("sync").stdout.splitlines() == [
        f"repaired acme/bert-tiny: hooks/{hook}.d/hf-publish: its interpreter {GONE} no longer exists"
        for hook in HOOKS] + ["1 repository: 1 repaired"]
    pushed = clone.push("main")
    assert pushed.ok, pushed.output
    assert pushed.remote[0].startswith("hf-publish: queued acme/bert-tiny@")


def test_a_pull_request_ref_passes_a_hook_whose_interpreter_is_gone(clone: Clone):
    # Nothing can tell which refs publish, so only branches and tags are refused: a pull request's ref never
    # publishes.
    break_hooks(clone, "pre-receive")
    commit = clone.commit()
    result = clone.push("HEAD:refs/for/main/topic")
    assert "rejected" not in result.output and "not found" not in result.output
    assert clone.server_refs().get("refs/for/main/topic") == commit


def test_a_push_whose_post_receive_interpreter_is_gone_lands_and_says_it_was_not_queued(clone: Clone,
                                                                                        gitea: GiteaServer):
    break_hooks(clone, "post-receive")
    commit = clone.commit({"README.md": CARD})
    result = clone.push("main")
    assert result.ok, result.output
    assert result.remote == [POST_GONE]
    assert clone.server_refs()["refs/heads/main"] == commit
    assert gitea.queued_jobs() == []


def test_giteas_own_pushes_pass_a_hook_whose_interpreter_is_gone(clone: Clone):
    break_hooks(clone, *HOOKS)
    clone.commit()
    result = clone.push("main:refs/pull/1/head", via="internal")
    assert result.ok, result.output
    assert result.remote == []


def test_sync_warns_of_a_missing_dispatcher_on_every_run_and_changes_nothing(site: GiteaServer):
    repo = site.create_repo("acme", "a")
    site.install("acme/a")
    (repo / "hooks" / "pre-receive").unlink()
    before = snapshot(site.repo_root)
    runs = [site.cli("sync") for _ in range(2)]
    assert [r.stdout.splitlines() for r in runs] == 2 * [[
        "warning acme/a: hooks/pre-receive is not Gitea's dispatcher, so the hook will not run (let Gitea "
        "resynchronise its hooks)",
        "the one repository is in order"]]
    assert snapshot(site.repo_root) == before
