"""What a pusher can try against the publishing path, each told as the pusher does it: the hooks run as git
(uid 30001) through Gitea's dispatcher, the worker as hf-publish (uid 30002), and each test asserts what reaches
the spool and the Hub.

A pusher controls file contents, paths, ref names, commit messages and LFS pointers, and may publish one
repository but not another (README.md, "What each user can do").
"""

from __future__ import annotations

import os
import pickle
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gitea_hf_hook.worker.housekeeping import HOUSEKEEPING_EVERY, PREPARED_GRACE
from tests.support.gitea_server import GITEA_STAND_IN
from tests.support.hub import Hub
from tests.support.jobs import read_job
from tests.support.rules import CARD, GROUPS, RULE
from tests.support.two_users import (  # noqa: F401 - two_users_fixture is the two_users fixture
    Clone,
    TwoUsers,
    new_repo_name,
    require_other_uids,
    two_users_fixture,
)

CONFIG_JSON = '{"architectures": ["BertModel"], "hidden_size": 8}\n'
WITH_DEV = RULE.replace("branches: {main: main}", "branches: {main: main, dev: dev}")
# Older than this, a prepared job is judged by housekeeping, and housekeeping is due again.
AGED = max(HOUSEKEEPING_EVERY, PREPARED_GRACE) + 60
Site = Callable[[str], TwoUsers]


@pytest.fixture(name="site")
def site_fixture(hub: Hub) -> Iterator[Site]:
    """Builds installed servers as ``two_users`` does, each with the ``repos`` text it is given."""
    require_other_uids()
    hub.reset()
    made: list[tuple[Path, TwoUsers]] = []

    def make(repos_yaml: str) -> TwoUsers:
        base = Path(tempfile.mkdtemp(prefix="gitea-hf-hook-attacks-"))
        base.chmod(0o755)
        try:
            server = TwoUsers(base, hub, repos_yaml, extra=GROUPS)
        except BaseException:
            shutil.rmtree(base)
            raise
        made.append((base, server))
        return server

    yield make
    for base, server in made:
        server.gitea_api.close()
        shutil.rmtree(base)


def write_as_git(site: TwoUsers, path: Path, text: str) -> None:
    """Write ``path`` as Gitea's user does, which owns the repositories and may rewrite their hooks."""
    written = site.as_git(["sh", "-c", 'printf "%s" "$1" > "$2"', "sh", text, str(path)])
    assert written.returncode == 0, written.stderr


def edit_config(site: TwoUsers, old: str, new: str) -> None:
    """The admin, root, changes one part of the config."""
    text = site.config_path.read_text()
    assert old in text
    site.config_path.write_text(text.replace(old, new))


def worker_said(stderr: str) -> list[str]:
    """The worker's log lines without their time stamp and process."""
    return [line.split("]: ", 1)[1] for line in stderr.splitlines() if "]: " in line]


def jobs_in(site: TwoUsers, folder: str = "queue") -> dict[tuple[str, str, str], str]:
    """The id of every job in a spool folder, by (repository, ref, commit)."""
    jobs = [read_job(str(site.spool), folder, p.name.removesuffix(".json"))
            for p in (site.spool / folder).glob("*.json")]
    return {(j.request.repository, j.request.ref, j.commit): j.id for j in jobs}


def queued(site: TwoUsers, folder: str = "queue") -> set[tuple[str, str, str]]:
    """(repository, ref, commit) of every job in a spool folder."""
    return set(jobs_in(site, folder))


def hub_markers(site: TwoUsers, repo_id: str, revision: str = "main") -> list[str]:
    """The git commit each Hub commit of ``revision`` names in its trailer, newest first ("" for none)."""
    found = []
    for commit in site.hub.api().list_repo_commits(repo_id, revision=revision):
        last = (commit.message or "").rstrip().rsplit("\n", 1)[-1]
        found.append(last.removeprefix("Gitea-Commit: ") if last.startswith("Gitea-Commit: ") else "")
    return found


def notice(site: TwoUsers, name: str, commit: str, revision: str, job_id: str) -> str:
    """The line post-receive shows alice once it queued the job."""
    return (f"hf-publish: queued acme/{name}@{commit[:7]} -> {site.hub.url}/acme/{name} ({revision}), "
            f"job {job_id}")


def single_job(site: TwoUsers, folder: str) -> str:
    """The id of the one job in a spool folder."""
    [path] = (site.spool / folder).glob("*.json")
    return path.name.removesuffix(".json")


