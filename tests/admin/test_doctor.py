"""An admin runs ``gitea-hf-hook doctor`` on an installed server and reads one line per check: every line ``ok``
when all is as the README sets it up, and for each thing that is not, the line naming it and the fix.

Everything is real: scratch Unix users made here (Gitea's and the worker's, in Gitea's group), the README's owners
and modes under a scratch base folder, repositories laid out as Gitea lays them out with our hooks installed by
root, Gitea's git home with ``init.templateDir`` set as Gitea sets it, tokens made at run time on the Hub emulator
(fine-grained, classic, old) and on the stand-in for Gitea's API (with scopes). doctor runs as root, as the README
says, as a subprocess.
"""

from __future__ import annotations

import datetime
import json
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gitea_hf_hook.config import cache
from tests.support import two_users
from tests.support.gitea_api import GiteaApi
from tests.support.gitea_server import WORKER_GITEA_USER, GiteaServer, gitea_env
from tests.support.hub import Hub
from tests.support.jobs import ROOT
from tests.support.rules import GROUPS, RULE

READ_WRITE = ["repo.content.read", "repo.write"]


def useradd(*args: str) -> pwd.struct_passwd:
    name = f"ghh-doc-{secrets.token_hex(3)}"
    result = subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", *args, name],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return pwd.getpwnam(name)


def days_ago(days: float) -> str:
    """An ISO time ``days`` before now, as whoami-v2 writes ``createdAt``."""
    moment = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=days)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")


