"""An admin installs the hooks beside Gitea's own, checks pushes offline, and takes the hooks out again."""

from __future__ import annotations

import os
import secrets
import subprocess
from pathlib import Path

from tests.support.gitea_server import DISPATCHER, GITEA_STAND_IN, Clone, GiteaServer
from tests.support.rules import CARD, GROUPS, RULE


def test_install_writes_executable_hooks_beside_giteas_and_leaves_giteas_alone(server: GiteaServer):
    server.write_config(RULE, extra=GROUPS)
    repo = server.create_repo("acme", "bert-tiny")
    result = server.cli("install", "ACME/Bert-Tiny")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "installed acme/bert-tiny\n"
    for hook in ("pre-receive", "post-receive"):
        ours = repo / "hooks" / f"{hook}.d" / "hf-publish"
        text = ours.read_text()
        assert os.access(ours, os.X_OK)
        assert "managed-by: gitea-hf-hook" in text
        assert f"{hook} '{server.config_path}'" in text or f"{hook} {server.config_path}" in text
        assert (repo / "hooks" / hook).read_text() == DISPATCHER
        assert (repo / "hooks" / f"{hook}.d" / "gitea").read_text() == GITEA_STAND_IN
    assert (server.spool / "queue").is_dir()


def test_install_all_covers_every_repository_but_wikis(server: GiteaServer):
    server.write_config(RULE, extra=GROUPS)
    for owner, name in (("acme", "a"), ("acme", "b"), ("zeta", "c")):
        server.create_repo(owner, name)
    wiki = server.create_repo("acme", "a", wiki=True)
    result = server.cli("install", "--all")
    assert result.stdout.splitlines() == ["installed acme/a", "installed acme/b", "installed zeta/c"]
    assert not (wiki / "hooks" / "pre-receive.d" / "hf-publish").exists()


def test_install_warns_when_gitea_dispatcher_is_missing(server: GiteaServer):
    server.write_config(RULE, extra=GROUPS)
    repo = server.create_repo("acme", "a")
    (repo / "hooks" / "pre-receive").unlink()
    result = server.cli("install", "acme/a")
    assert result.stdout == ("installed acme/a; warning: hooks/pre-receive is not Gitea's dispatcher, so the hook "
                             "will not run (let Gitea resynchronise its hooks)\n")


def test_install_refuses_to_overwrite_a_file_it_did_not_write(server: GiteaServer):
    server.write_config(RULE, extra=GROUPS)
    repo = server.create_repo("acme", "a")
    foreign = repo / "hooks" / "pre-receive.d" / "hf-publish"
    foreign.write_text("#!/bin/sh\necho mine\n")
    result = server.cli("install", "acme/a")
    assert result.returncode == 1
    assert result.stderr == (f"gitea-hf-hook: error: {foreign} exists and was not written by gitea-hf-hook "
                             "(move it aside, then install again)\n")
    assert foreign.read_text() == "#!/bin/sh\necho mine\n"


def test_install_names_a_missing_repository(server: GiteaServer):
    server.write_config(RULE, extra=GROUPS)
    result = server.cli("install", "acme/nope")
    assert result.returncode == 1
    assert result.stderr == (f"gitea-hf-hook: error: acme/nope: no repository at "
                             f"{server.repo_root}/acme/nope.git (check the name and gitea.repo_root in the config)\n")


def test_uninstall_removes_only_our_hooks(gitea: GiteaServer):
    repo = gitea.repo_root / "acme" / "bert-tiny.git"
    mine = repo / "hooks" / "post-receive.d" / "notify"
    mine.write_text("#!/bin/sh\n")
    result = gitea.cli("uninstall", "acme/bert-tiny")
    assert result.stdout == "uninstalled acme/bert-tiny\n"
    assert sorted(p.name for p in (repo / "hooks" / "post-receive.d").iterdir()) == ["gitea", "notify"]
    assert sorted(p.name for p in (repo / "hooks" / "pre-receive.d").iterdir()) == ["gitea"]
    assert gitea.cli("uninstall", "acme/bert-tiny").stdout == "not installed in acme/bert-tiny\n"


def test_the_installed_hook_ignores_a_pythonpath_from_giteas_environment(clone, tmp_path):
    """Hooks run with whatever environment Gitea has; PYTHONPATH must not be able to swap our code."""
    evil = tmp_path / "evil" / "gitea_hf_hook"
    evil.mkdir(parents=True)
    (evil / "__init__.py").write_text("raise SystemExit('hijacked')\n")
    (evil / "hook.py").write_text("def main(argv):\n    return 0\n")
    clone.commit({"model.bin": b"\x80\x04K\x01."})
    result = clone.push("main", env={"PYTHONPATH": str(tmp_path / "evil")})
    assert not result.ok
    assert result.remote[1] == "  model.bin: pickle files can run code when loaded (convert the weights to safetensors)"