# --- 1. a push Gitea refuses after our pre-receive passed it ----------------------------------------------------

def test_a_refused_pushs_prepared_job_is_never_promoted_by_another_update(site: Site, tmp_path: Path) -> None:
    server = site(WITH_DEV)
    name, other = new_repo_name(), new_repo_name()
    clone = server.create_repo("acme", name)
    a = clone.commit({"README.md": CARD, "config.json": CONFIG_JSON}, "Add a tiny model")
    assert server.push(clone, "main").ok
    assert server.worker_once().returncode == 0

    b = clone.commit({"weights.txt": "not for main\n"}, "Change main without review")
    gitea_hook = clone.bare / "hooks" / "pre-receive.d" / "gitea"
    # Gitea's own hook runs beside ours and refuses the push (a protected branch, say) after ours passed it.
    write_as_git(server, gitea_hook, "#!/bin/sh\ncat >/dev/null\n"
                 "echo 'Gitea: Not allowed to push to protected branch main' >&2\nexit 1\n")
    refused = server.push(clone, "main")
    assert (refused.ok, refused.remote) == (False, ["Gitea: Not allowed to push to protected branch main"])
    assert clone.git("--git-dir", str(clone.bare), "rev-parse", "main") == a
    [prepared] = (server.spool / "tmp").glob("prepared-*.json")
    stale_id = prepared.name.removeprefix(f"prepared-{b}-").removesuffix(".json")
    assert sorted(p.name for p in (server.spool / "tmp").iterdir()) == [prepared.name,
                                                                          f"prepared-{b}-{stale_id}.notice"]
    write_as_git(server, gitea_hook, GITEA_STAND_IN)

    # The same commit to another branch, and to the same branch of another repository; another commit to main.
    to_dev = server.push(clone, f"{b}:refs/heads/dev")
    assert to_dev.ok, to_dev.output
    dev_job = jobs_in(server)[f"acme/{name}", "refs/heads/dev", b]
    assert to_dev.remote == [notice(server, name, b, "dev", dev_job)]
    clone.git("branch", "refused", b)
    elsewhere = server.create_repo("acme", other)
    elsewhere.git("fetch", "--quiet", str(clone.path), "refs/heads/refused")
    elsewhere.git("update-ref", "refs/heads/main", "FETCH_HEAD")
    to_other = server.push(elsewhere, "main")
    assert to_other.ok, to_other.output
    assert to_other.remote == [notice(server, other, b, "main", jobs_in(server)[f"acme/{other}", "refs/heads/main", b])]
    clone.git("reset", "--quiet", "--hard", a)
    c = clone.commit({"notes.md": "Reviewed change\n"}, "Reviewed change")
    to_main = server.push(clone, "main")
    assert to_main.ok, to_main.output
    assert to_main.remote == [notice(server, name, c, "main", jobs_in(server)[f"acme/{name}", "refs/heads/main", c])]

    assert queued(server) == {(f"acme/{name}", "refs/heads/dev", b), (f"acme/{other}", "refs/heads/main", b),
                              (f"acme/{name}", "refs/heads/main", c)}
    assert [p.name for p in sorted((server.spool / "tmp").iterdir())] == [
        f"prepared-{b}-{stale_id}.json", f"prepared-{b}-{stale_id}.notice"]
    published = server.worker_once()
    assert published.returncode == 0, published.stderr
    assert queued(server, "done") == {(f"acme/{name}", "refs/heads/main", a), (f"acme/{name}", "refs/heads/dev", b),
                                      (f"acme/{other}", "refs/heads/main", b), (f"acme/{name}", "refs/heads/main", c)}
    assert hub_markers(server, f"acme/{name}") == [c, a, ""]
    assert (hub_markers(server, f"acme/{name}", "dev")[0], hub_markers(server, f"acme/{other}")) == (b, [b, ""])
    on_main = server.hub.files(f"acme/{name}", tmp_path / "main")
    assert sorted(on_main) == [".gitattributes", "README.md", "config.json", "notes.md"]

    # Minutes on, as the file times say: housekeeping reads the job, finds main elsewhere, and drops it.
    past = time.time() - AGED
    for aged in (prepared, server.spool / "state" / "housekeeping"):
        os.utime(aged, (past, past))
    swept = server.worker_once()
    assert swept.returncode == 0, swept.stderr
    assert f"dropped prepared job {stale_id}: refs/heads/main of acme/{name} is not at {b[:7]} (the push was " \
           "refused after pre-receive)" in worker_said(swept.stderr)
    assert list((server.spool / "tmp").iterdir()) == []
    assert list((server.spool / "queue").iterdir()) == [] and list((server.spool / "failed").iterdir()) == []
    assert hub_markers(server, f"acme/{name}") == [c, a, ""]