class Site:
    """A server installed as README.md says, under ``base``: Gitea's user and the worker's user exist for real."""

    def __init__(self, base: Path, hub: Hub) -> None:
        self.base, self.hub = base, hub
        self.data = base / "var" / "lib"
        self.worker_home = self.data / "hf-publish"
        self.hook = useradd("--user-group", "--home-dir", str(base / "nowhere"))
        self.worker = useradd("--gid", str(self.hook.pw_gid), "--home-dir", str(self.worker_home))
        self.git = two_users.Account(self.hook.pw_name, self.hook.pw_uid, self.hook.pw_gid)
        self.hf = two_users.Account(self.worker.pw_name, self.worker.pw_uid, self.worker.pw_gid)
        self.etc = base / "etc" / "gitea-hf-hook"
        self.config = self.etc / "config.yaml"
        self.tokens = self.etc / "tokens"
        self.state = self.data / "gitea-hf-hook"
        self.spool = self.state / "spool"
        self.log_dir = base / "var" / "log" / "gitea-hf-hook"
        self.template = base / "opt" / "gitea-hf-hook" / "template"
        for folder in (self.etc, self.state, self.log_dir.parent, self.template.parent):
            folder.mkdir(parents=True)
        for path in (base / "etc", base / "var", self.data, self.log_dir.parent, self.etc, self.state,
                     base / "opt", self.template.parent):
            path.chmod(0o755)
        self.folder(self.tokens, self.hf, 0o700)
        self.folder(self.worker_home, self.hf, 0o700)
        self.folder(self.spool, self.hf, 0o2750)
        self.folder(self.log_dir, self.git, 0o750)
        old_umask = os.umask(0o022)
        try:
            self.gitea = GiteaServer(self.data)  # <data>/gitea/{gitea-repositories,lfs,home}
            self.api = self.gitea.gitea_api = GiteaApi(self.gitea.lfs_root)
            self.gitea.create_repo("acme", "bert-tiny")
            self.oid = self.gitea.store_lfs(b"weights" * 100, "acme/bert-tiny")
        finally:
            os.umask(old_umask)
        two_users.chown_tree(self.gitea.data, self.git)
        self.made: list[str] = []  # tokens a test put in the file since
        self.hub_token = hub.add_token("alice", scoped=[("org", "acme", READ_WRITE)], created_at=days_ago(5.5))
        self.gitea_token = self.api.add_token(WORKER_GITEA_USER)
        self.token_file = self.secret("acme", self.hub_token)
        self.gitea_token_file = self.secret("gitea", self.gitea_token)
        self.config.write_text(
            "gitea:\n"
            f"  repo_root: {self.gitea.repo_root}\n"
            f"  lfs_root: {self.gitea.lfs_root}\n"
            f"  url: {self.api.url}\n"
            f"  token_file: {self.gitea_token_file}\n"
            "hub:\n"
            f"  endpoint: {hub.url}\n"
            "  xet: off\n"
            "  tokens:\n"
            f"    acme: {self.token_file}\n"
            f"spool: {self.spool}\n"
            f"audit_log: {self.state / 'audit.jsonl'}\n"
            f"log_file: {self.log_dir / 'hook.log'}\n"
            + GROUPS + f"repos:\n{RULE}")
        self.config.chmod(0o644)
        installed = self.cli("install", "--all", "--template", str(self.template))
        assert installed.returncode == 0, installed.stderr
        self.gitconfig = self.gitea.home / ".gitconfig"
        self.git_config("init.templateDir", str(self.template))  # as Gitea writes [git.config] at start

    @staticmethod
    def folder(path: Path, account: two_users.Account, mode: int) -> None:
        path.mkdir(parents=True)
        os.chown(path, account.uid, account.gid)
        path.chmod(mode)

    def secret(self, name: str, token: str) -> Path:
        path = self.tokens / name
        path.write_text(token + "\n")
        os.chown(path, self.hf.uid, self.hf.gid)
        path.chmod(0o600)
        return path

    def git_config(self, *args: str) -> None:
        subprocess.run(["git", "config", "--file", str(self.gitconfig), *args], check=True)
        os.chown(self.gitconfig, self.git.uid, self.git.gid)

    def push(self, refspec: str) -> subprocess.CompletedProcess[str]:
        """A real push by alice of a commit holding a model card, as Gitea's user, with Gitea's git home as HOME."""
        work = self.base / "work"
        if not work.exists():
            work.mkdir(mode=0o755)
            (work / "README.md").write_text("---\nlicense: mit\n---\n# bert-tiny\n")
            two_users.chown_tree(work, self.git)
            for args in (["init", "--quiet", "--initial-branch=main"], ["add", "-A"], ["commit", "--quiet", "-m", "card"]):
                assert self.as_git(*args).returncode == 0
        return self.as_git("push", "--porcelain", str(self.gitea.repo_root / "acme" / "bert-tiny.git"), refspec,
                           env=gitea_env("acme", "bert-tiny", "alice"))

    def as_git(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return two_users.run_as(self.git, self.gitea.home, ["git", *args], cwd=self.base / "work",
                                env={**two_users.IDENTITY, **(env or {})})

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*two_users.command(), "--config", str(self.config), *args], capture_output=True,
                              text=True, cwd=ROOT, timeout=300)

    def doctor(self, *args: str, code: int | None = None) -> list[str]:
        """``doctor`` as root: its lines, with no token anywhere in what it printed."""
        result = self.cli("doctor", *args)
        for token in (self.hub_token, self.gitea_token, *self.made):
            assert token not in result.stdout + result.stderr
        assert result.stderr == ""
        if code is not None:
            assert result.returncode == code, result.stdout
        return result.stdout.splitlines()

    def set_hub_token(self, token: str) -> None:
        """Put ``token`` in hub.tokens.acme's file (doctor must never print it)."""
        self.made.append(token)
        self.token_file.write_text(token + "\n")

    def expected(self) -> dict[str, str]:
        """The lines of a healthy install, by check."""
        w = self.worker.pw_name
        return {
            "config": f"ok   config: {self.config} loads: 1 rule",
            "config file": f"ok   config file: {self.config} and the folders above it: only root or {w} can change "
                           "them",
            "token file hub.tokens.acme": f"ok   token file hub.tokens.acme: {self.token_file}: only {w} can read it",
            "token file gitea.token_file": f"ok   token file gitea.token_file: {self.gitea_token_file}: only {w} can "
                                           "read it",
            "worker home": f"ok   worker home: {self.worker_home}: {w}'s, writable by no one else",
            "spool": f"ok   spool: {self.spool}: {w}'s; Gitea's user may write only tmp, queue, cards, audit",
            "hook cache": f"ok   hook cache: {self.gitea.home}/.cache/gitea-hf-hook: not made yet (the first push "
                          "makes it)",
            "log folder": f"ok   log folder: {self.log_dir}: the hooks log there",
            "lfs store": f"ok   lfs store: {self.gitea.lfs_root}: {w} can read it",
            "hooks": "ok   hooks: the one repository holds our hooks as this installation writes them",
            "template": f"ok   template: init.templateDir = {self.template}: our hooks, as this installation "
                        "writes them",
            "hub token acme": f"ok   hub token acme: alice's fine-grained token, made {days_ago(5.5)[:10]}: can "
                              "write acme",
            "gitea token": f"ok   gitea token: {self.api.url.rstrip('/')} answers; the token has read:repository "
                           "and write:repository, for the one publishing repository",
            "worker service": service_line(),
        }

    def lines(self, **changed: str | list[str]) -> list[str]:
        """The healthy lines, but for the checks in ``changed``, whose line (or lines) is given."""
        found: list[str] = []
        for check, healthy in self.expected().items():
            said = changed.pop(check, healthy)
            found += [said] if isinstance(said, str) else said
        assert not changed, f"no such check: {changed}"
        return found


