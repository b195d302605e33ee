"""What Gitea's user can do to the worker, done for real: the attacker runs as git (uid 30001), the worker as
hf-publish (uid 30002), and each story asserts what the admin sees, where the job ends, what the Hub holds, and
that the Hub token never left its folder (README.md, "What each user can do").

Gitea's user owns the repositories, their config and the LFS store, writes spool/{tmp,queue,cards}, and runs any
program it likes as itself. It must never make the worker run a program, read or write a file outside the
repositories and the store, publish to a target the config does not map, or hand a Hub token to anyone.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from gitea_hf_hook.config import cache
from gitea_hf_hook.config.load import load, to_json
from gitea_hf_hook.config.model import Target
from gitea_hf_hook.spool.job import Job, PushRecord, Request, dump, is_oid, new_id
from gitea_hf_hook.spool.state import target_key
from tests.support.canary import Canary, canary_fixture  # noqa: F401 - canary_fixture is the canary fixture
from tests.support.jobs import read_job
from tests.support.rules import CARD
from tests.support.two_users import (  # noqa: F401 - two_users_fixture is the two_users fixture
    WORKER,
    Clone,
    Owned,
    TwoUsers,
    files_under,
    new_repo_name,
    owned,
    two_users_fixture,
)

# The Hub repository a request is about, where its path names one (the API, or Git LFS under <repo>.git/).
_NAMED = re.compile(r"/api/(?:models|datasets|spaces)/([^/]+/[^/?]+)|^/(?:datasets/|spaces/)?([^/]+/[^/]+)\.git/")
CONFIG_JSON = '{"architectures": ["BertModel"], "hidden_size": 8}\n'
MODEL = {"README.md": CARD, "config.json": CONFIG_JSON}


# --- acting as Gitea's user --------------------------------------------------------------------------------------

def write_as_git(site: TwoUsers, path: Path, text: str) -> str:
    """Write ``path`` as Gitea's user; returns what the writer printed on standard error ("" when it could)."""
    return site.as_git(["tee", str(path)], input=text).stderr


def forged_job(repository: str, commit: str, *, hub_repo: str | None = None, repo_dir: str = "") -> Job:
    """A job for refs/heads/main as Gitea's user would write it into queue/ itself, with the spool's own type."""
    target = Target(hub_repo or repository, "model", "branch", "main", "main")
    request = Request(repository=repository, repo_dir=repo_dir, ref="refs/heads/main", old="0" * 40,
                      new=commit if is_oid(commit) else "1" * 40, commit=commit, target=target)
    owner, _, name = repository.partition("/")
    pushed = PushRecord(owner=owner, name=name, repo_id="7", pusher="mallory", pusher_id="9", deploy_key_id="",
                        trigger="", pr_id="")
    return Job(id=new_id(), created=time.time(), pushed=pushed, request=request)


def queue_as_git(site: TwoUsers, job: Job) -> Path:
    """Drop ``job`` into queue/ as Gitea's user; returns its path."""
    path = site.spool / "queue" / f"{job.id}.json"
    assert write_as_git(site, path, dump(job).decode()) == ""
    return path


def sign_looking(site: TwoUsers, clone: Clone) -> str:
    """Give the clone's HEAD the signature header a signed commit has; returns the new commit id."""
    header, _, message = clone.git("cat-file", "commit", "HEAD").partition("\n\n")
    signature = "gpgsig -----BEGIN PGP SIGNATURE-----\n \n iQEzBAABCAAdFiEEsignature\n -----END PGP SIGNATURE-----"
    made = site.as_git(["git", "hash-object", "-t", "commit", "-w", "--stdin"], cwd=clone.path,
                       input=f"{header}\n{signature}\n\n{message}\n")
    assert made.returncode == 0, made.stderr
    commit = made.stdout.strip()
    clone.git("update-ref", "refs/heads/main", commit)
    return commit


# --- what the admin, the Hub and the disk show -------------------------------------------------------------------

def logged(stderr: str) -> list[str]:
    """The worker's log messages, without the time and pid each line starts with."""
    return [line.split("]: ", 1)[1] for line in stderr.splitlines() if " gitea-hf-hook worker[" in line]


