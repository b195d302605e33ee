"""The audit trail across the privilege line, with the two uids for real: git (30001) leaves drops and cannot touch
the log; hf-publish (30002) chains them; root verifies."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from gitea_hf_hook.config.load import load
from gitea_hf_hook.worker import audit
from tests.support.gitea_server import gitea_env
from tests.support.jobs import ROOT
from tests.support.two_users import (  # noqa: F401 - two_users_fixture is the two_users fixture
    GIT,
    WORKER,
    Owned,
    TwoUsers,
    new_repo_name,
    owned,
    two_users_fixture,
)

NEW = "2" * 40
# What pre-receive will run, as Gitea's user: one drop for the ref it rejected.
DROP_AS_HOOK = f"""
import os, sys
sys.path.insert(0, {str(ROOT)!r})
from gitea_hf_hook.config.load import load
from gitea_hf_hook.gitea.environment import read_push
from gitea_hf_hook.gitea.hook_input import Update
from gitea_hf_hook.spool import audit_drop
config = load(sys.argv[1])
update = Update("0" * 40, {NEW!r}, "refs/heads/main")
decision = audit_drop.decision(update, "rejected", "acme/x branch main", ["train.py:3: looks like a token"])
print(*audit_drop.push_decided(config.spool, read_push(os.environ), [decision]))
"""
APPEND_AS = f"""
import sys
sys.path.insert(0, {str(ROOT)!r})
from gitea_hf_hook.config.load import load
from gitea_hf_hook.errors import HookError
from gitea_hf_hook.worker import audit
try:
    audit.append(load(sys.argv[1], cached=False), audit.Record("job-published", outcome="forged"))
except HookError as exc:
    print(exc)
"""
INGEST = f"""
import sys
sys.path.insert(0, {str(ROOT)!r})
from gitea_hf_hook.config.load import load
from gitea_hf_hook.worker import audit
print(audit.ingest_drops(load(sys.argv[1], cached=False)))
"""


def installed(two_users: TwoUsers) -> Path:
    """The server with audit_log under var/lib/gitea-hf-hook, created by install (run as root) for the worker."""
    log = two_users.audit_log
    assert not log.exists()
    two_users.create_repo("acme", new_repo_name())  # install, as root, lays out the spool and creates the log
    assert audit.create_log(load(str(two_users.config_path), cached=False)) is False  # there already
    return log


def test_a_drop_left_by_gits_uid_is_chained_by_the_workers_uid_and_root_verifies_it(two_users: TwoUsers) -> None:
    log = installed(two_users)
    assert owned(log) == Owned("hf-publish", "git", "-rw-------")
    assert owned(two_users.spool / "audit") == Owned("hf-publish", "git", "drwxrws---")
    env = gitea_env("acme", "x", "alice")
    dropped = two_users.as_git([sys.executable, "-c", DROP_AS_HOOK, str(two_users.config_path)], env=env)
    assert dropped.returncode == 0, dropped.stderr
    name = dropped.stdout.strip()
    assert owned(two_users.spool / "audit" / name) == Owned("git", "git", "-rw-r-----")

    ingested = two_users.as_worker([sys.executable, "-c", INGEST, str(two_users.config_path)])
    assert (ingested.returncode, ingested.stdout, ingested.stderr) == (0, "1\n", "")
    [record] = [json.loads(line) for line in log.read_text().splitlines()]
    assert (record["kind"], record["source"], record["pusher"], record["reasons"]) == (
        "push-rejected", "hook", "alice", ["train.py:3: looks like a token"])
    assert (record["drop"]["name"], record["drop"]["uid"]) == (name, GIT.uid)  # whose word it is
    assert (record["by"]["uid"], record["by"]["user"]) == (WORKER.uid, str(WORKER.uid))  # who countersigned it
    assert list((two_users.spool / "audit").iterdir()) == []

    verified = two_users.as_root("audit", "verify")
    assert (verified.returncode, verified.stdout, verified.stderr) == (0, f"{log}: 1 record verified\n", "")


def test_gits_uid_can_neither_append_to_nor_read_nor_rewrite_the_log(two_users: TwoUsers) -> None:
    log = installed(two_users)
    audit.append(load(str(two_users.config_path), cached=False), audit.Record("job-failed", outcome="real"))
    before = log.read_bytes()

    forged = two_users.as_git([sys.executable, "-c", APPEND_AS, str(two_users.config_path)])
    assert (forged.returncode, forged.stderr) == (0, "")
    assert forged.stdout == (f"the audit log {log} cannot be written by uid {GIT.uid} (Permission denied) "
                             f"(install -o {WORKER.uid} -g {WORKER.gid} -m 0600 /dev/null {log}, as root "
                             "(gitea-hf-hook install does), and run this as the worker's user or root)\n")
    shell = two_users.as_git(["sh", "-c", f"echo forged >> {log}"])
    assert (shell.returncode, shell.stderr.strip().endswith(f"{log}: Permission denied")) == (2, True)
    read = two_users.as_git(["cat", str(log)])
    assert (read.returncode, read.stderr) == (1, f"cat: {log}: Permission denied\n")
    head = next((two_users.spool / "state").glob("audit-head-*.json"))
    rewrite = two_users.as_git(["sh", "-c", f"echo {{}} > {head}"])
    assert rewrite.returncode == 2 and "Permission denied" in rewrite.stderr
    assert log.read_bytes() == before