def service_line() -> str:
    if os.path.isdir("/run/systemd/system"):
        pytest.skip("systemd runs this host, so the worker service line depends on its units")
    return ("ok   worker service: not checked: systemd does not run this host (/run/systemd/system is missing); make "
            "sure the worker runs under its service manager")


@pytest.fixture
def site(hub: Hub) -> Iterator[Site]:
    two_users.require_other_uids()
    hub.reset()
    base = Path(tempfile.mkdtemp(prefix="gitea-hf-hook-doctor-"))
    base.chmod(0o755)
    made = None
    try:
        made = Site(base, hub)
        yield made
    finally:
        if made is not None:
            made.api.close()
            for account in (made.worker, made.hook):
                subprocess.run(["userdel", account.pw_name], capture_output=True, timeout=60)
        shutil.rmtree(base)


def test_a_healthy_install_is_all_ok_and_doctor_exits_0(site: Site) -> None:
    assert site.doctor(code=0) == site.lines()



def test_a_broken_config_is_one_fail_line_saying_since_when_the_hooks_found_it_broken(site: Site) -> None:
    broken = site.config.read_text() + "  - match:\n    - [\n"
    site.config.write_text(broken)
    error = (f"fail config: {site.config}:{broken.count(chr(10)) + 1}: not valid YAML: expected the node content, "
             "but found '<stream end>'")
    fix = " (fix config.yaml; README.md lists every key)"
    rest = "; the other checks need a config that loads"
    assert site.doctor(code=1) == [error + rest + fix]
    pushed = site.push("main")
    assert pushed.returncode == 1, pushed.stderr  # the hook, as Gitea's user, finds the config broken
    since = cache.broken_since(str(site.config), str(site.gitea.home / ".cache"))
    assert since is not None
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(since))
    assert site.doctor(code=1) == [f"{error}; the hooks have found it broken since {when}, and refuse pushes to the "
                                   f"refs that published under the last valid config{rest}{fix}"]


def test_each_mode_the_worker_would_refuse_is_a_fail_line_with_the_chmod_that_fixes_it(site: Site) -> None:
    site.config.chmod(0o664)
    site.token_file.chmod(0o640)
    site.worker_home.chmod(0o770)
    state = site.spool / "state"
    state.chmod(0o2770)
    c, t, h = site.config, site.token_file, site.worker_home
    assert site.doctor(code=1) == site.lines(**{
        "config file": f"fail config file: {c}: the config file is writable by group (mode 0664) (chmod 644 {c})",
        "token file hub.tokens.acme": f"fail token file hub.tokens.acme: {t}: the Hub token file named by "
                                      f"hub.tokens.acme may be read by group or others (mode 0640) (chmod 600 {t})",
        "worker home": f"fail worker home: {h}: the worker's home folder is writable by group (mode 0770) "
                       f"(chmod 700 {h})",
        "spool": f"fail spool: the spool folder {state} is writable by group (mode 2770) (chmod 2750 {state})"})


def test_a_token_file_another_user_owns_and_a_spool_folder_the_hooks_cannot_write_are_failures(site: Site) -> None:
    os.chown(site.gitea_token_file, site.git.uid, site.git.gid)
    queue = site.spool / "queue"
    queue.chmod(0o2750)
    g, w = site.hook.pw_name, site.worker.pw_name
    assert site.doctor(code=1) == site.lines(**{
        "token file gitea.token_file": f"fail token file gitea.token_file: {site.gitea_token_file}: the Gitea token "
                                       f"file named by gitea.token_file belongs to uid {site.git.uid} ({g}), not to "
                                       f"the worker's user {w} (chown {w} {site.gitea_token_file})",
        "spool": f"fail spool: Gitea's user {g} cannot write {queue}, so pushes are not queued (chgrp {g} {queue} && "
                 f"chmod 2770 {queue})"})