# --- 2. a pointer to another repository's LFS object --------------------------------------------------------------

def lfs_push(site: TwoUsers, name: str, content: bytes, linked_to: str) -> tuple[Clone, str, str]:
    """alice commits a pointer to ``content``, which the store holds for ``linked_to``, and pushes it; the push
    lands without the hook asking anyone anything. Returns the clone, the oid and the job id."""
    oid = site.store_lfs(content, linked_to)
    clone = site.create_repo("acme", name)
    commit = clone.commit({"README.md": CARD, "data/vectors.dat": site.pointer(oid, len(content))}, "Add vectors")
    asked = len(site.gitea_api.requests)
    site.hub.clear_requests()
    pushed = site.push(clone, "main")
    job_id = single_job(site, "queue")
    assert (pushed.ok, pushed.remote) == (True, [notice(site, name, commit, "main", job_id)]), pushed.output
    assert (len(site.gitea_api.requests), site.hub.requests()) == (asked, [])
    return clone, oid, job_id


def assert_nothing_uploaded(site: TwoUsers, repo_id: str, cache: Path, content: bytes) -> None:
    """The Hub repository holds only what the Hub made with it, and was sent no LFS object and no commit."""
    assert site.hub.files(repo_id, cache).keys() == {".gitattributes"}
    sent = [f"{r['method']} {r['path']}" for r in site.hub.requests()]
    assert [r for r in sent if "/info/lfs/" in r or "/commit/" in r or "/preupload/" in r] == [], sent
    stored = [p for p in site.hub.data_dir.rglob("*") if p.is_file() and content in p.read_bytes()]
    assert stored == []


def test_a_pointer_to_another_repositorys_lfs_object_publishes_nothing(two_users: TwoUsers, tmp_path: Path) -> None:
    secret, public = new_repo_name(), new_repo_name()
    two_users.create_repo("acme", secret)
    content = b"weights only acme/secret may see " + secrets.token_bytes(64)
    _clone, oid, job_id = lfs_push(two_users, public, content, f"acme/{secret}")

    worked = two_users.worker_once()
    assert worked.returncode == 0, worked.stderr
    job = read_job(str(two_users.spool), "failed", job_id)
    assert job.outcome is not None and job.outcome.reason == (
        f"data/vectors.dat is a Git LFS pointer to object {oid}, which Gitea does not hold for acme/{public} "
        "(Not Found) (push the object to this repository with git lfs push --all, then push again)")
    [asked] = two_users.gitea_api.requests
    assert (asked.method, asked.path, asked.auth) == ("POST", f"/acme/{public}.git/info/lfs/objects/batch", "token")
    assert asked.payload["objects"] == [{"oid": oid, "size": len(content)}]
    assert_nothing_uploaded(two_users, f"acme/{public}", tmp_path / "hub", content)


def test_without_gitea_url_no_lfs_content_is_published(site: Site, tmp_path: Path) -> None:
    server = site(RULE)
    edit_config(server, f"  url: {server.gitea_api.url}\n", "")
    name = new_repo_name()
    content = b"weights of this very repository " + secrets.token_bytes(64)
    _clone, _oid, job_id = lfs_push(server, name, content, f"acme/{name}")

    worked = server.worker_once()
    assert worked.returncode == 0, worked.stderr
    job = read_job(str(server.spool), "failed", job_id)
    assert job.outcome is not None and job.outcome.reason == (
        f"publishing the Git LFS objects of acme/{name} needs gitea.url and gitea.token_file in "
        f"{server.config_path} (gitea.url not set), so the worker can ask Gitea that each object belongs to the "
        "repository (set both, with a token whose Gitea user can read the repository; gitea.verify_lfs: false "
        "turns the check off, at the risk of publishing another repository's LFS objects)")
    assert server.gitea_api.requests == []
    assert_nothing_uploaded(server, f"acme/{name}", tmp_path / "hub", content)


# --- 3. content that no hook ever checked ---------------------------------------------------------------------------

def unchecked_files() -> tuple[dict[str, str], str]:
    """A pickle, a forbidden file name and a token-shaped string (built now), with a valid card; and the token."""
    token = "hf_" + secrets.token_hex(16) + "Zq"  # mixed case, as issued tokens are
    weights = pickle.dumps({"layer.0.weight": [0.5, -0.25]}, protocol=0).decode("ascii")
    return {"README.md": CARD, "config.json": CONFIG_JSON, "model.pkl": weights, ".env": "WANDB_MODE=offline\n",
            "train.py": f'login("{token}")\n'}, token


