"""The worker refuses to start while Gitea's user, or anyone but root and the worker's user, could change what the
worker trusts or read its tokens: each story sets real owners and modes and reads the line an admin would see.

The worker's user is uid 12345 (no name) and Gitea's user uid 65534 (nobody), except through the command, where
nobody runs the worker. pytest's folders lie under the
sticky /tmp, which passes as a folder above everything, as it should.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from gitea_hf_hook.config import cache
from gitea_hf_hook.config.load import load
from gitea_hf_hook.config.model import Config
from gitea_hf_hook.errors import HookError
from gitea_hf_hook.spool import layout
from gitea_hf_hook.worker import preflight
from tests.support.gitea_server import CLI
from tests.support.jobs import ROOT

WORKER = 12345
NOBODY = 65534

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="these stories hand files to other uids with chown")


class Site:
    """A server's files as README lays them out: the config root's, the tokens and the spool the worker's."""

    def __init__(self, base: Path, worker: int = WORKER) -> None:
        self.etc = base / "etc" / "gitea-hf-hook"
        self.tokens = self.etc / "tokens"
        self.token = self.tokens / "acme"
        self.config_path = self.etc / "config.yaml"
        self.spool = base / "var" / "spool"
        self.home = base / "home" / "hf-publish"
        for folder in (self.etc, self.spool.parent, self.home.parent):
            folder.mkdir(parents=True)
            folder.chmod(0o755)  # past the umask
            folder.parent.chmod(0o755)
        self.tokens.mkdir()
        os.chown(self.tokens, worker, 0)
        self.tokens.chmod(0o700)
        self.token.write_text("hf_" + os.urandom(16).hex() + "\n")
        os.chown(self.token, worker, 0)
        self.token.chmod(0o600)
        self.config_path.write_text(f"gitea:\n  repo_root: {base}/repositories\n"
                                    f"hub:\n  tokens:\n    acme: {self.token}\n"
                                    f"spool: {self.spool}\naudit_log: {base}/var/audit.jsonl\n")
        self.config_path.chmod(0o644)
        self.spool.mkdir()
        os.chown(self.spool, worker, 0)
        self.spool.chmod(0o2750)
        layout.ensure_layout(str(self.spool))  # as root: each folder is the spool owner's, with its layout mode
        self.home.mkdir()
        os.chown(self.home, worker, 0)
        self.home.chmod(0o700)

    def config(self) -> Config:
        return load(str(self.config_path), cached=False)

    def refusal(self, *, uid: int | None = WORKER, allow_root: bool = False) -> str:
        """The line the worker stops with."""
        with pytest.raises(HookError) as caught:
            preflight.check(self.config(), uid=uid, allow_root=allow_root)
        return str(caught.value)


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Site:
    made = Site(tmp_path)
    monkeypatch.setenv("HOME", str(made.home))
    return made


def test_a_site_laid_out_as_documented_passes(site: Site) -> None:
    preflight.check(site.config(), uid=WORKER)


def test_a_token_file_its_group_may_read_is_refused(site: Site) -> None:
    site.token.chmod(0o640)  # the worker's group is Gitea's group: every hook could read it
    assert site.refusal() == (f"{site.token}: the Hub token file named by hub.tokens.acme may be read by group or "
                              f"others (mode 0640) (chmod 600 {site.token})")


def test_a_token_file_of_another_user_is_refused(site: Site) -> None:
    os.chown(site.token, NOBODY, 0)
    assert site.refusal() == (f"{site.token}: the Hub token file named by hub.tokens.acme belongs to uid 65534 "
                              f"(nobody), not to the worker's user uid 12345 (chown 12345 {site.token})")


def test_a_token_linked_from_a_folder_gitea_may_write_is_refused_and_one_root_linked_passes(
        site: Site, tmp_path: Path) -> None:
    linked = site.etc / "linked-token"
    linked.symlink_to(site.token)  # root's link, in root's folder, to the worker's file: what it names is fixed
    config = site.config()._replace(hub_tokens={"acme": str(linked)})
    preflight.check(config, uid=WORKER)

    drop = tmp_path / "drop"
    drop.mkdir()
    drop.chmod(0o775)
    os.chown(drop, WORKER, NOBODY)  # Gitea's group may replace what is in there
    os.rename(site.token, drop / "acme")
    linked.unlink()
    linked.symlink_to(drop / "acme")
    with pytest.raises(HookError) as caught:
        preflight.check(config, uid=WORKER)
    assert str(caught.value) == (f"{drop}: a folder above the Hub token file named by hub.tokens.acme is writable "
                                 f"by group (mode 0775) (chmod 755 {drop})")


def test_a_missing_token_file_is_named_with_the_command_that_puts_it_there(site: Site) -> None:
    site.token.unlink()
    assert site.refusal() == (f"{site.token}: the Hub token file named by hub.tokens.acme does not exist (put the "
                              f"token there: install -o 12345 -m 600 TOKEN-FILE {site.token})")


def test_a_config_its_group_may_write_is_refused(site: Site) -> None:
    site.config_path.chmod(0o664)
    assert site.refusal() == (f"{site.config_path}: the config file is writable by group (mode 0664) "
                              f"(chmod 644 {site.config_path})")