def holding(root: Path, secret: bytes, *, besides: Path | None = None) -> list[str]:
    """Every file under ``root`` (``besides`` left out) whose bytes contain ``secret``; links are not followed."""
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if Path(folder, d) != besides]
        for name in files:
            path = Path(folder, name)
            if not path.is_symlink() and path.is_file() and secret in path.read_bytes():
                found.append(str(path))
    return found


def token_leaks(site: TwoUsers) -> list[str]:
    """Files holding the Hub token outside its folder: anywhere on the server, or in what the Hub stored."""
    token = site.hub.token.encode()
    return holding(site.base, token, besides=site.tokens) + holding(site.hub.data_dir, token)


def hub_heard(site: TwoUsers, *repos: str) -> list[tuple[str, str, int | None]]:
    """(method, path, status) of each request the Hub logged since the fixture's reset, but those naming a
    repository other than ``repos``: an earlier test's request, delayed by a fault, may be logged late."""
    heard = []
    for r in site.hub.requests():
        named = _NAMED.search(r["path"])
        if named is None or (named.group(1) or named.group(2)) in repos:
            heard.append((r["method"], r["path"], r["status"]))
    return heard


def fingerprint(path: Path) -> tuple[bytes, int, int, int, int]:
    """A file's bytes, inode, owner, mode and modification time: whether anyone touched it."""
    st = path.lstat()
    return path.read_bytes(), st.st_ino, st.st_uid, st.st_mode, st.st_mtime_ns


def queued(site: TwoUsers) -> list[str]:
    """The names in queue/."""
    return sorted(p.name for p in (site.spool / "queue").iterdir())


def only_job(site: TwoUsers, folder: str) -> Job:
    """The one job in ``folder``, read with the worker's parser."""
    [path] = [p for p in (site.spool / folder).iterdir() if p.suffix == ".json"]
    return read_job(str(site.spool), folder, path.stem)


def published(site: TwoUsers) -> tuple[str, Clone]:
    """A repository acme/<new name> holding MODEL, pushed by alice and published by the worker: (name, clone)."""
    name = new_repo_name()
    clone = site.create_repo("acme", name)
    clone.commit(MODEL, message="Add a tiny model")
    pushed = site.push(clone, "main")
    assert pushed.ok, pushed.output
    run = site.worker_once()
    assert run.returncode == 0 and queued(site) == [], run.stderr
    return name, clone


def pushed_repo(site: TwoUsers, files: dict[str, str] | None = None) -> tuple[str, Clone]:
    """A repository acme/<new name> pushed by alice, its job queued and not published yet: (name, clone)."""
    name = new_repo_name()
    clone = site.create_repo("acme", name)
    clone.commit(files or {"README.md": CARD})
    pushed = site.push(clone, "main")
    assert pushed.ok, pushed.output
    return name, clone


def hub_files(site: TwoUsers, repo_id: str, cache_dir: Path) -> dict[str, bytes]:
    """What the Hub serves for ``repo_id``'s main branch, without the ``.gitattributes`` it made itself."""
    found = site.hub.files(repo_id, cache_dir)
    found.pop(".gitattributes", None)
    return found


def encoded(files: dict[str, str]) -> dict[str, bytes]:
    return {path: text.encode() for path, text in files.items()}


# --- 1. a forged config cache ------------------------------------------------------------------------------------

