"""A server installed as README.md says, with its two Unix users for real: Gitea's and the worker's.

Gitea's user (``git``, uid 30001) owns the repositories and runs the hooks; the worker's user (``hf-publish``,
uid 30002, primary group git's) alone can read the Hub tokens. The tests run as root, so either uid is reached with
``setpriv`` and needs no account. Everything lives under one base folder that other users can enter, with
``etc/``, ``var/lib/`` and ``var/log/`` standing for the system folders:

    etc/gitea-hf-hook/             root:root        0755
    etc/gitea-hf-hook/config.yaml  root:root        0644
    etc/gitea-hf-hook/tokens/      hf-publish:git   0700
    etc/gitea-hf-hook/tokens/acme  hf-publish:git   0600
    var/lib/hf-publish/            hf-publish:git   0700  (the worker's HOME)
    var/lib/gitea-hf-hook/         root:root        0755
    var/lib/gitea-hf-hook/spool/   hf-publish:git   2750  (its folders made by ``install``, run as root)
    var/lib/gitea-hf-hook/audit.jsonl  hf-publish:git  0600  (audit_log, made by ``install``)
    var/log/gitea-hf-hook/         git:git          0750  (log_file: hook.log, written by the hooks)
    var/lib/gitea/                 git:git, umask 022  (repositories, LFS store, git's HOME)
"""

from __future__ import annotations

import functools
import itertools
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import pytest

from tests.support.gitea_api import GiteaApi
from tests.support.gitea_server import CLI, WORKER_GITEA_USER, GiteaServer, PushResult, gitea_env, lfs_pointer
from tests.support.hub import Hub
from tests.support.jobs import ROOT
from tests.support.rules import GROUPS, RULE


class Account(NamedTuple):
    """A Unix user the tests switch to: its name as the README uses it, its uid and its primary group."""

    name: str
    uid: int
    gid: int


GIT = Account("git", 30001, 30001)
WORKER = Account("hf-publish", 30002, 30001)  # in git's group, as `useradd --gid git` makes it
NAMES = {0: "root", GIT.uid: GIT.name, WORKER.uid: WORKER.name}
GROUP_NAMES = {0: "root", GIT.gid: "git"}
# What a service manager gives a service: none of root's variables reach the other users.
SERVICE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
IDENTITY = {"GIT_AUTHOR_NAME": "Alice Engineer", "GIT_AUTHOR_EMAIL": "alice@example.com",
            "GIT_COMMITTER_NAME": "Alice Engineer", "GIT_COMMITTER_EMAIL": "alice@example.com"}
_names = itertools.count()


class Owned(NamedTuple):
    """Who owns a file and its mode, as ``ls -l`` shows them: ``Owned("git", "git", "-rw-r-----")``."""

    user: str
    group: str
    mode: str


def owned(path: Path) -> Owned:
    """The owner, group and mode of ``path`` itself (a link is not followed)."""
    st = path.lstat()
    return Owned(NAMES.get(st.st_uid, str(st.st_uid)), GROUP_NAMES.get(st.st_gid, str(st.st_gid)),
                 stat.filemode(st.st_mode))


def files_under(path: Path) -> dict[str, Owned]:
    """Every file and folder below ``path`` (not ``path`` itself), by relative path, with its owner and mode."""
    found = {}
    for folder, dirs, files in os.walk(path):
        for name in sorted(dirs + files):
            entry = Path(folder, name)
            found[entry.relative_to(path).as_posix()] = owned(entry)
    return dict(sorted(found.items()))


