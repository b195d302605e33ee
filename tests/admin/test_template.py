"""Repositories made tomorrow: ``install --template DIR`` writes a git template holding only our hooks and prints
the ``app.ini`` lines; a repository Gitea's git makes with it enforces the policy on its very first push."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gitea_hf_hook.admin.install import render
from tests.support.gitea_server import DISPATCHER, GITEA_STAND_IN, GiteaServer, assert_rejected
from tests.support.rules import CARD, GROUPS, RULE

HOOKS = ("pre-receive", "post-receive")
REFUSED_HINT = ("git copies the template into every repository and temporary clone Gitea makes, so it may hold "
                "nothing but our hooks: move that out, or name an empty folder")


def app_ini(template: Path) -> list[str]:
    return ["add to Gitea's app.ini, then restart Gitea; new, forked and migrated repositories get the hooks:",
            "[git.config]", f"init.templateDir = {template}"]


def listing(folder: Path) -> dict[str, int]:
    """Every entry under ``folder`` and its mode."""
    return {str(p.relative_to(folder)): p.lstat().st_mode & 0o7777 for p in sorted(folder.rglob("*"))}


@pytest.fixture
def site(server: GiteaServer) -> GiteaServer:
    server.write_config(RULE, extra=GROUPS)
    return server


def test_install_template_writes_only_our_two_hooks_and_prints_the_app_ini_lines(site: GiteaServer,
                                                                                 tmp_path: Path):
    template = tmp_path / "share" / "template"
    old = os.umask(0o077)  # root's umask on a hardened server: Gitea's user must still read the template
    try:
        result = site.cli("install", "--template", str(template))
    finally:
        os.umask(old)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.splitlines() == [
        f"wrote the template {template}: hooks/pre-receive.d/hf-publish and hooks/post-receive.d/hf-publish",
        *app_ini(template)]
    assert listing(template) == {"hooks": 0o755, "hooks/post-receive.d": 0o755, "hooks/post-receive.d/hf-publish": 0o755,
                                 "hooks/pre-receive.d": 0o755, "hooks/pre-receive.d/hf-publish": 0o755}
    assert template.stat().st_mode & 0o7777 == 0o755
    for hook in HOOKS:  # exactly what install writes into a repository
        assert (template / "hooks" / f"{hook}.d" / "hf-publish").read_text() == render(
            hook, sys.executable, str(site.config_path))
    again = site.cli("install", "--template", str(template))
    assert again.stdout.splitlines() == [
        f"the template {template} is up to date: hooks/pre-receive.d/hf-publish and hooks/post-receive.d/hf-publish",
        *app_ini(template)]


def test_a_repository_created_after_installation_gets_giteas_hooks_beside_ours_and_checks_its_first_push(
        site: GiteaServer, tmp_path: Path):
    template = tmp_path / "template"
    assert site.cli("install", "--template", str(template)).returncode == 0
    # What Gitea does with [git.config] init.templateDir: it sets it in its git home's .gitconfig.
    subprocess.run(["git", "config", "--global", "init.templateDir", str(template)], check=True, env=site.git_env())
    repo = site.create_repo("acme", "bert-tiny")  # git init --bare with HOME = Gitea's git home, then Gitea's files
    for hook in HOOKS:
        assert sorted(os.listdir(repo / "hooks" / f"{hook}.d")) == ["gitea", "hf-publish"]
        assert (repo / "hooks" / hook).read_text() == DISPATCHER
        assert (repo / "hooks" / f"{hook}.d" / "gitea").read_text() == GITEA_STAND_IN
        assert (repo / "hooks" / f"{hook}.d" / "hf-publish").stat().st_mode & 0o111
    clone = site.clone("acme", "bert-tiny", tmp_path / "work")
    clone.commit({"README.md": CARD, "model.bin": b"\x80\x04K\x01."})
    assert_rejected(clone, "main", lines=[
        "hf-publish: rejected refs/heads/main of acme/bert-tiny, which publishes to "
        "https://huggingface.co/acme/bert-tiny (branch main):",
        "  model.bin: pickle files can run code when loaded (convert the weights to safetensors)",
    ])
    clone.git("rm", "--quiet", "model.bin")
    commit = clone.commit()
    pushed = clone.push("main")
    assert pushed.ok, pushed.output
    assert pushed.remote[0].startswith(f"hf-publish: queued acme/bert-tiny@{commit[:7]} -> ")
    assert len(site.queued_jobs()) == 1
    # What the template gave it is exactly what sync would write.
    assert site.cli("sync").stdout == "the one repository is in order\n"


@pytest.mark.parametrize("planted", ["config", "hooks/pre-commit", "hooks/pre-receive.d/notify",
                                     "hooks/post-receive.d/hf-publish"])
def test_install_template_refuses_a_folder_holding_anything_else(site: GiteaServer, tmp_path: Path, planted: str):
    template = tmp_path / "template"
    (template / "hooks" / "pre-receive.d").mkdir(parents=True)
    (template / "hooks" / "post-receive.d").mkdir()
    (template / planted).write_text("#!/bin/sh\necho theirs\n")
    before = listing(template)
    result = site.cli("install", "--template", str(template))
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (f"gitea-hf-hook: error: the template {template} holds {planted}, which is not one of "
                             f"gitea-hf-hook's hooks ({REFUSED_HINT})\n")
    assert listing(template) == before


def test_install_names_repositories_or_all_or_a_template(site: GiteaServer):
    result = site.cli("install")
    assert (result.returncode, result.stderr) == (1, "gitea-hf-hook: error: name repositories as OWNER/REPO, or pass "
                                                     "--all or --template DIR (e.g. gitea-hf-hook install acme/bert)\n")


def test_install_all_and_a_template_in_one_command(site: GiteaServer, tmp_path: Path):
    site.create_repo("acme", "a")
    result = site.cli("install", "--all", "--template", str(tmp_path / "template"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "installed acme/a",
        f"wrote the template {tmp_path / 'template'}: hooks/pre-receive.d/hf-publish and "
        "hooks/post-receive.d/hf-publish",
        *app_ini(tmp_path / "template")]
