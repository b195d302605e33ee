"""Gitea's user owns every folder of a repository, and the admin runs ``install`` and ``uninstall`` as root: a link,
a FIFO or a name that is not UTF-8 planted there is refused, skipped or reported, never followed, and root's own
files elsewhere are left exactly as they were."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import pytest

from tests.support.gitea_server import GiteaServer
from tests.support.jobs import ROOT
from tests.support.rules import GROUPS, RULE

HINT = ("Gitea's user could point a link anywhere, so none inside the repositories is followed; replace it with the "
        "real folder")
OWN = "root's own\n"
MARKER = "# managed-by: gitea-hf-hook\n"
GIT_UID = 1234  # stands in for Gitea's user: an owner that is not root


class Outside(NamedTuple):
    """Root's files outside the repositories: every file under ``folder`` with its content and mode."""

    folder: Path

    def state(self) -> dict[str, tuple[str, int]]:
        return {str(p.relative_to(self.folder)): (p.read_text() if p.is_file() else "", p.stat().st_mode & 0o7777)
                for p in sorted(self.folder.rglob("*"))}


@pytest.fixture
def outside(tmp_path: Path) -> Outside:
    """``root-file`` (0600), and a folder laid out as a repository's ``hooks/`` whose hook of ours is foreign."""
    folder = tmp_path / "outside"
    (folder / "etc" / "pre-receive.d").mkdir(parents=True)
    (folder / "root-file").write_text(OWN)
    (folder / "root-file").chmod(0o600)
    (folder / "etc" / "pre-receive.d" / "hf-publish").write_text(MARKER)
    return Outside(folder)


@pytest.fixture
def site(server: GiteaServer) -> GiteaServer:
    server.write_config(RULE, extra=GROUPS)
    return server