def refusal(site: TwoUsers, name: str, ref: str, revision: str) -> list[str]:
    """The lines a pusher of the unchecked files to ``ref`` would have read."""
    return [f"hf-publish: rejected {ref} of acme/{name}, which publishes to {site.hub.url}/acme/{name} "
            f"(branch {revision}):",
            "  .env: matches forbidden pattern '*.env' (remove it from the commit, or ask an admin to change "
            "checks.forbid)",
            "  model.pkl: pickle files can run code when loaded (convert the weights to safetensors)",
            "  train.py:1: looks like a Hugging Face token (remove it, rewrite the commit, and revoke the token)"]


def assert_first_publish_refused(site: TwoUsers, clone: Clone, name: str, revision: str, token: str,
                                 cache: Path) -> None:
    """A harmless push queues a job; its first publish, of the whole tree, fails with the pusher's lines."""
    commit = clone.commit({"notes.md": "Training notes\n"}, "Add training notes")
    pushed = site.push(clone, revision)
    job_id = single_job(site, "queue")
    assert (pushed.ok, pushed.remote) == (True, [notice(site, name, commit, revision, job_id)]), pushed.output
    worked = site.worker_once()
    assert worked.returncode == 0, worked.stderr
    job = read_job(str(site.spool), "failed", job_id)
    lines = "; ".join(line.strip() for line in refusal(site, name, "", revision)[1:])
    assert job.outcome is not None and job.outcome.reason == (
        f"the checks refuse what {commit[:12]} would publish to acme/{name} branch {revision}: {lines} (fix it in "
        "git and push again; gitea-hf-hook check lists every problem)")
    assert token not in worked.stderr and token.encode() not in (site.spool / "failed" / f"{job_id}.json").read_bytes()
    assert site.hub.files(f"acme/{name}", cache, revision=revision).keys() == {".gitattributes"}


def test_content_pushed_before_install_is_refused_at_its_first_publish(two_users: TwoUsers, tmp_path: Path) -> None:
    name = new_repo_name()
    clone = two_users.create_repo("acme", name)
    for hook in ("pre-receive", "post-receive"):
        (clone.bare / "hooks" / f"{hook}.d" / "hf-publish").unlink()
    files, token = unchecked_files()
    clone.commit(files, "Add a model")
    before = two_users.push(clone, "main")
    assert (before.ok, before.remote) == (True, []), before.output
    assert list((two_users.spool / "queue").iterdir()) == [] == list((two_users.spool / "tmp").iterdir())

    installed = two_users.as_root("install", f"acme/{name}")
    assert (installed.returncode, installed.stderr) == (0, "")
    assert installed.stdout.splitlines() == [
        f"installed acme/{name}", *refusal(two_users, name, "refs/heads/main", "main"),
        "warning: 1 publishing ref would be refused, so its first publish will fail until fixed (fix what is "
        "listed above in a new commit and push it; for a tag, tag a fixed commit)"]
    assert_first_publish_refused(two_users, clone, name, "main", token, tmp_path / "hub")


def test_content_pushed_while_no_rule_covered_its_branch_is_refused_once_one_does(site: Site, tmp_path: Path) -> None:
    server = site(RULE)
    name = new_repo_name()
    clone = server.create_repo("acme", name)
    files, token = unchecked_files()
    clone.commit(files, "Add a model")
    before = server.push(clone, "main:staging")
    assert (before.ok, before.remote) == (True, []), before.output
    edit_config(server, "branches: {main: main}", "branches: {main: main, staging: staging}")
    clone.git("branch", "-m", "main", "staging")
    assert_first_publish_refused(server, clone, name, "staging", token, tmp_path / "hub")


# --- 4. a commit subject that reads like the worker's marker ---------------------------------------------------------

