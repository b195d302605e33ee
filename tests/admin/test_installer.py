"""An admin installs gitea-hf-hook on a server with one command, runs it again and is told nothing changed,
publishes through it, upgrades it with the same command, and takes it out again, leaving the server as it was.

Everything is real: ``install.sh`` runs as root from a copy of this checkout, with a scratch prefix, config and unit
folder, a scratch Gitea user made here and a worker user the installer makes; pip builds the environment; the hooks
run in real pushes, as Gitea's user; systemd-analyze checks the units. The story runs once per module, phase by
phase, and each test reads the phase it is about.
"""

from __future__ import annotations

import hashlib
import os
import platform
import pwd
import secrets
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import two_users
from tests.support.gitea_server import DISPATCHER, GITEA_STAND_IN, GiteaServer, gitea_env
from tests.support.jobs import ROOT
from tests.support.rules import CARD, GROUPS, RULE

PYTHON = os.path.realpath(getattr(sys, "_base_executable", "") or sys.executable)
UNITS = ("gitea-hf-hook-worker.service", "gitea-hf-hook-sync.service", "gitea-hf-hook-sync.timer")
COPY_IGNORED = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache")


def run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, **kwargs)


def shape(root: Path, *, mtimes: bool = False, skip: Callable[[str], bool] = lambda _rel: False) -> dict[str, Any]:
    """Every entry below ``root`` with its owner, group, mode and content (a file's digest, a link's target), and
    with ``mtimes`` its modification time too."""
    found: dict[str, Any] = {}
    for folder, dirs, names in os.walk(root):
        for name in sorted(dirs + names):
            path = Path(folder, name)
            rel = path.relative_to(root).as_posix()
            if skip(rel):
                continue
            st = path.lstat()
            content: Any = None
            if stat.S_ISREG(st.st_mode):
                content = hashlib.sha256(path.read_bytes()).hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                content = os.readlink(path)
            found[rel] = (st.st_uid, st.st_gid, stat.filemode(st.st_mode), content,
                          st.st_mtime_ns if mtimes else None)
    return found


def useradd(name: str, home: Path) -> pwd.struct_passwd:
    result = run(["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", str(home),
                  "--shell", "/usr/sbin/nologin", name])
    assert result.returncode == 0, result.stderr
    return pwd.getpwnam(name)


def holding(folder: Path) -> int:
    """The files under ``folder`` that hold something: an empty file (a lock, a log with no record) holds nothing."""
    return sum(not stat.S_ISREG(info.st_mode) or info.st_size > 0
               for path in folder.rglob("*") for info in (path.lstat(),) if not stat.S_ISDIR(info.st_mode))