def run(server: GiteaServer, *args: str,
        plant: Callable[[int], None] | None = None) -> subprocess.CompletedProcess[str]:
    """The command as the admin runs it. With ``plant``, the process starts, waits on its standard input while
    ``plant(pid)`` puts in place what Gitea's user would have planted for that pid, then goes on."""
    wait = "import sys; sys.stdin.readline(); " if plant else ""
    code = wait + "from gitea_hf_hook.admin.cli import main; main()"
    proc = subprocess.Popen([sys.executable, "-c", code, "--config", str(server.config_path), *args], cwd=ROOT,
                            env=server.git_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    if plant:
        plant(proc.pid)
    try:
        out, err = proc.communicate("\n", timeout=300)  # a read blocked on a planted FIFO fails, not hangs
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def assert_ours(hook_file: Path) -> None:
    assert not hook_file.is_symlink() and hook_file.is_file()
    assert "managed-by: gitea-hf-hook" in hook_file.read_text()
    assert hook_file.stat().st_mode & 0o7777 == 0o755


def test_install_writes_through_no_link_planted_at_a_temporary_name(site: GiteaServer, outside: Outside) -> None:
    repo = site.create_repo("acme", "a")
    before = outside.state()
    planted: list[Path] = []

    def plant(pid: int) -> None:
        for hook in ("pre-receive", "post-receive"):
            for name in (f"hf-publish.tmp{pid}", f".hf-publish.{pid}", "hf-publish.tmp"):
                link = repo / "hooks" / f"{hook}.d" / name
                link.symlink_to(outside.folder / "root-file")
                planted.append(link)

    result = run(site, "install", "acme/a", plant=plant)
    assert (result.returncode, result.stdout, result.stderr) == (0, "installed acme/a\n", "")
    assert outside.state() == before
    for hook in ("pre-receive", "post-receive"):
        assert_ours(repo / "hooks" / f"{hook}.d" / "hf-publish")
        assert sorted(os.listdir(repo / "hooks" / f"{hook}.d")) == sorted(
            ["gitea", "hf-publish", *(p.name for p in planted if p.parent.name == f"{hook}.d")])
    assert all(os.readlink(p) == str(outside.folder / "root-file") for p in planted)


def test_install_refuses_a_hooks_folder_that_is_a_link(site: GiteaServer, outside: Outside) -> None:
    repo = site.create_repo("acme", "a")
    shutil.rmtree(repo / "hooks")
    (repo / "hooks").symlink_to(outside.folder / "etc")
    before = outside.state()
    result = run(site, "install", "acme/a")
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == f"gitea-hf-hook: error: {repo}/hooks is a symbolic link ({HINT})\n"
    assert outside.state() == before


def test_install_refuses_a_hook_folder_that_is_a_link_and_writes_neither_hook(site: GiteaServer,
                                                                              outside: Outside) -> None:
    repo = site.create_repo("acme", "a")
    shutil.rmtree(repo / "hooks" / "post-receive.d")
    (repo / "hooks" / "post-receive.d").symlink_to(outside.folder / "etc")
    before = outside.state()
    result = run(site, "install", "acme/a")
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == f"gitea-hf-hook: error: {repo}/hooks/post-receive.d is a symbolic link ({HINT})\n"
    assert outside.state() == before
    assert os.listdir(repo / "hooks" / "pre-receive.d") == ["gitea"]


def test_install_and_uninstall_refuse_a_repository_folder_that_is_a_link(site: GiteaServer,
                                                                         outside: Outside) -> None:
    elsewhere = site.create_repo("zeta", "real")
    link = site.repo_root / "acme" / "evil.git"
    link.parent.mkdir()
    link.symlink_to(elsewhere)
    for verb in ("install", "uninstall"):
        result = run(site, verb, "acme/evil")
        assert (result.returncode, result.stdout) == (1, "")
        assert result.stderr == f"gitea-hf-hook: error: acme/evil: {link} is a symbolic link ({HINT})\n"
    assert os.listdir(elsewhere / "hooks" / "pre-receive.d") == ["gitea"]


def test_install_all_skips_links_in_place_of_repositories_and_owners(site: GiteaServer, tmp_path: Path) -> None:
    site.create_repo("acme", "a")
    elsewhere = GiteaServer(tmp_path / "elsewhere")
    target = elsewhere.create_repo("acme", "real")
    other_owner = elsewhere.create_repo("zeta", "x")
    (site.repo_root / "acme" / "evil.git").symlink_to(target)
    (site.repo_root / "mallory").symlink_to(other_owner.parent)
    skipped = [f"skipped acme/evil: {site.repo_root}/acme/evil.git is a symbolic link ({HINT})",
               f"skipped mallory: {site.repo_root}/mallory is a symbolic link ({HINT})"]
    result = run(site, "install", "--all")
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.splitlines() == ["installed acme/a", *skipped]
    for repo in (target, other_owner):
        assert os.listdir(repo / "hooks" / "pre-receive.d") == ["gitea"]
    assert run(site, "uninstall", "--all").stdout.splitlines() == ["uninstalled acme/a", *skipped]


def test_uninstall_removes_nothing_through_a_hook_folder_that_is_a_link(site: GiteaServer,
                                                                        outside: Outside) -> None:
    repo = site.create_repo("acme", "a")
    assert run(site, "install", "acme/a").returncode == 0
    shutil.rmtree(repo / "hooks" / "post-receive.d")
    (repo / "hooks" / "post-receive.d").symlink_to(outside.folder / "etc" / "pre-receive.d")
    before = outside.state()
    result = run(site, "uninstall", "acme/a")
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == f"gitea-hf-hook: error: {repo}/hooks/post-receive.d is a symbolic link ({HINT})\n"
    assert outside.state() == before
    assert_ours(repo / "hooks" / "pre-receive.d" / "hf-publish")


@pytest.mark.parametrize("planted", ["link", "fifo"])
def test_install_reads_no_link_or_fifo_in_place_of_its_hook_file(site: GiteaServer, outside: Outside,
                                                                 planted: str) -> None:
    """A link to a file holding our marker is not ours, and a FIFO neither blocks install nor counts as ours."""
    repo = site.create_repo("acme", "a")
    hook_file = repo / "hooks" / "post-receive.d" / "hf-publish"
    if planted == "link":
        hook_file.symlink_to(outside.folder / "etc" / "pre-receive.d" / "hf-publish")
    else:
        os.mkfifo(hook_file)
    before = outside.state()
    result = run(site, "install", "acme/a")
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (f"gitea-hf-hook: error: {hook_file} exists and was not written by gitea-hf-hook "
                             "(move it aside, then install again)\n")
    assert outside.state() == before
    assert os.listdir(repo / "hooks" / "pre-receive.d") == ["gitea"]
    assert run(site, "uninstall", "acme/a").stdout == "not installed in acme/a\n"
    assert hook_file.is_symlink() if planted == "link" else hook_file.is_fifo()


def test_a_dispatcher_that_is_a_link_or_a_fifo_is_not_read(site: GiteaServer, outside: Outside) -> None:
    repo = site.create_repo("acme", "a")
    dispatcher = (repo / "hooks" / "pre-receive").read_text()
    (outside.folder / "dispatcher").write_text(dispatcher)
    (repo / "hooks" / "pre-receive").unlink()
    (repo / "hooks" / "pre-receive").symlink_to(outside.folder / "dispatcher")
    (repo / "hooks" / "post-receive").unlink()
    os.mkfifo(repo / "hooks" / "post-receive")
    before = outside.state()
    result = run(site, "install", "acme/a")
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == (
        "installed acme/a; warning: hooks/pre-receive is not Gitea's dispatcher, so the hook will not run (let Gitea "
        "resynchronise its hooks); warning: hooks/post-receive is not Gitea's dispatcher, so the hook will not run "
        "(let Gitea resynchronise its hooks)\n")
    assert outside.state() == before


def test_install_as_root_gives_the_hook_files_to_the_owner_of_hooks(site: GiteaServer) -> None:
    if os.geteuid() != 0:
        pytest.skip("only root can give files away")
    repo = site.create_repo("acme", "a")
    shutil.rmtree(repo / "hooks" / "post-receive.d")
    for folder, dirs, files in os.walk(repo):
        for entry in (folder, *(os.path.join(folder, n) for n in dirs + files)):
            os.lchown(entry, GIT_UID, GIT_UID)
    result = run(site, "install", "acme/a")
    assert (result.returncode, result.stdout, result.stderr) == (0, "installed acme/a\n", "")
    made = repo / "hooks" / "post-receive.d"
    assert (made.stat().st_uid, made.stat().st_gid, made.stat().st_mode & 0o777) == (GIT_UID, GIT_UID, 0o755)
    for hook in ("pre-receive", "post-receive"):
        hook_file = repo / "hooks" / f"{hook}.d" / "hf-publish"
        assert_ours(hook_file)
        assert (hook_file.stat().st_uid, hook_file.stat().st_gid) == (GIT_UID, GIT_UID)


def test_install_all_names_a_repository_that_is_not_utf8_escaped(site: GiteaServer) -> None:
    repo = site.create_repo("acme", "\udcff")
    result = run(site, "install", "--all")
    assert (result.returncode, result.stdout, result.stderr) == (0, "installed acme/\\udcff\n", "")
    assert_ours(repo / "hooks" / "pre-receive.d" / "hf-publish")
    assert run(site, "uninstall", "--all").stdout == "uninstalled acme/\\udcff\n"