def test_a_config_cache_git_forges_never_reaches_the_worker(two_users: TwoUsers, canary: Canary,
                                                             tmp_path: Path) -> None:
    config = str(two_users.config_path)
    forged = to_json(load(config, cached=False))
    forged.update(hub_endpoint=canary.url, gitea_url=canary.url + "/")
    entry = json.dumps({"stamp": cache.stamp(config), "config": forged})  # what a valid cache of it holds
    name = os.path.basename(cache.cache_file(config))
    gits = two_users.gitea.home / ".cache" / "gitea-hf-hook"
    assert two_users.as_git(["mkdir", "-p", str(gits)]).returncode == 0
    assert write_as_git(two_users, gits / name, entry) == ""
    workers = two_users.worker_home / ".cache" / "gitea-hf-hook"
    assert write_as_git(two_users, workers / name, entry) == f"tee: {workers / name}: Permission denied\n"
    # Even one in the worker's own home, which only root or the worker could have put there, is not read.
    workers.mkdir(parents=True)
    (workers / name).write_text(entry)
    for path in (workers.parent, workers, workers / name):
        os.chown(path, WORKER.uid, WORKER.gid)

    repo = new_repo_name()
    clone = two_users.create_repo("acme", repo)
    commit = clone.commit(MODEL)
    pushed = two_users.push(clone, "main")
    # The hooks are git's own code and believe git's cache: the pusher is told of the canary...
    [job] = [n.removesuffix(".json") for n in queued(two_users)]
    assert pushed.remote == [f"hf-publish: queued acme/{repo}@{commit[:7]} -> {canary.url}/acme/{repo} (main), "
                             f"job {job}"]
    run = two_users.worker_once()
    assert run.returncode == 0, run.stderr
    # ...and the worker, reading the root-owned config itself, publishes to the real Hub.
    done = read_job(str(two_users.spool), "done", job)
    assert done.outcome is not None and (done.outcome.state, done.commit) == ("published", commit)
    assert hub_files(two_users, f"acme/{repo}", tmp_path / "hub") == encoded(MODEL)
    assert canary.heard == []
    assert token_leaks(two_users) == []


def test_a_worker_home_gits_group_may_write_is_refused_and_nothing_is_published(two_users: TwoUsers) -> None:
    name, _ = pushed_repo(two_users)
    home = two_users.worker_home
    home.chmod(0o770)
    run = two_users.worker_once()
    assert (run.returncode, run.stdout) == (1, "")
    assert run.stderr == (f"gitea-hf-hook: error: {home}: the worker's home folder is writable by group "
                          f"(mode 0770) (chmod 700 {home})\n")
    assert len(queued(two_users)) == 1
    assert hub_heard(two_users, f"acme/{name}") == []
    assert not two_users.hub.api().repo_exists(f"acme/{name}")


# --- 2. repository config that runs programs ---------------------------------------------------------------------

# The keys that start a program or open a connection, each given a script of git's ({bin}) or the canary.
RUNNING = (("core.fsmonitor", "{bin}/fsmonitor"), ("core.pager", "{bin}/pager"), ("core.sshCommand", "{bin}/ssh"),
           ("core.askPass", "{bin}/askpass"), ("core.editor", "{bin}/editor"),
           ("core.alternateRefsCommand", "{bin}/alternate-refs"), ("gpg.program", "{bin}/gpg"),
           ("log.showSignature", "true"), ("diff.external", "{bin}/external-diff"),
           ("credential.helper", "!{bin}/credential"), ("uploadpack.packObjectsHook", "{bin}/pack-objects-hook"),
           ("filter.evil.clean", "{bin}/clean"), ("filter.evil.smudge", "{bin}/smudge"),
           ("filter.evil.process", "{bin}/process"), ("diff.evil.textconv", "{bin}/textconv"),
           ("diff.evil.command", "{bin}/diff-command"), ("remote.x.url", "ext::{bin}/ext %S"),
           ("remote.x.promisor", "true"), ("remote.y.url", "{canary}/acme/model.git"), ("remote.y.promisor", "true"),
           ("http.proxy", "{canary}"), ("protocol.allow", "always"))
# What the repository's own config sets, as git would with git config; the rest comes through include.path.
OWN = ("core.fsmonitor", "gpg.program", "log.showSignature", "core.pager", "diff.external", "core.sshCommand",
       "remote.x.promisor", "remote.x.url")
ATTRIBUTES = "* filter=evil diff=evil\n"  # choosing the filter and diff drivers for every path


def planted_programs(site: TwoUsers, drop: Path) -> Path:
    """Scripts in git's home, one per key, each recording who ran it and copying the token into ``drop`` (the
    worker's user could read it), and a hooks folder of them; returns their folder."""
    folder = site.gitea.home / "bin"
    (folder / "hooks").mkdir(parents=True)
    for key in [v.split("{bin}/", 1)[1].split(" ")[0] for _, v in RUNNING if "{bin}/" in v] + ["hook"]:
        script = folder / key
        script.write_text(f'#!/bin/sh\nid -u > "{drop}/ran-{key}-$$"\n'
                          f'cp "{site.token_file}" "{drop}/token-{key}-$$"\nexit 0\n')
        script.chmod(0o755)
    for hook in ("reference-transaction", "post-index-change", "pre-receive", "post-checkout"):
        os.symlink(folder / "hook", folder / "hooks" / hook)
    return folder