def account_gone(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return True
    return False


class Server:
    """A scratch server: Gitea's data with two repositories owned by a scratch Gitea user, and where the install
    goes (``opt/``, ``etc/``, ``var/``) under one base folder; plus a copy of this checkout to install from."""

    def __init__(self, base: Path) -> None:
        self.base = base
        tag = secrets.token_hex(3)
        self.hook_user, self.worker_user = f"ghh-git-{tag}", f"ghh-hf-{tag}"
        self.gitea = GiteaServer(base / "var" / "lib")
        self.hook = useradd(self.hook_user, self.gitea.home)
        for owner, name in (("acme", "bert-tiny"), ("acme", "other")):
            self.gitea.create_repo(owner, name)
        self.gitea.create_repo("acme", "bert-tiny", wiki=True)
        two_users.chown_tree(self.gitea.data, self.git)
        (base / "etc" / "systemd" / "system").mkdir(parents=True)
        self.prefix = base / "opt" / "gitea-hf-hook"
        self.venv = self.prefix / "venv"
        self.etc = base / "etc" / "gitea-hf-hook"
        self.config = self.etc / "config.yaml"
        self.unit_dir = base / "etc" / "systemd" / "system"
        self.worker_home = base / "var" / "lib" / self.worker_user
        self.state = base / "var" / "lib" / "gitea-hf-hook"
        self.spool = self.state / "spool"
        self.log_dir = base / "var" / "log" / "gitea-hf-hook"
        self.template = self.prefix / "template"
        self.checkout = Path(tempfile.mkdtemp(prefix="gitea-hf-hook-checkout-")) / "gitea-hf-hook"
        self.checkout.parent.chmod(0o755)
        shutil.copytree(ROOT, self.checkout, ignore=COPY_IGNORED, symlinks=True)
        self.options = ["--prefix", str(self.prefix), "--config", str(self.config), "--hook-user", self.hook_user,
                        "--worker-user", self.worker_user, "--worker-home", str(self.worker_home),
                        "--unit-dir", str(self.unit_dir), "--repo-root", str(self.gitea.repo_root),
                        "--lfs-root", str(self.gitea.lfs_root), "--state-dir", str(self.state),
                        "--log-dir", str(self.log_dir)]

    @property
    def git(self) -> two_users.Account:
        return two_users.Account(self.hook_user, self.hook.pw_uid, self.hook.pw_gid)

    @property
    def worker(self) -> two_users.Account:
        entry = pwd.getpwnam(self.worker_user)
        return two_users.Account(self.worker_user, entry.pw_uid, entry.pw_gid)

    def install(self, *args: str, python: str = PYTHON, user: two_users.Account | None = None
                ) -> subprocess.CompletedProcess[str]:
        """``install.sh args...`` from the checkout's copy, as root (or as ``user``)."""
        argv = [str(self.checkout / "install.sh"), *args]
        if user is not None:
            return two_users.run_as(user, self.base, argv, env={"PYTHON": python})
        return run(argv, env={**os.environ, "PYTHON": python})

    def shape(self, *, mtimes: bool = False) -> dict[str, Any]:
        return shape(self.base, mtimes=mtimes)

    def outside_gitea_data(self) -> dict[str, Any]:
        """The server as the installer may touch it: all but what pushes change in Gitea's data (objects, refs,
        its git home's caches, the LFS store); each repository's ``hooks/`` is kept whole."""
        data = self.gitea.data.relative_to(self.base).as_posix() + "/"

        def skip(rel: str) -> bool:
            if not rel.startswith(data):
                return False
            parts = rel[len(data):].split("/")
            return parts[0] != "gitea-repositories" or (len(parts) > 3 and parts[3] != "hooks")

        return shape(self.base, skip=skip)

    def remove(self) -> None:
        for name in (self.worker_user, self.hook_user):
            if not account_gone(name):
                run(["userdel", name])
        shutil.rmtree(self.base, ignore_errors=True)
        shutil.rmtree(self.checkout.parent, ignore_errors=True)


class Clone:
    """An engineer's working copy, owned by Gitea's user, which pushes as Gitea's dispatcher runs the hooks."""

    def __init__(self, server: Server, owner: str, name: str) -> None:
        self.server, self.owner, self.name = server, owner, name
        self.bare = server.gitea.repo_root / owner / f"{name}.git"
        self.path = Path(tempfile.mkdtemp(prefix="gitea-hf-hook-clone-"))
        self.path.chmod(0o755)
        two_users.chown_tree(self.path, server.git)
        self.git("init", "--quiet", "--initial-branch=main")

    def git(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return two_users.run_as(self.server.git, self.server.gitea.home, ["git", *args], cwd=self.path,
                                env={**two_users.IDENTITY, **(env or {})})

    def commit(self, files: dict[str, str], message: str) -> None:
        for rel, text in files.items():
            (self.path / rel).write_text(text)
        two_users.chown_tree(self.path, self.server.git)
        assert self.git("add", "-A").returncode == 0
        assert self.git("commit", "--quiet", "-m", message).returncode == 0

    def push(self, user: str) -> list[str]:
        """``git push`` of main as ``user``, through Gitea's dispatcher; the lines the hooks printed."""
        result = self.git("push", "--porcelain", str(self.bare), "main",
                          env=gitea_env(self.owner, self.name, user))
        return [line[len("remote: "):].rstrip() for line in result.stderr.splitlines()
                if line.startswith("remote: ") and line.strip() != "remote:"]


class Story:
    """The admin's story, one phase at a time, each run once and in order; a phase that failed fails every test
    that reads it or a later one."""

    PHASES = ("install", "again", "refused", "push", "upgrade", "uninstall", "purge")

    def __init__(self, server: Server) -> None:
        self.server = server
        self.results: dict[str, Any] = {}
        self.before = server.shape()
        self.before_data = server.outside_gitea_data()

    def __getitem__(self, phase: str) -> Any:
        for name in self.PHASES[:self.PHASES.index(phase) + 1]:
            if name not in self.results:
                try:
                    self.results[name] = getattr(self, f"_{name}")()
                except Exception as exc:  # noqa: BLE001 - kept for the later phases, which cannot run
                    self.results[name] = exc
            if isinstance(self.results[name], Exception):
                raise AssertionError(f"the phase {name!r} failed") from self.results[name]
        return self.results[phase]

    def _install(self) -> subprocess.CompletedProcess[str]:
        s = self.server
        first = s.install(*s.options)
        assert first.returncode == 0, first.stderr
        return first

    def _again(self) -> dict[str, Any]:
        s = self.server
        # The worker starts under what the install made, as its service would (HOME and caches its own).
        worker = two_users.run_as(s.worker, s.worker_home, [str(s.venv / "bin" / "gitea-hf-hook"), "--config",
                                                            str(s.config), "worker", "--once"],
                                  env={"XDG_CACHE_HOME": f"{s.worker_home}/.cache",
                                       "XDG_CONFIG_HOME": f"{s.worker_home}/.config"})
        # And sync, as its timer's service runs it: as Gitea's user.
        sync = two_users.run_as(s.git, s.gitea.home, [str(s.venv / "bin" / "gitea-hf-hook"), "--config",
                                                      str(s.config), "sync"])
        before = s.shape(mtimes=True)
        second = s.install(*s.options)
        return {"worker": worker, "sync": sync, "before": before, "second": second, "after": s.shape(mtimes=True)}

    def _refused(self) -> dict[str, Any]:
        s = self.server
        before = s.shape(mtimes=True)
        result = s.install("--prefix", str(s.prefix), "--worker-user", "someone-else")
        return {"result": result, "changed": s.shape(mtimes=True) != before}

    def _push(self) -> dict[str, Any]:
        s = self.server
        # The admin makes acme/* publish, as the example config says to.
        s.config.write_text(s.config.read_text().replace("repos: []\n", GROUPS + "repos:\n" + RULE))
        clone = Clone(s, "acme", "bert-tiny")
        clone.commit({"README.md": CARD}, "first model")
        commit = clone.git("rev-parse", "HEAD").stdout.strip()
        # The hooks run from the prefix alone: the checkout they were installed from is moved away.
        moved = s.checkout.with_name("moved-away")
        s.checkout.rename(moved)
        try:
            refused = clone.push("mallory")
            accepted = clone.push("alice")
        finally:
            moved.rename(s.checkout)
            shutil.rmtree(clone.path)
        return {"refused": refused, "accepted": accepted, "commit": commit,
                "queued": sorted(p.name for p in (s.spool / "queue").iterdir())}

    def _upgrade(self) -> dict[str, Any]:
        s = self.server
        module = s.checkout / "gitea_hf_hook" / "__init__.py"
        module.write_text(module.read_text() + "# the next release\n")
        upgraded = s.install("--prefix", str(s.prefix))  # the other settings come from the manifest there
        return {"result": upgraded, "installed": (s.venv / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
                                                  / "site-packages" / "gitea_hf_hook" / "__init__.py").read_text()}

    def _uninstall(self) -> dict[str, Any]:
        s = self.server
        result = s.install("--uninstall", "--prefix", str(s.prefix))
        return {"result": result, "worker_kept": not account_gone(s.worker_user),
                "spool_files": holding(s.spool), "state_files": holding(s.state)}

    def _purge(self) -> dict[str, Any]:
        s = self.server
        result = s.install("--uninstall", "--purge", "--prefix", str(s.prefix))
        return {"result": result, "worker_gone": account_gone(s.worker_user), "shape": s.outside_gitea_data(),
                "again": s.install("--uninstall", "--prefix", str(s.prefix))}


@pytest.fixture(scope="module", name="server")
def server_fixture() -> Iterator[Server]:
    two_users.require_other_uids()
    base = Path(tempfile.mkdtemp(prefix="gitea-hf-hook-installer-"))
    base.chmod(0o755)
    server = Server(base)
    try:
        yield server
    finally:
        server.remove()


@pytest.fixture(scope="module", name="story")
def story_fixture(server: Server) -> Story:
    return Story(server)


def next_steps(s: Server) -> list[str]:
    group = s.hook_user
    return [
        "next steps:",
        f"  1. Edit {s.config}: repos, hub.tokens, gitea.url and gitea.token_file. Check an edited copy first:",
        f"       {s.venv}/bin/gitea-hf-hook config check NEW.yaml",
        "  2. One fine-grained Hub token per namespace, with write access only, readable by the worker alone:",
        f"       install -o {s.worker_user} -g {group} -m 0600 acme.token {s.etc}/tokens/acme",
        "  3. In Gitea's app.ini, so that new, forked and migrated repositories get the hooks (then restart Gitea):",
        "       [git.config]",
        f"       init.templateDir = {s.template}",
        f"     [repository] ROOT must be {s.gitea.repo_root} and [lfs] PATH {s.gitea.lfs_root}, as the config says.",
        "     Gitea forks that ignore templates (Forgejo) get the hooks into new repositories from the sync timer.",
        "  4. Start the worker and the sync timer:",
        "       systemctl enable --now gitea-hf-hook-worker.service gitea-hf-hook-sync.timer",
        "  5. Run install.sh again after changing the config's paths or tokens: it updates the hooks and the units.",
    ]


# --- the first install ---------------------------------------------------------------------------------------------

def test_a_first_install_sets_up_everything_and_says_what_it_did_then_what_to_do_next(story: Story, server: Server):
    s = server
    result = story["install"]
    worker = pwd.getpwnam(s.worker_user)
    assert result.stderr == ""
    assert result.stdout.splitlines() == [
        f"created {s.prefix}",
        f"created the user {s.worker_user} (uid {worker.pw_uid}, group {s.hook_user}, home {s.worker_home}, "
        "no login shell)",
        f"created {s.worker_home} ({s.worker_user}, 0700): the worker's home",
        f"installing this checkout's gitea-hf-hook into {s.venv} ...",
        f"built {s.venv}, on {PYTHON} (Python {platform.python_version()})",
        f"wrote the example config {s.config} (root, 0644): edit it, then run install.sh again",
        f"created {s.etc}/tokens ({s.worker_user}:{s.hook_user}, 0700) for the token files",
        f"created the spool {s.spool} ({s.worker_user}:{s.hook_user}, 2750; tmp, queue and cards 2770 for the hooks)",
        f"created {s.log_dir} ({s.hook_user}:{s.hook_user}, 0750): the hooks' log",
        "gitea-hf-hook install --all:",
        "  installed acme/bert-tiny",
        "  installed acme/other",
        f"wrote the template directory {s.template} (our two hooks, for init.templateDir)",
        f"wrote {', '.join(UNITS)} in {s.unit_dir}",
        *next_steps(s),
    ]
    assert pwd.getpwnam(s.worker_user).pw_gid == s.hook.pw_gid  # it reads the repositories through Gitea's group


def test_each_path_gets_the_owner_and_mode_the_threat_model_gives_it(story: Story, server: Server):
    s = server
    story["install"]
    w, g = s.worker_user, s.hook_user

    def owned(path: Path) -> tuple[str, str, str]:
        st = path.lstat()
        return (pwd.getpwuid(st.st_uid).pw_name, str(st.st_gid) if st.st_gid not in (0, s.hook.pw_gid)
                else ("root" if st.st_gid == 0 else g), stat.filemode(st.st_mode))

    expected = {
        s.prefix: ("root", "root", "drwxr-xr-x"),
        s.prefix / "manifest.json": ("root", "root", "-rw-r--r--"),
        s.venv: ("root", "root", "drwxr-xr-x"),
        s.venv / "bin" / "gitea-hf-hook": ("root", "root", "-rwxr-xr-x"),
        s.etc: ("root", "root", "drwxr-xr-x"),
        s.config: ("root", "root", "-rw-r--r--"),
        s.etc / "tokens": (w, g, "drwx------"),
        s.worker_home: (w, g, "drwx------"),
        s.state: ("root", "root", "drwxr-xr-x"),
        s.spool: (w, g, "drwxr-s---"),
        s.log_dir: (g, g, "drwxr-x---"),
        s.template / "hooks" / "pre-receive.d" / "hf-publish": ("root", "root", "-rwxr-xr-x"),
        s.template / "hooks" / "post-receive.d" / "hf-publish": ("root", "root", "-rwxr-xr-x"),
        **{s.unit_dir / unit: ("root", "root", "-rw-r--r--") for unit in UNITS},
        **{s.spool / f: (w, g, "drwxrws---") for f in ("tmp", "queue", "cards")},
        **{s.spool / f: (w, g, "drwxr-s---") for f in ("active", "done", "failed", "state")},
    }
    assert {path: owned(path) for path in expected} == expected
    # The template holds our two hooks and nothing else: git copies it into every repository Gitea makes.
    assert sorted(p.relative_to(s.template).as_posix() for p in s.template.rglob("*")) == [
        "hooks", "hooks/post-receive.d", "hooks/post-receive.d/hf-publish", "hooks/pre-receive.d",
        "hooks/pre-receive.d/hf-publish"]


def test_the_hooks_sit_beside_giteas_own_and_run_the_prefixs_interpreter_never_the_checkouts(story: Story,
                                                                                             server: Server):
    s = server
    story["install"]
    for name in ("bert-tiny", "other"):
        hooks = s.gitea.repo_root / "acme" / f"{name}.git" / "hooks"
        for hook in ("pre-receive", "post-receive"):
            ours = (hooks / f"{hook}.d" / "hf-publish").read_text()
            assert f"exec {s.venv}/bin/python -I -S" in ours
            assert str(s.checkout) not in ours and str(ROOT) not in ours
            assert (hooks / hook).read_text() == DISPATCHER
            assert (hooks / f"{hook}.d" / "gitea").read_text() == GITEA_STAND_IN
    wiki = s.gitea.repo_root / "acme" / "bert-tiny.wiki.git" / "hooks"
    assert sorted(p.name for p in (wiki / "pre-receive.d").iterdir()) == ["gitea"]


def test_both_users_run_the_installed_environment_and_the_worker_and_sync_start_as_their_services_would(story: Story,
                                                                                             server: Server):
    s = server
    version = [str(s.venv / "bin" / "gitea-hf-hook"), "--version"]
    for account, home in ((s.git, s.gitea.home), (s.worker, s.worker_home)):
        result = two_users.run_as(account, home, version)
        assert (result.returncode, result.stdout, result.stderr) == (0, "gitea-hf-hook, version 0.1.0\n", "")
    worker = story["again"]["worker"]
    assert worker.returncode == 0, worker.stderr
    sync = story["again"]["sync"]
    assert (sync.returncode, sync.stdout, sync.stderr) == (0, "all 2 repositories in order\n", "")


def test_the_units_pass_systemd_analyze_verify_and_sandbox_the_worker(story: Story, server: Server):
    s = server
    story["install"]
    if shutil.which("systemd-analyze") is None:
        pytest.fail("systemd-analyze is missing: .ci/run installs Debian's systemd package", pytrace=False)
    result = run(["systemd-analyze", "verify", *(str(s.unit_dir / unit) for unit in UNITS)])
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    worker = (s.unit_dir / "gitea-hf-hook-worker.service").read_text().splitlines()
    home = s.worker_home
    protect_home = ["ProtectHome=yes"]
    interpreter = os.path.realpath(sys.base_prefix)
    if any(interpreter == h or interpreter.startswith(h + "/") for h in ("/home", "/root", "/run/user")):
        protect_home = ["ProtectHome=tmpfs", f"BindReadOnlyPaths=-{interpreter}"]
    service = worker[worker.index("[Service]"):worker.index("[Install]")]
    assert service == [
        "[Service]",
        "Type=exec",
        f"User={s.worker_user}",
        f"ExecStart={s.venv}/bin/gitea-hf-hook --config {s.config} worker",
        f"Environment=HOME={home} XDG_CACHE_HOME={home}/.cache XDG_CONFIG_HOME={home}/.config",
        "# SIGTERM lets the current publish finish; a large upload may need minutes.",
        "TimeoutStopSec=15min",
        "Restart=on-failure",
        "RestartSec=30s",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "ProtectSystem=strict",
        *protect_home,
        f"ReadWritePaths=-{s.state} {home}",
        f"ReadOnlyPaths={s.gitea.repo_root} -{s.gitea.lfs_root}",
        "",
    ]
    sync = (s.unit_dir / "gitea-hf-hook-sync.service").read_text()
    assert f"User={s.hook_user}\nExecStart={s.venv}/bin/gitea-hf-hook --config {s.config} sync\n" in sync
    assert f"ReadWritePaths={s.gitea.repo_root}\n" in sync


# --- running it again ----------------------------------------------------------------------------------------------

def test_a_second_run_changes_nothing_and_says_so(story: Story, server: Server):
    again = story["again"]
    assert again["second"].returncode == 0, again["second"].stderr
    assert again["second"].stdout.splitlines() == [
        f"nothing to change: {server.prefix} already holds gitea-hf-hook 0.1.0 as this checkout installs it",
        *next_steps(server)]
    assert again["after"] == again["before"]  # not one mtime moved


def test_a_setting_other_than_the_installed_one_is_refused_and_nothing_changes(story: Story, server: Server):
    refused = story["refused"]
    assert refused["result"].returncode == 1
    assert refused["result"].stdout == ""
    assert refused["result"].stderr == (
        f"install.sh: error: {server.prefix} was installed with --worker-user {server.worker_user}, not someone-else "
        f"(run ./install.sh again without --worker-user; to change it, run ./install.sh --uninstall --prefix "
        f"{server.prefix} first)\n")
    assert not refused["changed"]


# --- in use --------------------------------------------------------------------------------------------------------

def test_pushes_meet_the_installed_hooks_even_once_the_checkout_is_gone(story: Story):
    pushed = story["push"]
    hub = "https://huggingface.co/acme/bert-tiny"
    assert pushed["refused"] == [
        f"hf-publish: rejected refs/heads/main of acme/bert-tiny, which publishes to {hub} (branch main):",
        "  refs/heads/main: mallory may not publish to acme/bert-tiny (publishers: alice, @ml-release; ask a Gitea "
        "admin to add you)"]
    assert len(pushed["queued"]) == 1
    job = pushed["queued"][0].removesuffix(".json")
    assert pushed["accepted"] == [f"hf-publish: queued acme/bert-tiny@{pushed['commit'][:7]} -> {hub} (main), job {job}"]


def test_an_upgrade_is_the_same_command_and_reinstalls_the_package_and_the_hooks(story: Story, server: Server):
    s = server
    upgraded = story["upgrade"]
    assert upgraded["result"].returncode == 0, upgraded["result"].stderr
    hub = "https://huggingface.co/acme/bert-tiny"
    assert upgraded["result"].stdout.splitlines() == [
        f"installing this checkout's gitea-hf-hook into {s.venv} ...",
        f"upgraded {s.venv}, on {PYTHON} (Python {platform.python_version()})",
        "gitea-hf-hook install --all:",
        "  installed acme/bert-tiny",
        f"  hf-publish: accepted refs/heads/main of acme/bert-tiny, which publishes to {hub} (branch main)",
        "  installed acme/other",
        *next_steps(s)]
    assert upgraded["installed"].endswith("# the next release\n")


# --- taking it out -------------------------------------------------------------------------------------------------

def test_uninstall_removes_what_it_added_and_keeps_the_edited_config_and_the_queued_job(story: Story,
                                                                                      server: Server):
    s = server
    removed = story["uninstall"]
    assert removed["result"].returncode == 0, removed["result"].stderr
    lines = removed["result"].stdout.splitlines()
    assert lines == [
        f"removed our hooks from 2 of 2 repositories under {s.gitea.repo_root} (Gitea's own hook files untouched)",
        f"removed {', '.join(UNITS)} from {s.unit_dir}",
        f"removed {s.venv}",
        f"removed {s.template}",
        f"removed {s.etc}/tokens",
        f"removed {s.log_dir}",
        f"removed {s.base}/var/log",
        f"kept {s.config}: edited since the installer wrote it",
        f"kept {s.spool}: it holds {removed['spool_files']} files",
        f"kept {s.state}: it holds {removed['state_files']} files",  # the spool's, and the audit log's records
        f"kept the user {s.worker_user} and its home {s.worker_home}: it owns {s.spool}",
        f"kept {s.prefix}/manifest.json: it lists what was kept",
        f"to remove that too: ./install.sh --uninstall --purge --prefix {s.prefix}",
    ]
    assert removed["worker_kept"]
    for name in ("bert-tiny", "other"):
        hooks = s.gitea.repo_root / "acme" / f"{name}.git" / "hooks"
        for hook in ("pre-receive", "post-receive"):
            assert sorted(p.name for p in (hooks / f"{hook}.d").iterdir()) == ["gitea"]
            assert (hooks / hook).read_text() == DISPATCHER


def test_uninstall_purge_leaves_the_server_exactly_as_it_was(story: Story, server: Server):
    purged = story["purge"]
    assert purged["result"].returncode == 0, purged["result"].stderr
    s = server
    assert purged["result"].stdout.splitlines() == [
        f"removed {s.config}",
        f"removed {s.spool}",
        f"removed {s.state}",
        f"removed {s.etc}",
        f"removed the user {s.worker_user} and its home {s.worker_home}",
        f"removed {s.prefix}",
        f"removed {s.base}/opt",
    ]
    assert purged["worker_gone"]
    assert purged["shape"] == story.before_data
    assert purged["again"].stdout == f"nothing to uninstall: {server.prefix} holds no installation (no manifest.json)\n"


# --- refusals, before anything is changed --------------------------------------------------------------------------

@pytest.fixture(name="bare_server")
def bare_server_fixture() -> Iterator[Server]:
    two_users.require_other_uids()
    base = Path(tempfile.mkdtemp(prefix="gitea-hf-hook-installer-"))
    base.chmod(0o755)
    server = Server(base)
    try:
        yield server
    finally:
        server.remove()


def test_the_installer_tells_anyone_but_root_to_run_it_as_root(bare_server: Server):
    s = bare_server
    before = s.shape(mtimes=True)
    result = s.install(*s.options, user=s.git)
    assert result.returncode == 1
    assert result.stderr == ("install.sh: error: a production install must run as root (sudo ./install.sh "
                             f"{' '.join(s.options)}; for a development copy in ./.venv, run ./install.sh --test)\n")
    assert s.shape(mtimes=True) == before


def test_an_interpreter_behind_a_folder_a_user_cannot_enter_is_named_with_the_chmod_that_fixes_it(bare_server: Server):
    s = bare_server
    trap = s.base / "root-home"  # like an interpreter built in root's home, mode 0700
    trap.mkdir(mode=0o700)
    (trap / "python3").symlink_to(PYTHON)
    before = s.shape(mtimes=True)
    result = s.install(*s.options, python=str(trap / "python3"))
    assert result.returncode == 1
    uid = pwd.getpwnam(s.hook_user).pw_uid
    assert result.stderr == (
        f"install.sh: error: {s.hook_user} (uid {uid}) cannot run {trap}/python3: it may not enter {trap} "
        "(mode 0700), so the hooks or the worker could not start (give others search permission there, and "
        f"nothing more: chmod o+x {trap}; or build from an interpreter both users can run: "
        "PYTHON=/usr/bin/python3 ./install.sh ...)\n")
    assert s.shape(mtimes=True) == before  # not even the worker's user was created
    assert account_gone(s.worker_user)


def test_a_hook_user_that_does_not_exist_is_named(bare_server: Server):
    s = bare_server
    options = [*s.options]
    options[options.index("--hook-user") + 1] = "no-such-gitea-user"
    result = s.install(*options)
    assert result.returncode == 1
    assert result.stderr == ("install.sh: error: the hook user no-such-gitea-user does not exist (pass --hook-user "
                             "with the user Gitea runs as (RUN_USER in app.ini))\n")
    assert account_gone(s.worker_user)


def test_uninstall_right_after_an_install_leaves_exactly_what_was_there(bare_server: Server):
    s = bare_server
    before = s.shape()
    installed = s.install(*s.options)
    assert installed.returncode == 0, installed.stderr
    removed = s.install("--uninstall", "--prefix", str(s.prefix))
    assert removed.returncode == 0, removed.stderr
    assert removed.stdout.splitlines() == [
        f"removed our hooks from 2 of 2 repositories under {s.gitea.repo_root} (Gitea's own hook files untouched)",
        f"removed {', '.join(UNITS)} from {s.unit_dir}",
        f"removed {s.venv}",
        f"removed {s.template}",
        f"removed {s.config}",  # the example, unedited
        f"removed {s.spool}",  # its folders alone, no job in them
        f"removed {s.etc}/tokens",
        f"removed {s.state}",
        f"removed {s.log_dir}",
        f"removed {s.etc}",
        f"removed {s.base}/var/log",
        f"removed the user {s.worker_user} and its home {s.worker_home}",
        f"removed {s.prefix}",
        f"removed {s.base}/opt",
    ]
    assert s.shape() == before
    assert account_gone(s.worker_user)
