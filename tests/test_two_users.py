"""The server as README.md installs it, with two real uids: git pushes and runs the hooks, hf-publish publishes.

Everything Gitea's user can write is hostile input to the worker, and the Hub token is the worker's alone; these
tests hold that with the processes really running as uid 30001 (git) and uid 30002 (hf-publish).
"""

from __future__ import annotations

from pathlib import Path

from tests.support.jobs import read_job
from tests.support.rules import CARD
from tests.support.two_users import (  # noqa: F401 - two_users_fixture is the two_users fixture
    GIT,
    WORKER,
    Owned,
    TwoUsers,
    files_under,
    new_repo_name,
    owned,
    two_users_fixture,
)

CONFIG_JSON = '{"architectures": ["BertModel"], "hidden_size": 8}\n'


def test_alice_pushes_as_git_and_the_worker_publishes_as_hf_publish(two_users: TwoUsers, tmp_path: Path) -> None:
    name = new_repo_name()
    clone = two_users.create_repo("acme", name)
    files = {"README.md": CARD, "config.json": CONFIG_JSON}
    commit = clone.commit(files, message="Add a tiny model")

    pushed = two_users.push(clone, "main")
    queue = two_users.spool / "queue"
    [queued] = sorted(queue.iterdir())
    job_id = queued.name.removesuffix(".json")
    assert pushed.remote == [f"hf-publish: queued acme/{name}@{commit[:7]} -> {two_users.hub.url}/acme/{name} "
                             f"(main), job {job_id}"], pushed.output
    assert pushed.ok, pushed.output
    assert files_under(queue) == {queued.name: Owned("git", "git", "-rw-r-----")}  # written by the hooks, as git

    published = two_users.worker_once()
    assert published.returncode == 0, published.stderr
    assert [p.name for p in (two_users.spool / "done").iterdir()] == [queued.name], published.stderr
    on_hub = two_users.hub.files(f"acme/{name}", tmp_path / "download")
    del on_hub[".gitattributes"]  # the Hub's own, made with the repository
    assert on_hub == {path: text.encode() for path, text in files.items()}
    job = read_job(str(two_users.spool), "done", job_id)
    assert job.outcome is not None and (job.outcome.state, job.commit) == ("published", commit)
    assert files_under(queue) == {} and files_under(two_users.spool / "active") == {}


def test_gits_uid_cannot_read_the_hub_token(two_users: TwoUsers) -> None:
    token = two_users.token_file
    read = two_users.as_git(["cat", str(token)])
    assert (read.returncode, read.stdout, read.stderr) == (1, "", f"cat: {token}: Permission denied\n")
    listed = two_users.as_git(["ls", str(token.parent)])
    assert (listed.returncode, listed.stdout) == (2, "")
    assert listed.stderr == f"ls: cannot open directory '{token.parent}': Permission denied\n"
    assert two_users.as_worker(["cat", str(token)]).stdout == two_users.hub.token + "\n"


def test_root_installs_the_hooks_into_a_repository_of_gits_without_a_warning(two_users: TwoUsers) -> None:
    name = new_repo_name()
    two_users.create_repo("acme", name)
    assert two_users.installed is not None
    assert (two_users.installed.stdout, two_users.installed.stderr) == (f"installed acme/{name}\n", "")


def test_the_install_is_laid_out_as_readme_says(two_users: TwoUsers) -> None:
    name = new_repo_name()
    two_users.create_repo("acme", name)
    base = two_users.base
    assert {path: owned(base / path) for path in (
        "etc/gitea-hf-hook", "etc/gitea-hf-hook/config.yaml", "etc/gitea-hf-hook/tokens",
        "etc/gitea-hf-hook/tokens/acme", "var/lib/hf-publish", "var/lib/gitea-hf-hook",
        "var/lib/gitea-hf-hook/spool", "var/lib/gitea-hf-hook/audit.jsonl", "var/log/gitea-hf-hook",
    )} == {
        "etc/gitea-hf-hook": Owned("root", "root", "drwxr-xr-x"),
        "etc/gitea-hf-hook/config.yaml": Owned("root", "root", "-rw-r--r--"),
        "etc/gitea-hf-hook/tokens": Owned("hf-publish", "git", "drwx------"),
        "etc/gitea-hf-hook/tokens/acme": Owned("hf-publish", "git", "-rw-------"),
        "var/lib/hf-publish": Owned("hf-publish", "git", "drwx------"),
        "var/lib/gitea-hf-hook": Owned("root", "root", "drwxr-xr-x"),
        "var/lib/gitea-hf-hook/spool": Owned("hf-publish", "git", "drwxr-s---"),
        "var/lib/gitea-hf-hook/audit.jsonl": Owned("hf-publish", "git", "-rw-------"),
        "var/log/gitea-hf-hook": Owned("git", "git", "drwxr-x---"),
    }
    hook_folder, worker_folder = Owned("hf-publish", "git", "drwxrws---"), Owned("hf-publish", "git", "drwxr-s---")
    assert files_under(two_users.spool) == {
        "active": worker_folder, "audit": hook_folder, "cards": hook_folder, "done": worker_folder,
        "failed": worker_folder, "queue": hook_folder, "state": worker_folder, "state/locks": worker_folder, "state/targets": worker_folder,
        "tmp": hook_folder,
    }
    repo = two_users.gitea.repo_root / "acme" / f"{name}.git"
    assert owned(repo) == Owned("git", "git", "drwxr-xr-x")
    assert owned(repo / "objects") == Owned("git", "git", "drwxr-xr-x")
    assert owned(two_users.gitea.home) == Owned("git", "git", "drwxr-xr-x")


def test_each_user_runs_as_its_uid_with_its_own_home_and_none_of_roots_environment(two_users: TwoUsers) -> None:
    show = ["sh", "-c", 'id -u; id -g; id -G; echo "$HOME"; env | cut -d= -f1 | sort']
    common = ["GIT_CONFIG_NOSYSTEM", "HOME", "LANG", "PATH", "PWD"]
    worker = two_users.as_worker(show)
    assert worker.stdout.splitlines() == [
        str(WORKER.uid), str(GIT.gid), str(GIT.gid), str(two_users.worker_home),
        *sorted([*common, "HF_HUB_DISABLE_PROGRESS_BARS", "HF_HUB_DISABLE_TELEMETRY"]),
    ], worker.stderr
    git = two_users.as_git(show)
    assert git.stdout.splitlines() == [str(GIT.uid), str(GIT.gid), str(GIT.gid), str(two_users.gitea.home),
                                       *common], git.stderr