def config_text(keys: list[tuple[str, str]]) -> str:
    """A git config file setting each dotted key (``section.name`` or ``section.subsection.name``)."""
    lines = []
    for key, value in keys:
        section, _, name = key.rpartition(".")
        head, _, sub = section.partition(".")
        lines += [f'[{head} "{sub}"]' if sub else f"[{head}]", f"\t{name} = {value}"]
    return "\n".join(lines) + "\n"


def plant_config(site: TwoUsers, bare: Path, programs: Path, canary: Canary) -> None:
    """As git: keys in the repository's own config, all of them through an included file, and attributes. As root:
    the same in the worker's home, where git cannot write, and core.hooksPath (which in the repository's config
    would also stand in for Gitea's hooks at push time, and no job would be queued)."""
    keys = [(key, value.format(bin=programs, canary=canary.url)) for key, value in RUNNING]
    for key, value in keys:
        if key in OWN:
            assert site.as_git(["git", "config", "--file", str(bare / "config"), key, value]).returncode == 0
    included = site.gitea.home / "more.gitconfig"
    assert write_as_git(site, included, config_text(keys)) == ""
    for key, value in (("include.path", str(included)), ("core.repositoryFormatVersion", "1"),
                       ("extensions.partialClone", "x")):
        assert site.as_git(["git", "config", "--file", str(bare / "config"), key, value]).returncode == 0
    assert write_as_git(site, bare / "info" / "attributes", ATTRIBUTES) == ""
    home = [*keys, ("core.hooksPath", str(programs / "hooks"))]
    for rel, text in ((".gitconfig", config_text([*home, ("include.path", str(included))])),
                      (".config/git/config", config_text(home)), (".config/git/attributes", ATTRIBUTES)):
        planted = site.worker_home / rel
        planted.parent.mkdir(parents=True, exist_ok=True)
        planted.write_text(text)
        os.chown(planted, WORKER.uid, WORKER.gid)


def test_repository_config_that_runs_programs_runs_none_in_the_worker(two_users: TwoUsers, canary: Canary,
                                                                       tmp_path: Path) -> None:
    drop = two_users.base / "drop"
    drop.mkdir(mode=0o777)
    drop.chmod(0o777)
    programs = planted_programs(two_users, drop)
    name = new_repo_name()
    clone = two_users.create_repo("acme", name)
    plant_config(two_users, clone.bare, programs, canary)
    clone.commit(MODEL, message="Add a tiny model")
    commit = sign_looking(two_users, clone)
    pushed = two_users.push(clone, "main")
    assert pushed.ok, pushed.output
    run = two_users.worker_once()
    assert run.returncode == 0, run.stderr
    job = only_job(two_users, "done")
    assert job.outcome is not None and (job.outcome.state, job.commit) == ("published", commit), run.stderr
    # A commit the repository lacks, which git would fetch from the promisor remotes if it were let.
    absent = secrets.token_hex(20)
    queue_as_git(two_users, forged_job(f"acme/{name}", absent))
    run = two_users.worker_once()
    assert run.returncode == 0, run.stderr
    job = only_job(two_users, "failed")
    assert job.outcome is not None and job.outcome.reason == (
        f"request.commit: {absent} is not a commit of acme/{name} (the job was not written by this release's hooks: "
        "push again to publish)"), run.stderr
    assert hub_files(two_users, f"acme/{name}", tmp_path / "hub") == encoded(MODEL)

    # receive-pack, run as git at push time, starts some of what the repository configures: git's own programs
    # run as git, which cannot read the token. Nothing ran as the worker's user, and no copy of the token exists.
    ran = files_under(drop)
    assert {who.user for who in ran.values()} <= {"git"}, ran
    assert [entry for entry in ran if entry.startswith("token-")] == []
    assert canary.heard == []
    assert token_leaks(two_users) == []
    # The keys are live: git unconfined, run as the worker's user on the same repository, runs gpg.program.
    bare = clone.bare
    unconfined = two_users.as_worker(["git", "-c", f"safe.directory={bare}", "-C", str(bare), "log", "-1",
                                      "--show-signature"], input="")
    assert unconfined.returncode == 0, unconfined.stderr
    assert sorted(entry.rsplit("-", 1)[0] for entry, who in files_under(drop).items()
                  if who.user == "hf-publish") == ["ran-gpg", "token-gpg"]


