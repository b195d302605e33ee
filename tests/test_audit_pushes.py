"""The audit trail of real pushes: what pre-receive decided and post-receive queued, through the hooks' drops, the
worker's pass and the admin's queue commands, read back with ``audit show`` and checked with ``audit verify``.

Real ``git push`` runs through Gitea's dispatcher hooks (tests/support/gitea_server.py); the worker is the real loop,
with a publisher double standing in for the Hub except in the two-user story, which publishes to the Hub emulator.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from gitea_hf_hook.config.load import load
from gitea_hf_hook.config.model import Config
from gitea_hf_hook.errors import PublishError
from gitea_hf_hook.spool.job import Job
from gitea_hf_hook.spool.state import PublishResult, TargetState
from gitea_hf_hook.worker import loop as worker
from tests.support.gitea_server import Clone, GiteaServer, PushResult, gitea_env
from tests.support.jobs import ROOT
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

ZERO = "0" * 40
HUB_COMMIT = "e" * 40
FORBIDDEN = "remove it from the commit, or ask an admin to change checks.forbid"
BY_ANOTHER_REF = "another publishing ref of this push was rejected, so none of its refs moved"
REFUSED = "the Hub answered 403: you cannot write to acme/bert-tiny (give the token write access)"
# Every branch publishes to the Hub branch of its name, with no content checks: for pushes many at a time.
EVERY_BRANCH = """\
  - match: acme/*
    hub_repo: acme/{name}
    branches: {"*": "{branch}"}
    publishers: [alice]
    checks: {model_card: false, pickle: allow, safetensors: false, json: false, secrets: false}
"""
# A worker pass in a process of its own, publishing with a double, until the file argv[3] exists.
WORKER_PASSES = f"""
import os, sys, time
sys.path.insert(0, {str(ROOT)!r})
from gitea_hf_hook.config.load import load
from gitea_hf_hook.spool.state import PublishResult
from gitea_hf_hook.worker import loop
config = load(sys.argv[1], cached=False)
def accept(config, job, state):
    return PublishResult(git_commit=job.commit, hub_commit="{HUB_COMMIT}")
passes = 0
while True:
    stop = os.path.exists(sys.argv[2])  # read before the pass: the pass after the pushes ended always runs
    loop.loop(config, time.time(), accept)
    passes += 1
    if stop:
        break
print(passes)
"""


def accept(config: Config, job: Job, state: TargetState | None) -> PublishResult:
    return PublishResult(git_commit=job.commit, hub_commit=HUB_COMMIT)


def refuse(config: Config, job: Job, state: TargetState | None) -> PublishResult:
    raise PublishError("the Hub answered 403: you cannot write to acme/bert-tiny", "give the token write access")


def worker_pass(server: GiteaServer, publish: worker.Publisher) -> worker.LoopResult:
    """One pass of the worker, as its service runs it, over the server's live config."""
    return worker.loop(load(str(server.config_path), cached=False), time.time(), publish)


def audit_show(server: GiteaServer, *args: str) -> list[dict[str, Any]]:
    """``gitea-hf-hook audit show --json``, as the admin runs it: every record, oldest first."""
    shown = server.cli("audit", "show", "--json", *args)
    assert (shown.returncode, shown.stderr) == (0, ""), shown.stderr
    return [json.loads(line) for line in shown.stdout.splitlines()]


def said(record: dict[str, Any]) -> tuple[Any, ...]:
    """What a record says about a push: kind, source, repository, ref, ids, pusher, target, job, outcome, reasons."""
    return (record["kind"], record["source"], record["repository"], record["ref"], record["old"], record["new"],
            record["pusher"], record["pusher_id"], record["target"], record["job"], record["hub_commit"],
            record["outcome"], record["reasons"])


def reasons(pushed: PushResult) -> list[str]:
    """The problems the pusher read, as lines under the ref's heading."""
    return [line.removeprefix("  ") for line in pushed.remote if line.startswith("  ")]


def job_of(pushed: PushResult) -> str:
    [line] = [line for line in pushed.remote if line.startswith("hf-publish: queued ")]
    return line.rpartition(" job ")[2]


def test_each_decision_of_real_pushes_and_how_each_job_ended_is_in_the_audit_log(gitea: GiteaServer,
                                                                                 clone: Clone) -> None:
    target, live = "acme/bert-tiny branch main", gitea.config_path.read_text()
    first = clone.commit()
    accepted = clone.push("main")
    assert accepted.ok, accepted.output
    queued = job_of(accepted)
    clone.git("tag", "v0.9")
    bad = clone.commit({".env": "DEBUG=1\n"})
    rejected = clone.push("main", "refs/tags/v0.9")
    assert not rejected.ok and reasons(rejected) == [f".env: matches forbidden pattern '*.env' ({FORBIDDEN})"]
    gitea.config_path.write_text(live + "enforce: false\n")
    landed = clone.push("main", user="bob")  # bob publishes through @ml-release
    assert landed.ok and landed.remote[0].startswith("hf-publish: would reject refs/heads/main")
    gitea.config_path.write_text(live.replace("publishers:", "publisher:"))
    unchecked = clone.commit({"notes.txt": "one\n"})
    broken = clone.push("main", "main:refs/heads/scratch")
    assert not broken.ok
    error = broken.remote[-2].removeprefix("  the publishing config is broken: ")
    gitea.config_path.write_text(live)
    assert len(os.listdir(gitea.spool / "audit")) == 5  # pre-receive, 4 times; post-receive once

    assert worker_pass(gitea, accept).published == [queued]
    assert os.listdir(gitea.spool / "audit") == []
    records = audit_show(gitea)
    assert [r["seq"] for r in records] == list(range(1, 9))
    first_seen = records.pop(0)
    assert (first_seen["kind"], first_seen["source"], first_seen["outcome"], first_seen["detail"]["path"]) == (
        "config-changed", "worker", "first seen by this log", str(gitea.config_path))
    hook = ("hook", "acme/bert-tiny")
    assert [said(r) for r in records] == [
        ("push-accepted", *hook, "refs/heads/main", ZERO, first, "alice", "2", target, queued, "", "accepted", []),
        ("job-queued", *hook, "refs/heads/main", ZERO, first, "alice", "2", "", queued, "", "queued", []),
        *sorted([("push-rejected", *hook, "refs/heads/main", first, bad, "alice", "2", target, "", "", "rejected",
                  reasons(rejected)),
                 ("push-rejected", *hook, "refs/tags/v0.9", ZERO, first, "alice", "2", "acme/bert-tiny tag v0.9",
                  "", "", "rejected", [BY_ANOTHER_REF])]),
        ("push-would-reject", *hook, "refs/heads/main", first, bad, "bob", "3", target, "", "",
         "would reject (enforce is off)", reasons(landed)),
        # Only main published under the last valid config: scratch is let through, and not recorded.
        ("push-rejected", *hook, "refs/heads/main", bad, unchecked, "alice", "2", "", "", "", "rejected", [error]),
        ("job-published", "worker", "acme/bert-tiny", "refs/heads/main", ZERO, first, "alice", "2", target, queued,
         HUB_COMMIT, "published", []),
    ]
    assert error.startswith(f"{gitea.config_path}:") and "repos[0].publisher: unknown key" in error
    assert {r["detail"].get("repo_id") for r in records} == {"7"}

    # Two more pushes before the next pass: the newer supersedes the older, and the Hub refuses it.
    clone.git("rm", "--quiet", ".env")
    older = clone.commit(message="drop .env")
    first_push = clone.push("main")
    assert first_push.ok, first_push.output
    older_job = job_of(first_push)
    newer = clone.commit({"notes.txt": "two\n"})
    last = clone.push("main")
    assert last.ok, last.output
    failing = job_of(last)
    passed = worker_pass(gitea, refuse)
    assert (passed.superseded, passed.failed) == ([older_job], [failing])
    assert gitea.cli("queue", "retry", failing).returncode == 0
    cancelled = gitea.cli("queue", "cancel", failing, "--reason", "withdrawn by its owner")
    assert (cancelled.returncode, cancelled.stderr) == (0, "")
    purged = gitea.cli("queue", "purge")
    assert (purged.returncode, purged.stdout) == (0, "deleted 2 done jobs and 1 cancelled job\n")

    later = audit_show(gitea)[8:]
    assert [(r["kind"], r["source"], r["ref"], r["new"], r["job"], r["outcome"]) for r in later] == [
        ("push-accepted", "hook", "refs/heads/main", older, older_job, "accepted"),
        ("job-queued", "hook", "refs/heads/main", older, older_job, "queued"),
        ("push-accepted", "hook", "refs/heads/main", newer, failing, "accepted"),
        ("job-queued", "hook", "refs/heads/main", newer, failing, "queued"),
        ("job-superseded", "worker", "refs/heads/main", older, older_job, f"superseded by job {failing}"),
        ("job-failed", "worker", "refs/heads/main", newer, failing, f"failed: {REFUSED}"),
        ("admin-retry", "admin", "refs/heads/main", newer, failing, f"queued again by an admin after: {REFUSED}"),
        ("admin-cancel", "admin", "refs/heads/main", newer, failing, "cancelled by an admin: withdrawn by its owner"),
        ("admin-purge", "admin", "", "", "", "deleted 2 done jobs and 1 cancelled job"),
    ]
    assert later[-1]["detail"] == {"cancelled": "1", "done": "2"}
    assert {r["by"]["user"] for r in later if r["source"] == "admin"} == {"root"}
    verified = gitea.cli("audit", "verify")
    assert (verified.returncode, verified.stdout, verified.stderr) == (
        0, f"{gitea.audit_log}: 17 records verified\n", "")


def test_the_audit_show_line_of_a_rejected_push_reads_as_the_pusher_saw_it(gitea: GiteaServer,
                                                                          clone: Clone) -> None:
    old = clone.commit()
    assert clone.push("main").ok
    new = clone.commit({"README.md": CARD.replace("apache-2.0", "gpl-3.0")})
    rejected = clone.push("main")
    assert not rejected.ok
    worker_pass(gitea, accept)
    shown = gitea.cli("audit", "show", "--repo", "ACME/bert-tiny")
    assert shown.returncode == 0, shown.stderr
    line = shown.stdout.splitlines()[-2]  # then the first job's publish
    stamp = audit_show(gitea)[-2]["time"][:19]
    assert line == (f"{stamp}Z #4 push-rejected acme/bert-tiny refs/heads/main {old[:7]}..{new[:7]} by alice -> "
                    f"acme/bert-tiny branch main (the hook's word): rejected; {'; '.join(reasons(rejected))} "
                    "[repo_id=7]")
    assert gitea.cli("audit", "show", "--repo", "acme/other").stdout == ""


def test_pushes_at_once_and_workers_at_once_lose_and_repeat_no_record(server: GiteaServer, tmp_path: Path) -> None:
    server.write_config(EVERY_BRANCH)
    server.create_repo("acme", "bert-tiny")
    server.install("acme/bert-tiny")
    clones = []
    for n in range(8):
        clone = server.clone("acme", "bert-tiny", tmp_path / f"work-{n}")
        clone.commit({"README.md": f"# take {n}\n"})
        clones.append(clone)
    stop = tmp_path / "pushes-done"
    workers = [subprocess.Popen([sys.executable, "-c", WORKER_PASSES, str(server.config_path), str(stop)],
                                cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for _ in range(2)]
    env = {**os.environ, **gitea_env("acme", "bert-tiny", "alice"), "HOME": str(server.home)}
    pushes = [subprocess.Popen(["git", "push", "--quiet", str(c.bare), f"main:refs/heads/take-{n}"], cwd=c.path,
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
              for n, c in enumerate(clones)]
    assert [p.wait(timeout=120) for p in pushes] == [0] * 8
    stop.touch()
    for proc in workers:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0 and int(out) >= 1, err
    worker_pass(server, accept)  # whatever the two took no pass for since the last push
    assert os.listdir(server.spool / "audit") == []

    records = audit_show(server)
    assert [r["seq"] for r in records] == list(range(1, len(records) + 1))
    commits = {f"refs/heads/take-{n}": c.git("rev-parse", "HEAD") for n, c in enumerate(clones)}
    for kind in ("push-accepted", "job-queued", "job-published"):
        assert sorted((r["ref"], r["new"]) for r in records if r["kind"] == kind) == sorted(commits.items()), kind
    jobs = {r["job"] for r in records if r["kind"] == "job-queued"}
    assert len(jobs) == 8 and jobs == {r["job"] for r in records if r["kind"] == "job-published"}
    assert [r["kind"] for r in records].count("config-changed") == 1 and len(records) == 25
    hooks = {r["drop"]["name"] for r in records if r["source"] == "hook"}
    assert len(hooks) == 16  # one drop per hook run, each chained once
    verified = server.cli("audit", "verify")
    assert (verified.returncode, verified.stdout) == (0, f"{server.audit_log}: 25 records verified\n")


def test_no_token_shaped_value_a_pusher_or_admin_sends_reaches_the_audit_log(gitea: GiteaServer,
                                                                            clone: Clone) -> None:
    token = "hf" + "_" + "".join(chr(ord("A") + n % 26) for n in range(34))
    clone.commit()
    pushed = clone.push("main")
    assert pushed.ok
    clone.commit({f"notes-{token}.env": "x\n"})
    clone.git("tag", f"v1-{token}")
    rejected = clone.push("main", f"refs/tags/v1-{token}")
    assert not rejected.ok
    cancelled = gitea.cli("queue", "cancel", job_of(pushed), "--reason", f"the token {token} leaked")
    assert cancelled.returncode == 0, cancelled.stderr
    worker_pass(gitea, accept)

    log = gitea.audit_log.read_text()
    shown = gitea.cli("audit", "show").stdout + gitea.cli("audit", "show", "--json").stdout
    for text in (log, shown):
        assert token not in text and token[3:] not in text
    refused = [r for r in audit_show(gitea) if r["kind"] == "push-rejected"]
    assert sorted((r["ref"], r["target"], r["reasons"]) for r in refused) == [
        ("refs/heads/main", "acme/bert-tiny branch main", [f"notes-[REDACTED].env: matches forbidden pattern '*.env' "
                                                           f"({FORBIDDEN})"]),
        ("refs/tags/v1-[REDACTED]", "acme/bert-tiny tag v1-[REDACTED]",
         [f"notes-[REDACTED].env: matches forbidden pattern '*.env' ({FORBIDDEN})"])]
    [cancel] = [r for r in audit_show(gitea) if r["kind"] == "admin-cancel"]
    assert cancel["outcome"] == "cancelled by an admin: the token [REDACTED] leaked"


@pytest.mark.parametrize("how", ["ssh", "pr-merge"])
def test_the_hooks_drop_as_gitea_and_the_worker_chains_as_itself_and_publishes(two_users: TwoUsers,
                                                                               how: str) -> None:
    name = new_repo_name()
    clone = two_users.create_repo("acme", name)
    log = two_users.audit_log
    assert owned(log) == Owned("hf-publish", "git", "-rw-------") and log.read_bytes() == b""
    commit = clone.commit({"README.md": CARD})
    accepted = two_users.push(clone, "main", via=how)
    assert accepted.ok, accepted.output
    refused = clone.commit({"README.md": CARD, "notes.txt": "more\n"})
    rejected = two_users.push(clone, "main", user="carol")
    assert not rejected.ok
    drops = files_under(two_users.spool / "audit")
    assert list(drops.values()) == [Owned("git", "git", "-rw-r-----")] * 3  # pre-, post- and pre-receive again

    worked = two_users.worker_once()
    assert worked.returncode == 0, worked.stderr
    assert files_under(two_users.spool / "audit") == {}
    shown = two_users.as_root("audit", "show", "--json")
    assert (shown.returncode, shown.stderr) == (0, "")
    records = [json.loads(line) for line in shown.stdout.splitlines()]
    hub_commit = two_users.hub.api().list_repo_commits(f"acme/{name}")[0].commit_id
    target, trigger = f"acme/{name} branch main", "pr-merge-to-base" if how == "pr-merge" else ""
    [job] = [r["job"] for r in records if r["kind"] == "job-queued"]
    assert [(r["kind"], r["source"], r["ref"], r["old"], r["new"], r["pusher"], r["trigger"], r["target"],
             r["hub_commit"], r["outcome"]) for r in records] == [
        ("config-changed", "worker", "", "", "", "", "", "", "", "first seen by this log"),
        ("push-accepted", "hook", "refs/heads/main", ZERO, commit, "alice", trigger, target, "", "accepted"),
        ("job-queued", "hook", "refs/heads/main", ZERO, commit, "alice", trigger, "", "", "queued"),
        ("push-rejected", "hook", "refs/heads/main", commit, refused, "carol", "", target, "", "rejected"),
        ("job-published", "worker", "refs/heads/main", ZERO, commit, "alice", trigger, target, hub_commit,
         "published"),
    ]
    assert records[3]["reasons"] == [f"refs/heads/main: carol may not publish to acme/{name} (publishers: alice, "
                                     "@ml-release; ask a Gitea admin to add you)"]
    # Gitea's word, countersigned: whose drop it was, and who chained it.
    assert {(r["drop"]["uid"], r["by"]["uid"]) for r in records if r["source"] == "hook"} == {(GIT.uid, WORKER.uid)}
    assert {r["by"]["uid"] for r in records if r["source"] == "worker"} == {WORKER.uid}
    assert records[-1]["job"] == job
    verified = two_users.as_root("audit", "verify")
    assert (verified.returncode, verified.stdout, verified.stderr) == (0, f"{log}: 5 records verified\n", "")
    assert owned(log) == Owned("hf-publish", "git", "-rw-------")


def test_a_queue_command_the_log_cannot_record_says_that_it_acted_and_that_it_is_not_on_record(
        gitea: GiteaServer, clone: Clone, tmp_path: Path) -> None:
    commit = clone.commit()
    job = job_of(clone.push("main"))
    elsewhere = tmp_path / "elsewhere.jsonl"
    elsewhere.write_bytes(b"")
    gitea.audit_log.unlink()
    gitea.audit_log.symlink_to(elsewhere)
    cancelled = gitea.cli("queue", "cancel", job, "--reason", "withdrawn")
    assert (cancelled.returncode, cancelled.stdout) == (1, f"job {job} cancelled: acme/bert-tiny branch main "
                                                           f"{commit[:7]}: withdrawn\n")
    assert cancelled.stderr == (f"gitea-hf-hook: error: job {job} was cancelled, but it is not in the audit log: the "
                                f"audit log {gitea.audit_log} is a symbolic link (set audit_log to the file itself, "
                                f"{elsewhere})\n")
    assert os.listdir(gitea.spool / "cancelled") == [f"{job}.json"] and elsewhere.read_bytes() == b""
    purged = gitea.cli("queue", "purge")
    assert (purged.returncode, purged.stdout) == (1, "deleted 0 done jobs and 1 cancelled job\n")
    assert purged.stderr.startswith("gitea-hf-hook: error: the purge deleted 0 done jobs and 1 cancelled job, but it "
                                    "is not in the audit log: ")


def test_a_drop_that_cannot_be_written_decides_nothing_and_is_in_the_hook_log(gitea: GiteaServer,
                                                                             clone: Clone) -> None:
    (gitea.spool / "audit").rmdir()
    (gitea.spool / "audit").write_text("not a folder")
    commit = clone.commit()
    pushed = clone.push("main")
    assert pushed.ok and pushed.remote == [
        f"hf-publish: queued acme/bert-tiny@{commit[:7]} -> https://huggingface.co/acme/bert-tiny (main), "
        f"job {job_of(pushed)}"]
    log = (gitea.audit_log.parent / "hook.log").read_text()
    for hook in ("pre-receive (audit drop not written) acme/bert-tiny pusher=alice",
                 f"post-receive (audit drop not written) {clone.bare}"):
        assert hook in log
    assert log.count("NotADirectoryError") == 2
    assert len(gitea.queued_jobs()) == 1


def test_an_internal_error_at_push_time_is_recorded_as_the_rejection_the_pusher_read(gitea: GiteaServer,
                                                                                    clone: Clone) -> None:
    new = clone.commit()
    assert clone.push("main").ok
    # Gitea hands the hook an update whose old id the repository does not have: git fails under the checks.
    env = {**os.environ, **gitea_env("acme", "bert-tiny", "alice"), "HOME": str(gitea.home)}
    hook = subprocess.run([str(clone.bare / "hooks" / "pre-receive.d" / "hf-publish")], cwd=clone.bare, env=env,
                          input=f"{'1' * 40} {new} refs/heads/main\n", capture_output=True, text=True)
    assert hook.returncode == 1
    worker_pass(gitea, accept)
    [record] = [r for r in audit_show(gitea) if r["kind"] == "push-rejected"]
    assert (record["old"], record["new"], record["reasons"]) == (
        "1" * 40, new, [hook.stderr.removeprefix("hf-publish: rejected: ").strip()])