def test_a_forged_marker_in_a_subject_does_not_capture_the_tag(site: Site) -> None:
    server = site(WITH_DEV)
    name = new_repo_name()
    repo_id = f"acme/{name}"
    clone = server.create_repo("acme", name)
    a = clone.commit({"README.md": CARD, "config.json": CONFIG_JSON}, "Add a tiny model")
    assert server.push(clone, "main").ok and server.worker_once().returncode == 0

    # B is made first, so its id is known; the forged commit names it and goes out first, on main.
    b = clone.commit({"eval.md": "accuracy 0.93\n"}, "Add the evaluation")
    clone.git("branch", "dev", b)
    clone.git("reset", "--quiet", "--hard", a)
    forged = clone.commit({"notes.md": "unrelated\n"}, f"Gitea-Commit: {b}")
    assert server.push(clone, "main").ok and server.worker_once().returncode == 0
    [forged_hub, *_] = server.hub.api().list_repo_commits(repo_id, revision="main")
    # The subject becomes the Hub commit's title; the marker the worker reads is its description's last line.
    assert forged_hub.title == f"Gitea-Commit: {b}"
    assert (forged_hub.message or "").rstrip().rsplit("\n", 1)[-1] == f"Gitea-Commit: {forged}"
    assert hub_markers(server, repo_id) == [forged, a, ""]

    clone.git("tag", "v1.0", b)
    tagged = server.push(clone, "dev", "refs/tags/v1.0")
    assert tagged.ok, tagged.output
    worked = server.worker_once()
    assert worked.returncode == 0, worked.stderr
    assert list((server.spool / "queue").iterdir()) == [] == list((server.spool / "failed").iterdir())
    [published_b, *_] = server.hub.api().list_repo_commits(repo_id, revision="dev")
    assert hub_markers(server, repo_id, "dev")[0] == b
    [tag] = server.hub.api().list_repo_refs(repo_id).tags
    assert (tag.name, tag.target_commit) == ("v1.0", published_b.commit_id)
    assert tag.target_commit != forged_hub.commit_id


# --- 5. a Hub repository that holds files of its own ---------------------------------------------------------------

def test_a_first_publish_adopts_a_hub_repository_only_when_told_and_deletes_only_what_it_published(
        site: Site, tmp_path: Path) -> None:
    server = site(RULE)
    name = new_repo_name()
    repo_id = f"acme/{name}"
    api = server.hub.api()
    api.create_repo(repo_id, private=True)
    theirs = b"# Maintainers\nkept on the Hub, not in git\n"
    api.upload_file(path_or_fileobj=theirs, path_in_repo="notes/maintainers.md", repo_id=repo_id,
                    commit_message="Add maintainers")
    history = [c.commit_id for c in api.list_repo_commits(repo_id)]
    clone = server.create_repo("acme", name)
    files = {"README.md": CARD, "config.json": CONFIG_JSON, "old.txt": "to be removed\n"}
    clone.commit(files, "Add a tiny model")
    assert server.push(clone, "main").ok
    job_id = single_job(server, "queue")

    refused = server.worker_once()
    assert refused.returncode == 0, refused.stderr
    job = read_job(str(server.spool), "failed", job_id)
    assert job.outcome is not None and job.outcome.reason == (
        f"{repo_id} (main) already holds 1 files that were not published from Gitea (notes/maintainers.md), and "
        "repos[0] does not adopt it (set adopt: true on repos[0] to publish into it (its other files are kept), or "
        "publish to another Hub repository)")
    assert [c.commit_id for c in api.list_repo_commits(repo_id)] == history
    before = server.hub.files(repo_id, tmp_path / "before")
    assert (set(before), before["notes/maintainers.md"]) == ({".gitattributes", "notes/maintainers.md"}, theirs)

    edit_config(server, "    publishers:", "    adopt: true\n    publishers:")
    commit = clone.git("rev-parse", "HEAD")
    retried = server.as_root("queue", "retry", job_id)
    assert (retried.returncode, retried.stdout) == (0, f"job {job_id} queued again: {repo_id} branch main "
                                                       f"{commit[:7]}\n"), retried.stderr
    adopted = server.worker_once()
    assert adopted.returncode == 0, adopted.stderr
    outcome = read_job(str(server.spool), "done", job_id).outcome
    assert outcome is not None and outcome.state == "published"
    on_hub = server.hub.files(repo_id, tmp_path / "adopted")
    assert on_hub == {".gitattributes": before[".gitattributes"], "notes/maintainers.md": theirs,
                      **{path: text.encode() for path, text in files.items()}}

    (clone.path / "old.txt").unlink()
    clone.commit({}, "Remove old.txt")
    assert server.push(clone, "main").ok
    assert server.worker_once().returncode == 0
    on_hub = server.hub.files(repo_id, tmp_path / "after")
    assert sorted(on_hub) == [".gitattributes", "README.md", "config.json", "notes/maintainers.md"]
    assert on_hub["notes/maintainers.md"] == theirs