# --- 3. a forged job file ----------------------------------------------------------------------------------------

Forge = Callable[[TwoUsers, str, Clone], tuple[Job, str]]  # a job forged for a published repository, its reason


def _unmapped(site: TwoUsers, name: str, clone: Clone) -> tuple[Job, str]:
    other = site.create_repo("evil", new_repo_name())
    commit = other.commit({"README.md": CARD})
    assert site.push(other, "main").ok  # no rule maps it: nothing is queued
    job = forged_job(f"evil/{other.name}", commit, hub_repo=f"acme/{other.name}")
    return job, (f"request.repository: evil/{other.name} matches no repos entry of {site.config_path} (nothing is "
                 "published for it; add a rule and push again if it should publish)")


def _another_target(site: TwoUsers, name: str, clone: Clone) -> tuple[Job, str]:
    job = forged_job(f"acme/{name}", clone.git("rev-parse", "HEAD"), hub_repo="acme/someone-elses")
    return job, (f"request.target: the job asks for acme/someone-elses branch main, but repos[0] publishes "
                 f"refs/heads/main of acme/{name} to acme/{name} branch main (the rule changed since the push, or "
                 "the job was altered: push again to publish)")


def _off_the_ref(site: TwoUsers, name: str, clone: Clone) -> tuple[Job, str]:
    main = clone.git("rev-parse", "HEAD")
    clone.git("checkout", "--quiet", "-b", "side")
    side = clone.commit({"secret-plans.txt": "not for the Hub\n"})
    assert site.push(clone, "side").ok  # a branch that publishes nothing
    job = forged_job(f"acme/{name}", side)
    return job, (f"request.commit: {side[:12]} is not on refs/heads/main of acme/{name}, which points at "
                 f"{main[:12]} (push again to publish)")


def _repo_dir_elsewhere(site: TwoUsers, name: str, clone: Clone) -> tuple[Job, str]:
    job = forged_job(f"acme/{name}", clone.git("rev-parse", "HEAD"), repo_dir=str(site.tokens))
    folder = os.path.realpath(site.gitea.repo_root / "acme" / f"{name}.git")
    return job, (f"request.repo_dir: {site.tokens} is not the folder of acme/{name} ({folder}) (the job was not "
                 "written by this release's hooks: push again to publish)")


@pytest.mark.parametrize("forge", [_unmapped, _another_target, _off_the_ref, _repo_dir_elsewhere],
                         ids=["unmapped-repository", "another-target", "commit-off-the-ref", "repo-dir-elsewhere"])
def test_a_job_git_forges_fails_naming_the_field_and_publishes_nothing(two_users: TwoUsers, forge: Forge,
                                                                       tmp_path: Path) -> None:
    name, clone = published(two_users)
    job, reason = forge(two_users, name, clone)
    queue_as_git(two_users, job)
    before = fingerprint(two_users.token_file)
    two_users.hub.clear_requests()
    run = two_users.worker_once()
    assert run.returncode == 0, run.stderr
    failed = read_job(str(two_users.spool), "failed", job.id)
    assert failed.outcome is not None and failed.outcome.reason == reason, run.stderr
    assert f"job {job.id} failed: {reason}" in logged(run.stderr)
    assert hub_heard(two_users, f"acme/{name}", job.target.hub_repo) == []  # the worker never spoke to the Hub
    if job.target.hub_repo != f"acme/{name}":
        assert not two_users.hub.api().repo_exists(job.target.hub_repo)
    assert hub_files(two_users, f"acme/{name}", tmp_path / "hub") == encoded(MODEL)
    assert fingerprint(two_users.token_file) == before


