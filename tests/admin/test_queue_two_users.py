"""The queue commands on a server installed as README.md says: an admin (root) cancels a job the hooks queued as
git, the files end up the worker's, Gitea's user cannot do the same, and the worker's metrics file says so."""

from __future__ import annotations

import os

from tests.support.rules import CARD
from tests.support.two_users import (  # noqa: F401 - two_users_fixture is the two_users fixture
    WORKER,
    Owned,
    TwoUsers,
    command,
    files_under,
    new_repo_name,
    owned,
    two_users_fixture,
)


def test_root_cancels_a_job_git_queued_and_the_worker_never_publishes_it(two_users: TwoUsers) -> None:
    metrics = two_users.state / "metrics"
    metrics.mkdir()
    metrics.chmod(0o755)
    os.chown(metrics, WORKER.uid, WORKER.gid)
    prom = metrics / "gitea-hf-hook.prom"
    with two_users.config_path.open("a") as config:
        config.write(f"metrics_file: {prom}\n")
    name = new_repo_name()
    clone = two_users.create_repo("acme", name)
    clone.commit({"README.md": CARD})
    assert two_users.push(clone, "main").ok
    [queued] = (two_users.spool / "queue").iterdir()
    job_id = queued.name.removesuffix(".json")
    cancel = ["queue", "cancel", job_id, "--reason", "published by hand already"]

    by_git = two_users.as_git([*command(), "--config", str(two_users.config_path), *cancel])
    assert (by_git.returncode, by_git.stdout) == (1, "")
    assert by_git.stderr == (f"gitea-hf-hook: error: cannot cancel jobs: {two_users.spool}/active is not writable by "
                             f"this user (run gitea-hf-hook queue cancel as the spool's owner, {WORKER.uid}, or as "
                             "root)\n")
    assert files_under(two_users.spool / "queue") == {queued.name: Owned("git", "git", "-rw-r-----")}

    by_root = two_users.as_root(*cancel)
    assert (by_root.returncode, by_root.stderr) == (0, "")
    assert by_root.stdout == (f"job {job_id} cancelled: acme/{name} branch main {clone.git('rev-parse', 'HEAD')[:7]}: "
                              "published by hand already\n")
    assert owned(two_users.spool / "cancelled") == Owned("hf-publish", "git", "drwxr-s---")
    assert files_under(two_users.spool / "cancelled") == {queued.name: Owned("hf-publish", "git", "-rw-r-----")}
    assert files_under(two_users.spool / "queue") == {} and files_under(two_users.spool / "active") == {}

    worked = two_users.worker_once()
    assert worked.returncode == 0, worked.stderr
    assert files_under(two_users.spool / "done") == {}
    assert owned(prom) == Owned("hf-publish", "git", "-rw-r--r--")
    assert "gitea_hf_hook_cancelled_jobs 1\n" in prom.read_text()