def test_a_config_in_a_folder_gitea_owns_is_refused(site: Site) -> None:
    os.chown(site.etc, NOBODY, NOBODY)  # Gitea's user could swap the file for one of its own
    assert site.refusal() == (f"{site.etc}: a folder above the config file {site.config_path} belongs to uid 65534 "
                              f"(nobody), not to root or uid 12345 (chown root {site.etc})")


def test_a_home_folder_its_group_may_write_is_refused(site: Site) -> None:
    site.home.chmod(0o770)  # Gitea's group could plant a git config or caches the worker reads back
    assert site.refusal() == (f"{site.home}: the worker's home folder is writable by group (mode 0770) "
                              f"(chmod 700 {site.home})")


def test_the_spool_tmp_replaced_by_a_link_to_the_token_folder_is_refused(site: Site) -> None:
    tmp = site.spool / "tmp"
    tmp.rmdir()
    tmp.symlink_to(site.tokens)  # jobs moved "out of tmp" would come from the worker's secrets
    assert site.refusal() == f"the spool folder {tmp} is a symbolic link (rm {tmp}; the worker recreates it)"


def test_a_worker_folder_of_another_uid_is_refused(site: Site) -> None:
    state = site.spool / "state"
    os.chown(state, NOBODY, 0)
    assert site.refusal() == (f"the spool folder {state} belongs to uid 65534 (nobody), not to the spool's owner "
                              f"uid 12345 (chown 12345 {state})")


def test_a_worker_folder_its_group_may_write_is_refused_where_a_hook_folder_may_be(site: Site) -> None:
    done = site.spool / "done"
    done.chmod(0o2770)  # the mode of queue/, which Gitea's group must write
    assert site.refusal() == f"the spool folder {done} is writable by group (mode 2770) (chmod 2750 {done})"


def test_a_spool_of_another_user_is_refused(site: Site) -> None:
    with pytest.raises(HookError) as caught:
        preflight.check_spool(str(site.spool), uid=WORKER + 1)
    assert str(caught.value) == (f"the spool {site.spool} belongs to uid 12345, not to the worker's user uid 12346 "
                                 f"(chown -R 12346 {site.spool})")


def test_running_as_root_needs_the_flag(site: Site) -> None:
    assert site.refusal(uid=None) == (
        "the worker is running as root, and the files it creates would lock the worker's user out (run it as the "
        f"worker's user (sudo -u '#12345' gitea-hf-hook --config {site.config_path} worker), or pass --allow-root)")
    preflight.check(site.config(), allow_root=True)  # the worker's files are fine for root too


def test_the_worker_loads_the_config_itself_never_from_a_cache_another_user_could_forge(site: Site) -> None:
    load(str(site.config_path))  # as a hook would: the cache now holds the validated config
    cached = Path(cache.cache_file(str(site.config_path)))
    forged = json.loads(cached.read_text())
    forged["config"]["hub_endpoint"] = "http://127.0.0.1:9"
    cached.write_text(json.dumps(forged))
    assert load(str(site.config_path)).hub_endpoint == "http://127.0.0.1:9"  # what a forged cache would do
    cached.unlink()
    assert load(str(site.config_path), cached=False).hub_endpoint == "https://huggingface.co"
    assert not cached.exists()  # nor does the worker write one


# --- through the command, as the worker's own user ------------------------------------------------------------

def as_nobody(*argv: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run a command as uid 65534 (nobody), which plays the worker's user in these stories."""
    return subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *argv],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=60)


@pytest.fixture
def shared() -> Iterator[Path]:
    """A folder another uid can enter (pytest's are 0700), skipped when that uid cannot run this checkout."""
    probe = as_nobody(sys.executable, "-c", "import gitea_hf_hook.worker.preflight", env={})
    if probe.returncode != 0:
        pytest.skip(f"uid {NOBODY} cannot run {sys.executable} on {ROOT}: {probe.stderr.strip()[-200:]}")
    path = Path(tempfile.mkdtemp(prefix="gitea-hf-hook-"))
    path.chmod(0o755)
    yield path
    subprocess.run(["rm", "-rf", str(path)], check=True)


def test_the_worker_command_refuses_a_readable_token_then_runs_once_it_is_not(shared: Path) -> None:
    site = Site(shared, worker=NOBODY)
    env = {"PATH": os.environ["PATH"], "HOME": str(site.home)}
    site.token.chmod(0o640)
    refused = as_nobody(*CLI, "--config", str(site.config_path), "worker", "--once", env=env)
    assert (refused.returncode, refused.stdout) == (1, "")
    assert refused.stderr == (f"gitea-hf-hook: error: {site.token}: the Hub token file named by hub.tokens.acme "
                              f"may be read by group or others (mode 0640) (chmod 600 {site.token})\n")

    site.token.chmod(0o600)
    ran = as_nobody(*CLI, "--config", str(site.config_path), "worker", "--once", env=env)
    assert ran.returncode == 0, ran.stderr
    assert ran.stderr.splitlines()[-1].endswith("worker stopped")
    assert list(site.home.iterdir()) == []  # no config cache written where the worker lives


def test_the_worker_command_refuses_root_without_the_flag(site: Site) -> None:
    result = subprocess.run([*CLI, "--config", str(site.config_path), "worker", "--once"],
                            capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        "gitea-hf-hook: error: the worker is running as root, and the files it creates would lock the worker's user "
        f"out (run it as the worker's user (sudo -u '#12345' gitea-hf-hook --config {site.config_path} worker), or "
        "pass --allow-root)\n")