def test_a_commit_id_shaped_as_an_option_is_refused_by_the_parser(two_users: TwoUsers) -> None:
    name, _ = published(two_users)
    job = forged_job(f"acme/{name}", f"--output={two_users.token_file}")
    queue_as_git(two_users, job)
    before = fingerprint(two_users.token_file)
    two_users.hub.clear_requests()
    run = two_users.worker_once()
    assert run.returncode == 0, run.stderr
    reason = f"job file {job.id}.json: request.commit: must be a full hex object id"
    assert (two_users.spool / "failed" / f"{job.id}.reason").read_text() == reason + "\n"
    assert (f"job file {job.id}.json cannot be published, moved to failed/: request.commit: must be a full hex "
            "object id") in logged(run.stderr)
    assert fingerprint(two_users.token_file) == before
    assert hub_heard(two_users, f"acme/{name}") == []


def test_git_cannot_write_the_target_state_the_worker_decides_from(two_users: TwoUsers) -> None:
    name, _ = published(two_users)
    states = two_users.spool / "state" / "targets"
    ours = states / f"{target_key(Target(f'acme/{name}', 'model', 'branch', 'main', 'main'))}.json"
    assert [p.name for p in states.iterdir()] == [ours.name]
    # A state naming an older commit, or a newer job, would steer or stop the next publish.
    for path in (ours, states / f"{'0' * 32}.json"):
        assert write_as_git(two_users, path, "{}") == f"tee: {path}: Permission denied\n"
    assert owned(ours) == Owned("hf-publish", "git", "-rw-r-----")
    assert [p.name for p in states.iterdir()] == [ours.name]


# --- 4. spool folders and entries that are links -----------------------------------------------------------------

def test_a_spool_folder_replaced_by_a_link_to_the_tokens_is_refused(two_users: TwoUsers) -> None:
    two_users.create_repo("acme", new_repo_name())  # install makes the spool's folders
    tmp = two_users.spool / "tmp"
    moved = two_users.as_git(["mv", str(tmp), f"{tmp}.old"])
    assert moved.stderr == f"mv: cannot move '{tmp}' to '{tmp}.old': Permission denied\n"
    before = fingerprint(two_users.token_file)
    # Root can, by mistake or from a backup: the worker still refuses.
    tmp.rmdir()
    tmp.symlink_to(two_users.tokens)
    run = two_users.worker_once()
    assert (run.returncode, run.stdout) == (1, "")
    assert run.stderr == (f"gitea-hf-hook: error: the spool folder {tmp} is a symbolic link (rm {tmp}; the worker "
                          "recreates it)\n")
    assert fingerprint(two_users.token_file) == before
    assert files_under(two_users.tokens) == {"acme": Owned("hf-publish", "git", "-rw-------"),
                                             "gitea": Owned("hf-publish", "git", "-rw-------")}


def test_links_git_plants_in_the_spool_are_removed_or_moved_never_followed(two_users: TwoUsers) -> None:
    two_users.create_repo("acme", new_repo_name())
    tmp = two_users.spool / "tmp"
    stale = tmp / f"{new_id()}.json.4242.0badf00d"  # what a hook's write leaves behind when it dies
    prepared = tmp / f"prepared-{'1' * 40}-{new_id()}.json"  # a job pre-receive prepared and post-receive missed
    job = two_users.spool / "queue" / f"{new_id()}.json"
    for link in (stale, prepared, job):
        made = two_users.as_git(["ln", "-s", str(two_users.token_file), str(link)])
        assert made.returncode == 0, made.stderr
        assert two_users.as_git(["touch", "-h", "-d", "2 hours ago", str(link)]).returncode == 0
    before = fingerprint(two_users.token_file)
    assert not (two_users.spool / "state" / "housekeeping").exists()  # a fresh spool: housekeeping is due
    run = two_users.worker_once()
    assert run.returncode == 0, run.stderr
    assert files_under(tmp) == {}
    assert logged(run.stderr)[1:-1] == [
        f"dropped unreadable prepared job tmp/{prepared.name}: Too many levels of symbolic links",
        f"job file {job.name} cannot be published, moved to failed/: not a readable job file (Too many levels of "
        "symbolic links)"]
    # The job that is a link is moved aside as the link it is, with the worker's reason beside it.
    assert files_under(two_users.spool / "failed") == {
        job.name: Owned("git", "git", "lrwxrwxrwx"), f"{job.stem}.reason": Owned("hf-publish", "git", "-rw-r-----")}
    assert fingerprint(two_users.token_file) == before