def test_a_hook_cache_others_could_write_is_a_failure_for_the_hooks_trust_the_config_cached_there(
        site: Site) -> None:
    assert site.push("main:experiment").returncode == 0  # no rule publishes it; the hook caches the config
    folder = site.gitea.home / ".cache" / "gitea-hf-hook"
    g = site.hook.pw_name
    assert site.doctor(code=0) == site.lines(**{"hook cache": f"ok   hook cache: {folder}: {g}'s alone"})
    cached = next(folder.glob("config-*.json"))
    cached.chmod(0o664)
    assert site.doctor(code=1) == site.lines(**{
        "hook cache": f"fail hook cache: {cached} could be changed by others than Gitea's user {g} (owner {g}, mode "
                      f"0664), and the hooks trust the config cached there (chown -R {g} {folder} && chmod -R go-w "
                      f"{folder})"})


def test_an_lfs_store_the_worker_cannot_read_is_a_failure(site: Site) -> None:
    folder = site.gitea.lfs_root / site.oid[:2]
    folder.chmod(0o700)  # as a Gitea running with umask 077 leaves it
    w = site.worker.pw_name
    assert site.doctor(code=1) == site.lines(**{
        "lfs store": f"fail lfs store: {w} cannot read the LFS store: {folder}: Permission denied (give Gitea's group "
                     f"read access to {site.gitea.lfs_root} (objects 0640, folders 0750), with {w} in it)"})


def test_hooks_sync_would_repair_are_a_failure_naming_sync_and_after_sync_all_is_ok(site: Site) -> None:
    hooks = site.gitea.repo_root / "acme" / "bert-tiny.git" / "hooks"
    (hooks / "pre-receive.d" / "hf-publish").write_text((hooks / "pre-receive.d" / "hf-publish").read_text() + "#\n")
    (hooks / "post-receive.d" / "hf-publish").chmod(0o644)
    assert site.doctor(code=1) == site.lines(hooks=(
        "fail hooks: gitea-hf-hook sync would change the one repository: would repair acme/bert-tiny: "
        "hooks/pre-receive.d/hf-publish: it was modified, or written by another installation; would repair "
        "acme/bert-tiny: hooks/post-receive.d/hf-publish: it was not executable (mode 0644) (run gitea-hf-hook sync, "
        "as root)"))
    assert (hooks / "post-receive.d" / "hf-publish").stat().st_mode & 0o777 == 0o644  # doctor changed nothing
    assert site.cli("sync").returncode == 0
    assert site.doctor(code=0) == site.lines()


def test_a_repository_made_after_install_gets_the_hooks_from_the_template_and_one_made_without_it_needs_sync(
        site: Site) -> None:
    site.gitea.create_repo("acme", "gpt-nano")  # git init, with HOME at Gitea's git home: the template applies
    every = {"hooks": "ok   hooks: all 2 repositories hold our hooks as this installation writes them",
             "gitea token": f"ok   gitea token: {site.api.url.rstrip('/')} answers; the token has read:repository "
                            "and write:repository, for all 2 publishing repositories"}
    two_users.chown_tree(site.gitea.repo_root, site.git)
    assert site.doctor(code=0) == site.lines(**every)
    bare = site.gitea.repo_root / "acme" / "notemplate.git"
    subprocess.run(["git", "init", "--bare", "--quiet", "--template=", str(bare)], check=True)  # as Forgejo does
    site.api.grant(WORKER_GITEA_USER, "acme/notemplate")
    two_users.chown_tree(site.gitea.repo_root, site.git)
    assert site.doctor(code=1) == site.lines(**{
        "hooks": ["fail hooks: gitea-hf-hook sync would change 1 of 3 repositories: would install acme/notemplate "
                  "(run gitea-hf-hook sync, as root)",
                  "warn hooks: our hooks would not run: acme/notemplate: hooks/pre-receive is not Gitea's dispatcher, "
                  "so the hook will not run; acme/notemplate: hooks/post-receive is not Gitea's dispatcher, so the "
                  "hook will not run (let Gitea resynchronise its hooks)"],
        "gitea token": f"ok   gitea token: {site.api.url.rstrip('/')} answers; the token has read:repository and "
                       "write:repository, for all 3 publishing repositories"})


