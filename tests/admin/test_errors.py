"""What an admin reads when something goes wrong: one line naming the true cause and its fix, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.gitea_server import CLI, Clone, GiteaServer
from tests.support.jobs import ROOT

NOBODY = 65534


def as_nobody(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command as another Unix user than the files' owner, as the worker or Gitea's user would be."""
    return subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *argv],
                          capture_output=True, text=True, cwd=ROOT, env=env)


@pytest.fixture(scope="module")
def second_uid() -> None:
    """Another user can run this checkout's interpreter and package, as on a server; say so when it cannot."""
    probe = as_nobody(sys.executable, "-c", "import gitea_hf_hook.worker.hub_client")
    if probe.returncode != 0:
        pytest.skip(f"uid {NOBODY} cannot run {sys.executable} on {ROOT}: {probe.stderr.strip()[-200:]}")


@pytest.fixture
def shared(second_uid: None) -> Iterator[Path]:
    """A folder another user can enter and read, as a real server's data folders are (pytest's are 0700)."""
    path = Path(tempfile.mkdtemp(prefix="gitea-hf-hook-"))
    path.chmod(0o755)
    yield path
    subprocess.run(["rm", "-rf", str(path)], check=True)


def test_a_revision_the_repository_lacks_is_named_by_check(gitea: GiteaServer, clone: Clone) -> None:
    clone.commit()
    assert clone.push("main").ok
    result = gitea.cli("check", "acme/bert-tiny", "main", "no-such-branch", "--user", "alice")
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == ("gitea-hf-hook: error: acme/bert-tiny has no revision no-such-branch (give a commit id, "
                             "branch or tag of that repository)\n")


def test_an_unexpected_failure_is_one_line_exit_3_and_the_traceback_in_a_log(server: GiteaServer) -> None:
    server.write_config()
    cache = server.base / "cache"
    env = {**server.git_env(), "XDG_CACHE_HOME": str(cache)}
    script = ("import sys; from gitea_hf_hook.admin import queue; "
              "queue.entries = lambda *a, **k: [][1]; "  # a bug: an IndexError where none is expected
              "from gitea_hf_hook.admin.cli import main; main()")
    result = subprocess.run([sys.executable, "-c", script, "--config", str(server.config_path), "queue", "list"],
                            capture_output=True, text=True, env=env, cwd=ROOT)
    log = cache / "gitea-hf-hook" / "cli.log"
    assert (result.returncode, result.stdout) == (3, "")
    assert result.stderr == (f"gitea-hf-hook: internal error: IndexError (the traceback is in {log}; please report "
                             "it)\n")
    assert "Traceback (most recent call last)" in log.read_text()
    assert oct(log.stat().st_mode & 0o777) == "0o600"


def test_a_token_file_the_worker_may_not_read_says_who_and_how_to_fix_it(shared: Path) -> None:
    token = shared / "acme.token"
    token.write_text("not-a-real-token\n")
    token.chmod(0o600)  # root's, as if installed for the wrong user
    script = ("import sys; from gitea_hf_hook.config.model import Config; from gitea_hf_hook.errors import HookError; "
              "from gitea_hf_hook.worker.hub_client import read_token\n"
              "try:\n"
              f"    read_token(Config(path='c.yaml', repo_root='/r', hub_tokens={{'acme': '{token}'}}), 'acme/bert')\n"
              "except HookError as exc:\n"
              "    print(exc)\n")
    result = as_nobody(sys.executable, "-c", script)
    assert result.stdout == (f"the worker, running as nobody, may not read the Hub token file {token}, named by "
                             f"hub.tokens.acme (make nobody its owner with mode 0600: chown nobody {token} && "
                             f"chmod 600 {token})\n"), result.stderr


def test_check_reads_a_repository_of_another_owner_without_trusting_its_config(shared: Path) -> None:
    """An admin may run check as any user: git reads the repository for exactly that folder, and its config,
    which Gitea's user writes, runs nothing."""
    repo = shared / "acme" / "bert-tiny.git"
    subprocess.run(["git", "init", "--bare", "--quiet", str(repo)], check=True)
    canary = shared / "ran"
    program = shared / "program"
    program.write_text(f"#!/bin/sh\ntouch {canary}\n")
    subprocess.run(["git", "config", "core.fsmonitor", str(program)], cwd=repo, check=True)
    subprocess.run(["chmod", "-R", "a+rX", str(shared)], check=True)
    config = shared / "config.yaml"
    config.write_text(f"gitea:\n  repo_root: {shared}\nspool: {shared}/spool\n")
    config.chmod(0o644)
    home = shared / "home"
    home.mkdir(mode=0o777)
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "GIT_CONFIG_NOSYSTEM": "1"}
    result = as_nobody(*CLI, "--config", str(config), "check", "acme/bert-tiny", "main", "--user", "alice", env=env)
    assert (result.returncode, result.stderr) == (1, "gitea-hf-hook: error: refs/heads/main does not exist in "
                                                     "acme/bert-tiny (name an existing ref, or give a REV to check)\n")
    assert not canary.exists()