# --- 5. the LFS store --------------------------------------------------------------------------------------------

def lfs_published(site: TwoUsers, content: bytes) -> tuple[str, Clone, str]:
    """acme/<new name> holding ``weights.dat`` in Git LFS, published the normal way: (name, clone, oid)."""
    name = new_repo_name()
    oid = site.store_lfs(content, f"acme/{name}")
    clone = site.create_repo("acme", name)
    clone.commit({"README.md": CARD, "weights.dat": site.pointer(oid, len(content))})
    assert site.push(clone, "main").ok
    run = site.worker_once()
    assert run.returncode == 0 and only_job(site, "done").outcome is not None, run.stderr
    return name, clone, oid


def store_path(site: TwoUsers, oid: str) -> Path:
    return site.gitea.lfs_root / oid[0:2] / oid[2:4] / oid[4:]


def test_an_lfs_object_git_replaces_by_a_link_to_the_token_is_never_read(two_users: TwoUsers,
                                                                         tmp_path: Path) -> None:
    weights = secrets.token_bytes(4096)
    name, clone, oid = lfs_published(two_users, weights)
    clone.commit({"copy.dat": two_users.pointer(oid, len(weights))}, message="The same weights again")
    assert two_users.push(clone, "main").ok
    stored = store_path(two_users, oid)
    swapped = two_users.as_git(["ln", "-sf", str(two_users.token_file), str(stored)])
    assert swapped.returncode == 0, swapped.stderr
    two_users.hub.clear_requests()
    run = two_users.worker_once()
    assert run.returncode == 0, run.stderr
    # The push-time checks, which the worker runs again, look at the store entry itself and refuse first...
    job = only_job(two_users, "failed")
    assert job.outcome is not None and job.outcome.reason == (
        f"the checks refuse what {job.commit[:12]} would publish to acme/{name} branch main: copy.dat: Git LFS "
        f"object {oid[:12]} is not on the server, or does not match its pointer (run: git lfs push --all origin, "
        "then push again) (fix it in git and push again; gitea-hf-hook check lists every problem)"), run.stderr
    # ...and with that check turned off by the admin, the store itself refuses to follow the link.
    config = two_users.config_path.read_text()
    two_users.config_path.write_text(config.replace("      forbid:", "      lfs_objects: false\n      forbid:"))
    assert two_users.as_root("queue", "retry", job.id).returncode == 0
    run = two_users.worker_once()
    assert run.returncode == 0, run.stderr
    job = only_job(two_users, "failed")
    assert job.outcome is not None and job.outcome.reason == (
        f"copy.dat: Gitea's LFS object {stored} cannot be opened without following a link (Too many levels of "
        "symbolic links) (the store holds links only when tampered with: remove the link and push the object "
        "again)"), run.stderr
    assert [r for r in hub_heard(two_users, f"acme/{name}") if r[0] != "GET"] == []  # nothing uploaded or committed
    assert hub_files(two_users, f"acme/{name}", tmp_path / "hub") == {"README.md": CARD.encode(),
                                                                       "weights.dat": weights}
    assert token_leaks(two_users) == []