def test_no_template_in_gitea_s_git_home_is_a_warning_naming_the_app_ini_lines(site: Site) -> None:
    site.git_config("--unset", "init.templateDir")
    assert site.doctor(code=0) == site.lines(template=(
        f"warn template: init.templateDir is not set in {site.gitconfig}, so a repository made from now on has our "
        "hooks only once gitea-hf-hook sync runs (write a template with gitea-hf-hook install --template DIR, then "
        "add to Gitea's app.ini the lines [git.config] / init.templateDir = DIR and restart Gitea)"))
    hook = site.template / "hooks" / "post-receive.d" / "hf-publish"
    site.git_config("init.templateDir", str(site.template))
    hook.unlink()
    assert site.doctor(code=1) == site.lines(template=(
        f"fail template: init.templateDir in {site.gitconfig} names {site.template}, which does not hold "
        f"hooks/post-receive.d/hf-publish (gitea-hf-hook install --template {site.template})"))


def hub_line(site: Site, status: str, detail: str, fix: str | None = "narrow") -> str:
    if fix == "narrow":
        fix = f"put a fine-grained token of alice that can write only acme in {site.token_file}"
    return f"{status:<4} hub token acme: {detail}" + (f" ({fix})" if fix else "")


def test_a_classic_write_token_or_one_covering_other_namespaces_is_a_warning_naming_what_to_narrow(
        site: Site) -> None:
    site.set_hub_token(site.hub.add_token("alice", "write", created_at=days_ago(1)))
    assert site.doctor(code=0) == site.lines(**{"hub token acme": hub_line(
        site, "warn", "broader than it needs: a classic write token of alice writes every repository of acme, alice, "
                      "not only acme")})
    site.set_hub_token(site.hub.add_token("alice", scoped=[("org", "acme", READ_WRITE), ("org", "beta", READ_WRITE),
                                                           ("user", "alice", ["repo.content.read"])]))
    assert site.doctor(code=0) == site.lines(**{"hub token acme": hub_line(
        site, "warn", "broader than it needs: it also covers alice, beta")})
    site.set_hub_token(site.hub.add_token("alice", scoped=[("model", "acme/bert-tiny", READ_WRITE)]))
    assert site.doctor(code=0) == site.lines(**{"hub token acme": hub_line(
        site, "warn", "it writes only acme/bert-tiny of acme, so publishing to, or creating, another repository of "
                      "acme fails", "give it write access to all of acme (repo.write)")})


def test_a_token_that_cannot_write_its_namespace_is_a_failure(site: Site) -> None:
    site.set_hub_token(site.hub.add_token("alice", scoped=[("org", "beta", READ_WRITE),
                                                           ("org", "acme", ["repo.content.read"])]))
    assert site.doctor(code=1) == site.lines(**{"hub token acme": [
        hub_line(site, "fail", "it cannot write acme (no repo.write there)"),
        hub_line(site, "warn", "broader than it needs: it also covers beta")]})
    site.set_hub_token(site.hub.read_token)
    assert site.doctor(code=1) == site.lines(**{"hub token acme": hub_line(
        site, "fail", "a read token: the worker cannot publish with it to acme").replace("of alice", "of reader")})
    site.set_hub_token("hf_" + secrets.token_hex(16))  # a token the Hub does not know
    assert site.doctor(code=1) == site.lines(**{"hub token acme": hub_line(
        site, "fail", "asking the Hub whose token it is (whoami-v2): the Hub answered 401: Invalid user token.",
        f"the Hub refused the token: put a valid token in {site.token_file}")})


def test_a_token_older_than_rotate_after_days_is_a_warning_when_the_hub_says_when_it_was_made(site: Site) -> None:
    made = days_ago(200.5)
    site.set_hub_token(site.hub.add_token("alice", scoped=[("org", "acme", READ_WRITE)], created_at=made))
    assert site.doctor(code=0) == site.lines(**{"hub token acme": hub_line(
        site, "warn", f"made {made[:10]}, 200 days ago, which is more than hub.rotate_after_days (90)",
        f"make a new token, write it into {site.token_file} (the worker reads it at each job), then revoke the old "
        "one")})
    site.config.write_text(site.config.read_text().replace("  xet: off\n", "  xet: off\n  rotate_after_days: 365\n"))
    assert site.doctor(code=0) == site.lines(**{"hub token acme": hub_line(
        site, "ok", f"alice's fine-grained token, made {made[:10]}: can write acme", None)})
    site.set_hub_token(site.hub.add_token("alice", scoped=[("org", "acme", READ_WRITE)], created_at=None))
    assert site.doctor(code=0) == site.lines(**{"hub token acme": hub_line(
        site, "ok", "alice's fine-grained token: can write acme", None)})