def test_check_prints_what_a_push_would_print(gitea: GiteaServer, clone):
    clone.commit()
    assert clone.push("main").ok
    clone.commit({"model.bin": b"\x80\x04K\x01."})
    rev = clone.git("rev-parse", "HEAD")
    subprocess.run(["git", "push", "--quiet", str(clone.bare), f"{rev}:refs/heads/staging"], cwd=clone.path,
                   check=True, env={**os.environ, "GITEA_INTERNAL_PUSH": "true"})
    result = gitea.cli("check", "acme/bert-tiny", "main", rev, "--user", "carol")
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        "hf-publish: rejected refs/heads/main of acme/bert-tiny, which publishes to "
        "https://huggingface.co/acme/bert-tiny (branch main):",
        "  refs/heads/main: carol may not publish to acme/bert-tiny "
        "(publishers: alice, @ml-release; ask a Gitea admin to add you)",
    ]  # who first: a pusher who may not publish reads nothing about the content
    pushed = clone.push("main", user="carol")
    assert pushed.remote == result.stdout.splitlines()
    ok = gitea.cli("check", "acme/bert-tiny", "main", "--user", "alice")
    assert ok.returncode == 0
    assert ok.stdout == ("hf-publish: accepted refs/heads/main of acme/bert-tiny, which publishes to "
                         "https://huggingface.co/acme/bert-tiny (branch main)\n")


def test_check_says_when_a_ref_does_not_publish(gitea: GiteaServer, clone):
    clone.commit({"README.md": CARD})
    assert clone.push("main:experiment").ok
    result = gitea.cli("check", "acme/bert-tiny", "experiment", "--user", "alice")
    assert result.stdout == ("hf-publish: refs/heads/experiment of acme/bert-tiny does not publish: no repos entry "
                             "maps it to the Hub\n")


def test_uninstall_without_repositories_says_how(server: GiteaServer):
    server.write_config(RULE, extra=GROUPS)
    result = server.cli("uninstall")
    assert result.returncode == 1
    assert result.stderr == ("gitea-hf-hook: error: name repositories as OWNER/REPO, or pass --all "
                             "(e.g. gitea-hf-hook uninstall acme/bert)\n")


def test_install_creates_a_spool_where_gitea_writes_only_the_hook_folders(server: GiteaServer):
    """The hooks run as Gitea's user, the worker as its own user in Gitea's group: Gitea's user may add jobs, and
    nothing it can write decides what the worker does."""
    server.write_config(RULE, extra=GROUPS)
    server.create_repo("acme", "a")
    assert server.cli("install", "acme/a").returncode == 0
    modes = {folder: oct((server.spool / folder).stat().st_mode & 0o7777)
             for folder in ("", "tmp", "queue", "cards", "active", "done", "failed", "state", "state/targets",
                            "state/locks")}
    assert modes == {"": "0o2750", "tmp": "0o2770", "queue": "0o2770", "cards": "0o2770", "active": "0o2750",
                     "done": "0o2750", "failed": "0o2750", "state": "0o2750", "state/targets": "0o2750",
                     "state/locks": "0o2750"}


def _pushed_before_install(server: GiteaServer, work: Path, token: str) -> Clone:
    """acme/bert-tiny as it stood before the hooks: a clean tag v1.0, then a pickle and a token on main, and an
    experiment branch no rule publishes."""
    repo = server.clone("acme", "bert-tiny", work)
    repo.commit({"README.md": CARD})
    repo.git("tag", "-a", "v1.0", "-m", "first release")
    repo.commit({"model.bin": b"\x80\x04K\x01.", "train.py": f"import os\n\nHF_TOKEN = '{token}'\n"})
    assert repo.push("main", "v1.0", "main:experiment").ok
    return repo


def test_install_shows_what_the_first_publish_of_content_pushed_before_it_would_meet(server: GiteaServer,
                                                                                     tmp_path: Path):
    server.write_config(RULE, extra=GROUPS)
    server.create_repo("acme", "bert-tiny")
    token = "hf_" + "Ab" + secrets.token_hex(16)
    _pushed_before_install(server, tmp_path / "work", token)
    result = server.cli("install", "acme/bert-tiny")
    assert result.returncode == 0, result.stderr
    main = [
        "hf-publish: rejected refs/heads/main of acme/bert-tiny, which publishes to "
        "https://huggingface.co/acme/bert-tiny (branch main):",
        "  model.bin: pickle files can run code when loaded (convert the weights to safetensors)",
        "  train.py:3: looks like a Hugging Face token (remove it, rewrite the commit, and revoke the token)",
    ]
    assert result.stdout.splitlines() == [
        "installed acme/bert-tiny",
        *main,
        "hf-publish: accepted refs/tags/v1.0 of acme/bert-tiny, which publishes to "
        "https://huggingface.co/acme/bert-tiny (tag v1.0)",
        "warning: 1 publishing ref would be refused, so its first publish will fail until fixed (fix what is "
        "listed above in a new commit and push it; for a tag, tag a fixed commit)",
    ]
    assert token not in result.stdout
    assert (server.repo_root / "acme" / "bert-tiny.git" / "hooks" / "pre-receive.d" / "hf-publish").is_file()
    # The admin's own dry run of main says the same.
    assert server.cli("check", "acme/bert-tiny", "main", "--user", "alice").stdout.splitlines() == main