def test_an_lfs_object_git_rewrites_with_other_bytes_is_never_published(two_users: TwoUsers,
                                                                        tmp_path: Path) -> None:
    name, clone, _ = lfs_published(two_users, secrets.token_bytes(4096))
    more = secrets.token_bytes(8192)
    oid = two_users.store_lfs(more, f"acme/{name}")  # new to the Hub, so its bytes must be sent
    clone.commit({"more.dat": two_users.pointer(oid, len(more))}, message="More weights")
    assert two_users.push(clone, "main").ok
    other = two_users.gitea.home / "other"
    other.write_bytes(secrets.token_bytes(len(more)))  # the same size, other bytes
    assert two_users.as_git(["cp", str(other), str(store_path(two_users, oid))]).returncode == 0
    two_users.hub.clear_requests()
    run = two_users.worker_once()
    assert run.returncode == 0, run.stderr
    job = only_job(two_users, "failed")
    assert job.outcome is not None and job.outcome.reason == (
        f"more.dat: the bytes of Gitea's LFS object are not those of oid {oid}; nothing of it was committed (the "
        "store object is damaged or altered: push it again with git lfs push --all)"), run.stderr
    # The client began streaming the object; its last chunk was withheld, so the upload never completed.
    finished = {(method, path.rsplit("/", 2)[-2]) for method, path, status in hub_heard(two_users, f"acme/{name}")
                if status == 200}
    assert ("PUT", "lfs-uploads") not in finished and ("POST", "commit") not in finished
    assert "more.dat" not in hub_files(two_users, f"acme/{name}", tmp_path / "hub")
    assert not Path(two_users.hub.data_dir, "lfs", oid).exists()
    assert holding(two_users.hub.data_dir, other.read_bytes()[:1024]) == []  # not even a part of them is kept


# --- 6. a worker run as root -------------------------------------------------------------------------------------

def test_a_worker_run_as_root_is_refused_without_allow_root(two_users: TwoUsers) -> None:
    pushed_repo(two_users)
    run = two_users.as_root("worker", "--once")
    assert (run.returncode, run.stdout) == (1, "")
    assert run.stderr == ("gitea-hf-hook: error: the worker is running as root, and the files it creates would lock "
                          "the worker's user out (run it as the worker's user (sudo -u '#30002' gitea-hf-hook "
                          f"--config {two_users.config_path} worker), or pass --allow-root)\n")
    assert len(queued(two_users)) == 1


def test_what_a_worker_run_as_root_creates_stays_the_worker_users(two_users: TwoUsers) -> None:
    _, clone = pushed_repo(two_users)
    run = two_users.as_root("worker", "--once", "--allow-root")
    assert run.returncode == 0, run.stderr
    made = files_under(two_users.spool)
    theirs = {path: who.user for path, who in made.items() if path.startswith(("done/", "state/locks/", "state/targets/"))}
    assert sorted(theirs.values()) == 4 * ["hf-publish"], theirs  # the job, its lock, the target's lock and state
    # Ten minutes on, housekeeping is due again; the worker's own user runs it, and publishes the next push.
    stamp = two_users.spool / "state" / "housekeeping"
    os.utime(stamp, (time.time() - 3600, time.time() - 3600))
    commit = clone.commit({"config.json": CONFIG_JSON})
    assert two_users.push(clone, "main").ok
    run = two_users.worker_once()
    assert run.returncode == 0, run.stderr
    assert commit in [read_job(str(two_users.spool), "done", p.stem).commit
                      for p in (two_users.spool / "done").iterdir()]
    assert {path: who for path, who in made.items() if who.user == "root"} == {}


def test_a_lock_file_root_left_unreadable_stops_only_its_own_target(two_users: TwoUsers, tmp_path: Path) -> None:
    blocked, _ = pushed_repo(two_users)
    free, _ = pushed_repo(two_users)
    key = target_key(Target(f"acme/{blocked}", "model", "branch", "main", "main"))
    lock = two_users.spool / "state" / "locks" / f"target-{key}.lock"
    lock.touch()
    lock.chmod(0o600)
    assert owned(lock) == Owned("root", "git", "-rw-------")
    run = two_users.worker_once()
    assert run.returncode == 0, run.stderr
    errors = [line for line in logged(run.stderr) if line.startswith("cannot")]
    # Once per pass: this run made two, the one that published and the one that found nothing more to do.
    assert errors == 2 * [f"cannot open the lock file {lock}, which belongs to root (chown 30002 {lock} (or remove "
                          "it); run the worker as 30002, not as root)"]
    assert hub_files(two_users, f"acme/{free}", tmp_path / "hub") == {"README.md": CARD.encode()}
    assert not two_users.hub.api().repo_exists(f"acme/{blocked}")
    assert len(queued(two_users)) == 1