def test_a_namespace_no_token_covers_and_a_hub_that_does_not_answer_are_failures(site: Site) -> None:
    site.config.write_text(site.config.read_text().replace("    acme: ", "    zeta: "))
    site.hub.fault(method="GET", path="^/api/whoami-v2$", status=503, times=1)
    assert site.doctor(code=1) == site.lines(**{
        "token file hub.tokens.acme": f"ok   token file hub.tokens.zeta: {site.token_file}: only "
                                      f"{site.worker.pw_name} can read it",
        "hub token acme": [
            "fail hub tokens: no token for acme, where acme/bert-tiny publishes (add hub.tokens.acme: a file holding "
            "a token that can write acme)",
            "fail hub token zeta: asking the Hub whose token it is (whoami-v2): the Hub answered 503: injected fault (check "
            "hub.endpoint, and run doctor again once the Hub answers)"]})


def gitea_line(site: Site, status: str, detail: str, fix: str | None = None) -> str:
    return f"{status:<4} gitea token: {detail}" + (f" ({fix})" if fix else "")


def test_the_gitea_token_is_probed_for_its_scopes_without_adding_a_status(site: Site) -> None:
    assert site.doctor(code=0) == site.lines()
    base = f"/api/v1/repos/acme/bert-tiny/statuses/{'0' * 40}"
    assert [(r.method, r.path, r.auth, r.payload) for r in site.api.status_requests] == [
        ("GET", base, "token", None), ("POST", base, "token", [])]
    assert site.api.statuses("acme/bert-tiny", "0" * 40) == []
    fix = f"write a Gitea access token with the read:repository and write:repository scopes into it: " \
          f"{site.gitea_token_file}"
    for scopes, lacking in ((("read:repository",), "write:repository"), (("write:issue",), "read:repository")):
        site.gitea_token_file.write_text(site.api.add_token(WORKER_GITEA_USER, scopes) + "\n")
        assert site.doctor(code=1) == site.lines(**{"gitea token": gitea_line(
            site, "fail", f"the token in {site.gitea_token_file} lacks {lacking} (Gitea answered 403: token does not "
                          f"have at least one of required scope(s), required=[{lacking}], token scope={scopes[0]})",
            fix)})
    site.config.write_text(site.config.read_text().replace("  token_file:", "  statuses: false\n  token_file:"))
    site.gitea_token_file.write_text(site.api.add_token(WORKER_GITEA_USER, ("read:repository",)) + "\n")
    assert site.doctor(code=0) == site.lines(**{"gitea token": gitea_line(
        site, "ok", f"{site.api.url.rstrip('/')} answers; the token has read:repository (gitea.statuses is off), for "
                    "the one publishing repository")})


def test_a_gitea_token_whose_user_cannot_see_or_write_the_repositories_or_a_gitea_that_is_down_is_a_failure(
        site: Site) -> None:
    site.api.grant(WORKER_GITEA_USER, "acme/bert-tiny", write=False)
    assert site.doctor(code=1) == site.lines(**{"gitea token": gitea_line(
        site, "fail", "the token's user may not write acme/bert-tiny, so no commit status is posted there",
        "give it write access to their code, or set gitea.statuses: false")})
    site.gitea_token_file.write_text(site.api.add_token("nobody") + "\n")
    assert site.doctor(code=1) == site.lines(**{"gitea token": gitea_line(
        site, "fail", "Gitea shows the token's user none of acme/bert-tiny (or does not know the token), so their "
                      "Git LFS content cannot be published",
        "give that user read access to them, or write a Gitea access token with the read:repository and "
        f"write:repository scopes into it: {site.gitea_token_file}")})
    site.api.stop()
    assert site.doctor(code=1) == site.lines(**{"gitea token": gitea_line(
        site, "fail", f"gitea.url {site.api.url.rstrip('/')} does not answer: Connection refused",
        "set gitea.url to Gitea's ROOT_URL, and check that Gitea is running")})