def run_as(account: Account, home: Path, argv: Sequence[str], *, env: Mapping[str, str] | None = None,
           cwd: Path | None = None, input: str | None = None,  # noqa: A002 - as subprocess.run names it
           timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` as ``account`` with only its HOME, a service's PATH and ``env``, under umask 022.

    setpriv keeps root's capabilities until it starts the program, so the program itself would be found even in a
    folder the user cannot enter; starting it from a shell makes that lookup the user's own.
    """
    environment = {"PATH": SERVICE_PATH, "HOME": str(home), "LANG": "C.UTF-8",
                   # A system gitconfig (say, one trusting every folder) must not decide what these tests see.
                   "GIT_CONFIG_NOSYSTEM": "1", **(env or {})}
    command = ["setpriv", f"--reuid={account.uid}", f"--regid={account.gid}", "--clear-groups",
               "/bin/sh", "-c", 'exec "$0" "$@"', *argv]
    return subprocess.run(command, env=environment, cwd=cwd or home, input=input, capture_output=True, text=True,
                          timeout=timeout, umask=0o022)


def chown_tree(path: Path, account: Account) -> None:
    """Give ``path`` and everything below it to ``account`` and its group."""
    os.lchown(path, account.uid, account.gid)
    for folder, dirs, files in os.walk(path):
        for name in dirs + files:
            os.lchown(os.path.join(folder, name), account.uid, account.gid)


def command() -> list[str]:
    """The ``gitea-hf-hook`` console script of this checkout's virtualenv, else the same entry point run by -c."""
    script = Path(sys.executable).parent / "gitea-hf-hook"
    return [str(script)] if script.is_file() else list(CLI)


@functools.cache
def unreachable_reason() -> str | None:
    """Why another uid cannot run this checkout as root does, or None when it can."""
    if os.geteuid() != 0:
        return f"the tests run as uid {os.geteuid()}, not root, so they cannot act as uid {GIT.uid}"
    if shutil.which("setpriv") is None:
        return "setpriv is not installed (util-linux), so the tests cannot act as another uid"
    probe = run_as(GIT, Path("/"), [sys.executable, "-c", "import sys, gitea_hf_hook.worker.hub_client, yaml; "
                                    "print(sys.base_prefix)"], cwd=ROOT)
    real = os.path.realpath(sys.executable)
    fix = f"give the folders above {real} and {ROOT} search permission (chmod o+x), as .ci/run does"
    if probe.returncode != 0:
        return f"uid {GIT.uid} cannot run {sys.executable} on {ROOT}: {probe.stderr.strip()[-200:]} ({fix})"
    if probe.stdout.strip() != sys.base_prefix:
        # The interpreter starts but cannot reach its own standard library, and silently takes another one.
        return (f"uid {GIT.uid} runs {sys.executable} with the standard library of {probe.stdout.strip()}, "
                f"not {sys.base_prefix} ({fix})")
    return None


def require_other_uids() -> None:
    """Skip when another uid cannot run this checkout; fail instead under CI, which must never skip these."""
    reason = unreachable_reason()
    if reason is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI is set and the two-user tests cannot run: {reason}", pytrace=False)
    pytest.skip(reason)


class Clone:
    """An engineer's working copy on the Gitea server, owned by git, which pushes as git."""

    def __init__(self, site: TwoUsers, owner: str, name: str) -> None:
        self.site, self.owner, self.name = site, owner, name
        self.bare = site.gitea.repo_root / owner.lower() / f"{name.lower()}.git"
        self.path = site.base / "work" / f"{owner}-{name}"
        self.path.mkdir(parents=True)
        chown_tree(self.path, GIT)
        self.git("init", "--quiet", "--initial-branch=main")

    def git(self, *args: str, env: Mapping[str, str] | None = None) -> str:
        """Run git as git in this working copy; its output, stripped."""
        result = self.site.as_git(["git", *args], cwd=self.path, env={**IDENTITY, **(env or {})})
        assert result.returncode == 0, f"git {' '.join(args)} failed: {result.stderr}"
        return result.stdout.strip()

    def commit(self, files: Mapping[str, str], message: str = "update") -> str:
        """Write ``files``, commit everything as alice, and return the commit id."""
        for rel, text in files.items():
            target = self.path / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        chown_tree(self.path, GIT)  # as if git had written them: git refuses a working copy of mixed owners
        self.git("add", "-A")
        self.git("commit", "--quiet", "--allow-empty", "-m", message)
        return self.git("rev-parse", "HEAD")


class TwoUsers:
    """The installed server under ``base``, its Hub emulator, and ways to act as each of its users."""

    def __init__(self, base: Path, hub: Hub, repos_yaml: str = RULE, *, extra: str = GROUPS) -> None:
        self.base, self.hub = base, hub
        self.etc = base / "etc" / "gitea-hf-hook"
        self.config_path = self.etc / "config.yaml"
        self.tokens = self.etc / "tokens"
        self.token_file = self.tokens / "acme"
        self.worker_home = base / "var" / "lib" / "hf-publish"
        self.state = base / "var" / "lib" / "gitea-hf-hook"
        self.spool = self.state / "spool"
        self.audit_log = self.state / "audit.jsonl"
        self.log_dir = base / "var" / "log" / "gitea-hf-hook"
        self.hook_log = self.log_dir / "hook.log"
        for folder in (self.etc, self.state, self.log_dir.parent):
            folder.mkdir(parents=True)
        for path in (base / "etc", base / "var", base / "var" / "lib", self.log_dir.parent, self.etc, self.state):
            path.chmod(0o755)
        self._folder(self.tokens, WORKER, 0o700)
        self.token_file.write_text(hub.token + "\n")
        self._file(self.token_file, WORKER, 0o600)
        self._folder(self.worker_home, WORKER, 0o700)
        self._folder(self.spool, WORKER, 0o2750)
        self._folder(self.log_dir, GIT, 0o750)
        old_umask = os.umask(0o022)
        try:
            self.gitea = GiteaServer(base / "var" / "lib")  # <base>/var/lib/gitea/{gitea-repositories,lfs,home}
        finally:
            os.umask(old_umask)
        self.gitea.spool, self.gitea.config_path = self.spool, self.config_path
        # Gitea's LFS endpoint: uploads link objects to their repository; the worker asks as its Gitea account.
        self.gitea_api = self.gitea.gitea_api = GiteaApi(self.gitea.lfs_root)
        self.gitea_token_file = self.tokens / "gitea"
        self.gitea_token_file.write_text(self.gitea_api.add_token(WORKER_GITEA_USER) + "\n")
        self._file(self.gitea_token_file, WORKER, 0o600)
        self.installed: subprocess.CompletedProcess[str] | None = None  # what the last install printed
        chown_tree(self.gitea.data, GIT)
        (base / "work").mkdir(mode=0o755)
        self.config_path.write_text(
            "gitea:\n"
            f"  repo_root: {self.gitea.repo_root}\n"
            f"  lfs_root: {self.gitea.lfs_root}\n"
            f"  url: {self.gitea_api.url}\n"
            f"  token_file: {self.gitea_token_file}\n"
            "hub:\n"
            f"  endpoint: {hub.url}\n"
            "  xet: off\n"
            "  tokens:\n"
            f"    acme: {self.token_file}\n"
            f"spool: {self.spool}\n"
            f"audit_log: {self.audit_log}\n"
            f"log_file: {self.hook_log}\n"
            + extra
            + f"repos:\n{repos_yaml}")
        self.config_path.chmod(0o644)

    @staticmethod
    def _folder(path: Path, account: Account, mode: int) -> None:
        path.mkdir(parents=True)
        TwoUsers._file(path, account, mode)

    @staticmethod
    def _file(path: Path, account: Account, mode: int) -> None:
        os.chown(path, account.uid, account.gid)
        path.chmod(mode)  # after chown, which may clear set-id bits

    def as_git(self, argv: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: Path | None = None,
               input: str | None = None,  # noqa: A002 - as subprocess.run names it
               timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` as Gitea's user, with Gitea's git home as HOME and a clean environment plus ``env``."""
        return run_as(GIT, self.gitea.home, argv, env=env, cwd=cwd, input=input, timeout=timeout)

    def as_worker(self, argv: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: Path | None = None,
                  input: str | None = None,  # noqa: A002 - as subprocess.run names it
                  timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` as the worker's user, with its own HOME and a clean environment plus ``env``."""
        quiet = {"HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
        return run_as(WORKER, self.worker_home, argv, env={**quiet, **(env or {})}, cwd=cwd, input=input,
                      timeout=timeout)

    def as_root(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run ``gitea-hf-hook --config <config> args...`` as the admin, root."""
        return subprocess.run([*command(), "--config", str(self.config_path), *args], capture_output=True,
                              text=True, cwd=ROOT, timeout=120)

    def create_repo(self, owner: str, name: str) -> Clone:
        """A repository as Gitea makes it, owned by git, with our hooks installed by root; and a clone of it."""
        old_umask = os.umask(0o022)
        try:
            self.gitea.create_repo(owner, name)
        finally:
            os.umask(old_umask)
        chown_tree(self.gitea.repo_root, GIT)
        self.installed = self.as_root("install", f"{owner}/{name}")
        assert self.installed.returncode == 0, self.installed.stderr
        return Clone(self, owner, name)

    def push(self, clone: Clone, *refspecs: str, user: str | None = "alice", via: str = "ssh") -> PushResult:
        """A real ``git push`` as git, with the environment Gitea gives receive-pack, so the hooks run as git."""
        env = {**IDENTITY, **gitea_env(clone.owner, clone.name, user, via=via)}
        result = self.as_git(["git", "push", "--porcelain", str(clone.bare), *refspecs], cwd=clone.path, env=env)
        remote = [line[len("remote: "):].rstrip() for line in result.stderr.splitlines()
                  if line.startswith("remote: ")]
        return PushResult(result.returncode, [line for line in remote if line], result.stderr)

    def store_lfs(self, content: bytes, repository: str | None) -> str:
        """An object in Gitea's LFS store, owned by git, as an upload to ``repository`` leaves it (linked to it by
        Gitea's LFS endpoint; ``None`` links it nowhere). Returns its oid."""
        old_umask = os.umask(0o022)
        try:
            oid = self.gitea.store_lfs(content, repository)
        finally:
            os.umask(old_umask)
        chown_tree(self.gitea.lfs_root, GIT)
        return oid

    @staticmethod
    def pointer(oid: str, size: int) -> str:
        """The text of a Git LFS pointer file."""
        return lfs_pointer(oid, size).decode()

    def worker_once(self) -> subprocess.CompletedProcess[str]:
        """``gitea-hf-hook --config <config> worker --once`` as the worker's user."""
        return self.as_worker([*command(), "--config", str(self.config_path), "worker", "--once"])


def new_repo_name() -> str:
    """A repository name no other test of this session uses on the shared Hub emulator."""
    return f"two-users-{next(_names)}"


@pytest.fixture(name="two_users")
def two_users_fixture(hub: Hub) -> Iterator[TwoUsers]:
    """The installed server, in a fresh base folder other users can enter (pytest's own folders are root's)."""
    require_other_uids()
    hub.reset()
    base = Path(tempfile.mkdtemp(prefix="gitea-hf-hook-two-users-"))
    base.chmod(0o755)
    site = None
    try:
        site = TwoUsers(base, hub)
        yield site
    finally:
        if site is not None:
            site.gitea_api.close()
        shutil.rmtree(base)