def test_install_with_enforce_off_shows_what_would_be_rejected_and_warns_of_nothing(server: GiteaServer,
                                                                                   tmp_path: Path):
    server.write_config(RULE, extra=GROUPS + "enforce: false\n")
    server.create_repo("acme", "bert-tiny")
    _pushed_before_install(server, tmp_path / "work", "hf_" + "Ab" + secrets.token_hex(16))
    result = server.cli("install", "acme/bert-tiny")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "installed acme/bert-tiny",
        "hf-publish: would reject refs/heads/main of acme/bert-tiny, which publishes to "
        "https://huggingface.co/acme/bert-tiny (branch main) (enforce is off, so it lands in Gitea but is not published):",
        "  model.bin: pickle files can run code when loaded (convert the weights to safetensors)",
        "  train.py:3: looks like a Hugging Face token (remove it, rewrite the commit, and revoke the token)",
        "hf-publish: accepted refs/tags/v1.0 of acme/bert-tiny, which publishes to "
        "https://huggingface.co/acme/bert-tiny (tag v1.0)",
    ]


def test_install_prints_nothing_more_for_a_repository_whose_refs_do_not_publish(server: GiteaServer,
                                                                               tmp_path: Path):
    server.write_config(RULE, extra=GROUPS)
    server.create_repo("acme", "notes")
    server.create_repo("zeta", "empty")
    notes = server.clone("acme", "notes", tmp_path / "notes")
    notes.commit({"model.bin": b"\x80\x04K\x01."})
    notes.git("tag", "nightly")
    assert notes.push("main:draft", "nightly").ok
    result = server.cli("install", "--all")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["installed acme/notes", "installed zeta/empty"]


def test_install_checks_a_repository_another_user_owns_without_running_its_config(server: GiteaServer,
                                                                                   tmp_path: Path):
    """Run as root over repositories Gitea's user owns, and can configure: install reads them with git confined,
    so the existing refs are checked, and nothing the repository's config names is run."""
    server.write_config(RULE, extra=GROUPS)
    repo = server.create_repo("acme", "bert-tiny")
    _pushed_before_install(server, tmp_path / "work", "hf_" + "Ab" + secrets.token_hex(16))
    canary = tmp_path / "ran"
    program = tmp_path / "program"
    program.write_text(f"#!/bin/sh\ntouch {canary}\n")
    program.chmod(0o755)
    for key in ("core.fsmonitor", "core.pager", "diff.external", "gpg.program"):
        subprocess.run(["git", "config", key, str(program)], cwd=repo, check=True)
    for folder, dirs, files in os.walk(repo):
        for entry in (folder, *(os.path.join(folder, n) for n in dirs + files)):
            os.lchown(entry, 1234, 1234)
    result = server.cli("install", "acme/bert-tiny")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "installed acme/bert-tiny"
    assert any(line.startswith("hf-publish: rejected refs/heads/main of acme/bert-tiny") for line in lines), lines
    assert not canary.exists()
    assert (repo / "hooks" / "pre-receive.d" / "hf-publish").is_file()


ROOT_HINT = "set it to Gitea's [repository] ROOT, by default <APP_DATA_PATH>/gitea-repositories"


def test_install_all_says_when_repo_root_does_not_exist(server: GiteaServer):
    server.write_config(RULE, extra=GROUPS)
    server.repo_root.rmdir()
    result = server.cli("install", "--all")
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (f"gitea-hf-hook: error: {server.config_path}: gitea.repo_root: {server.repo_root} does "
                             f"not exist ({ROOT_HINT})\n")


def test_install_all_says_when_repo_root_is_a_file(server: GiteaServer):
    server.write_config(RULE, extra=GROUPS)
    server.repo_root.rmdir()
    server.repo_root.write_text("")
    result = server.cli("install", "--all")
    assert result.stderr == (f"gitea-hf-hook: error: {server.config_path}: gitea.repo_root: {server.repo_root} is "
                             f"not a folder ({ROOT_HINT})\n")


def test_install_and_uninstall_all_say_when_repo_root_holds_no_repositories_but_wikis(server: GiteaServer):
    server.write_config(RULE, extra=GROUPS)
    server.create_repo("acme", "a", wiki=True)
    (server.repo_root / "zeta").mkdir()  # an owner whose repositories were all deleted
    for verb in ("install", "uninstall"):
        result = server.cli(verb, "--all")
        assert (result.returncode, result.stdout) == (1, "")
        assert result.stderr == (
            f"gitea-hf-hook: error: {server.config_path}: gitea.repo_root: {server.repo_root} holds no repositories "
            f"(no <owner>/<name>.git folder) ({ROOT_HINT}; on a new server, create a repository in Gitea first)\n")