def test_json_holds_the_same_checks_as_the_lines(site: Site) -> None:
    site.token_file.chmod(0o644)
    lines = site.doctor(code=1)
    found = json.loads(subprocess.run([*two_users.command(), "--config", str(site.config), "doctor", "--json"],
                                      capture_output=True, text=True, cwd=ROOT, timeout=300).stdout)
    assert [sorted(entry) for entry in found] == [["check", "detail", "fix", "status"]] * len(lines)
    rendered = [f"{e['status']:<4} {e['check']}: {e['detail']}" + (f" ({e['fix']})" if e["fix"] else "")
                for e in found]
    assert rendered == lines
    assert [e["status"] for e in found if e["fix"] is not None] == ["fail"]


def test_the_emulator_answers_whoami_v2_as_the_hub_does_and_holds_a_fine_grained_token_to_its_scopes(
        hub: Hub) -> None:
    from huggingface_hub.errors import HfHubHTTPError

    made = days_ago(3)
    token = hub.add_token("alice", scoped=[("org", "acme", READ_WRITE)], created_at=made)
    info = hub.api(token).whoami()
    assert info["name"] == "alice" and [org["name"] for org in info["orgs"]] == ["acme"]
    entity = info["auth"]["accessToken"]["fineGrained"]["scoped"][0]["entity"]
    assert info["auth"] == {"type": "access_token", "accessToken": {
        "displayName": "hub-emulator", "role": "fineGrained", "createdAt": made,
        "fineGrained": {"canReadGatedRepos": False, "global": [], "scoped": [
            {"entity": {"_id": entity["_id"], "type": "org", "name": "acme"}, "permissions": READ_WRITE}]}}}
    assert hub.api(token).create_repo(f"acme/doctor-{secrets.token_hex(4)}").startswith(hub.url)
    with pytest.raises(HfHubHTTPError) as refused:
        hub.api(token).create_repo(f"beta/doctor-{secrets.token_hex(4)}")
    assert refused.value.response.status_code == 403
    assert set(hub.api(hub.token).whoami()["auth"]["accessToken"]) == {"displayName", "role", "createdAt"}


def test_a_log_folder_others_may_write_and_a_spool_missing_its_folders_are_failures(site: Site) -> None:
    site.log_dir.chmod(0o777)
    shutil.rmtree(site.spool / "cards")
    assert site.doctor(code=1) == site.lines(**{
        "spool": f"fail spool: {site.spool} lacks cards (gitea-hf-hook sync, as root, makes them)",
        "log folder": f"fail log folder: {site.log_dir} is writable by others (mode 0777) (chmod o-w {site.log_dir})"})
    assert site.cli("sync").returncode == 0
    site.log_dir.chmod(0o750)
    assert site.doctor(code=0) == site.lines()


def test_the_lfs_check_follows_no_link_gitea_s_user_planted_in_the_store(tmp_path: Path) -> None:
    from gitea_hf_hook.admin.doctor import lfs_problem

    store, elsewhere = tmp_path / "lfs", tmp_path / "elsewhere"
    (elsewhere / "cd").mkdir(parents=True)
    (elsewhere / "cd" / "secret").write_text("not an LFS object\n")
    store.mkdir()
    (store / "ab").symlink_to(elsewhere)
    assert lfs_problem(str(store)) == f"{store}/ab: Not a directory"  # O_DIRECTORY with O_NOFOLLOW on a link
    (store / "ab").unlink()
    (store / "ab" / "cd").mkdir(parents=True)
    os.mkfifo(store / "ab" / "cd" / "fifo")  # opened without blocking, and refused
    assert lfs_problem(str(store)) == f"{store}/ab/cd/fifo: not a regular file"


def test_a_broken_since_record_from_the_far_future_is_not_believed(tmp_path: Path) -> None:
    from gitea_hf_hook.config import cache

    config = tmp_path / "config.yaml"
    record = Path(cache.cache_file(str(config), str(tmp_path / "cache")) + ".broken")
    record.parent.mkdir(parents=True)
    record.write_text("1e20\n")  # Gitea's user writes this folder
    assert cache.broken_since(str(config), str(tmp_path / "cache")) is None
