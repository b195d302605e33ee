"""The audit trail as the worker keeps it: the hooks' drops chained as their word, its own records, the admin's,
and several writers at once."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gitea_hf_hook.config.load import load
from gitea_hf_hook.config.model import Config
from gitea_hf_hook.errors import SpoolError
from gitea_hf_hook.gitea.environment import read_push
from gitea_hf_hook.gitea.hook_input import Update
from gitea_hf_hook.spool import audit_drop, layout
from gitea_hf_hook.spool.job import Outcome
from gitea_hf_hook.spool.state import PublishResult
from gitea_hf_hook.worker import audit
from gitea_hf_hook.worker.audit_chain import GENESIS, canonical, sha256
from tests.support.gitea_server import gitea_env
from tests.support.jobs import ROOT, jid, make_job

T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z
OLD, NEW = "1" * 40, "2" * 40
MAIN = Update(OLD, NEW, "refs/heads/main")
PUSH = read_push(gitea_env("acme", "bert-tiny", "alice"))


def make_config(base: Path, extra: str = "") -> Config:
    """A config whose spool and audit log live under ``base``; the spool laid out as install makes it."""
    path = base / "config.yaml"
    path.write_text(f"gitea:\n  repo_root: {base}/repos\nspool: {base}/spool\naudit_log: {base}/audit.jsonl\n"
                    + extra)
    config = load(str(path), cached=False)
    layout.ensure_layout(config.spool)
    return config


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return make_config(tmp_path)


def lines(config: Config) -> list[dict[str, object]]:
    return [json.loads(line) for line in Path(config.audit_log).read_text().splitlines()]


def test_each_record_chains_to_the_line_before_it(config: Config) -> None:
    for n in range(3):
        assert audit.append(config, audit.Record("job-failed", outcome=f"failure {n}"), T0 + n) == n + 1
    raw = Path(config.audit_log).read_bytes().splitlines()
    records = [json.loads(line) for line in raw]
    assert [r["seq"] for r in records] == [1, 2, 3]
    assert [r["prev"] for r in records] == [GENESIS, sha256(raw[0]), sha256(raw[1])]
    for line, record in zip(raw, records, strict=True):
        assert line.decode() == canonical(record)
        claimed = record.pop("hash")
        assert claimed == sha256(canonical(record))
    assert records[0]["time"] == "2027-01-15T08:00:00.000000Z"
    assert records[0]["by"] == {"user": "root", "uid": 0, "host": os.uname().nodename, "pid": os.getpid()}
    assert oct(os.stat(config.audit_log).st_mode & 0o777) == "0o600"


def test_a_hook_drop_is_chained_as_the_hooks_word_with_the_drop_it_came_from(config: Config) -> None:
    [name] = audit_drop.push_decided(config.spool, PUSH, [audit_drop.decision(
        MAIN, "rejected", "acme/bert-tiny branch main", ["README.md:2: license 'gpl-3.0' is not allowed"])], now=T0)
    data = Path(config.spool, "audit", name).read_bytes()
    assert audit.ingest_drops(config, now=T0 + 5) == 1
    assert os.listdir(Path(config.spool, "audit")) == []
    [record] = lines(config)
    del record["hash"], record["by"]
    assert record == {
        "v": 1, "seq": 1, "time": "2027-01-15T08:00:05.000000Z", "kind": "push-rejected", "source": "hook",
        "repository": "acme/bert-tiny", "ref": "refs/heads/main", "old": OLD, "new": NEW, "pusher": "alice",
        "pusher_id": "2", "trigger": "", "target": "acme/bert-tiny branch main", "job": "", "hub_commit": "",
        "outcome": "rejected", "reasons": ["README.md:2: license 'gpl-3.0' is not allowed"],
        "detail": {"repo_id": "7"}, "reported": "2027-01-15T08:00:00.000000Z",
        "drop": {"name": name, "uid": 0, "size": len(data), "sha256": sha256(data), "record": 1, "records": 1},
        "prev": GENESIS}


def test_one_ingest_appends_a_bounded_number_of_records_and_the_next_takes_the_rest(
        config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    # Gitea's user writes the drops: packed small, they could hold the log's lock for minutes in one pass.
    monkeypatch.setattr(audit, "MAX_RECORDS", 5)
    for _ in range(4):
        audit_drop.push_decided(config.spool, PUSH, [audit_drop.decision(MAIN, "accepted")] * 2, now=T0)
    assert audit.ingest_drops(config, now=T0) == 6  # three drops; the fourth would pass the bound
    assert len(os.listdir(Path(config.spool, "audit"))) == 1
    assert audit.ingest_drops(config, now=T0) == 2
    assert [record["seq"] for record in lines(config)] == list(range(1, 9))


def test_whatever_gitea_s_user_leaves_in_the_drop_folder_is_recorded_and_never_stops_the_ingest(
        config: Config, tmp_path: Path) -> None:
    folder = Path(config.spool, "audit")
    secret = tmp_path / "worker-secret"
    secret.write_text("not for the log\n")
    audit_drop.push_decided(config.spool, PUSH, [audit_drop.decision(MAIN, "accepted", "t1")], now=T0)
    [first] = os.listdir(folder)
    # Named to sort after the first real drop and before the next one, which the hook's clock names later.
    os.symlink(secret, folder / f"{first}-2-link")
    os.mkfifo(folder / f"{first}-3-fifo")
    (folder / f"{first}-4-folder").mkdir()
    (folder / f"{first}-5-junk").write_bytes(b"GET / HTTP/1.1\r\n")
    audit_drop.jobs_queued(config.spool, gitea_env("acme", "bert-tiny", "alice"), "/srv/acme/bert-tiny.git",
                           [(MAIN, jid(1))], now=T0 + 1)
    assert audit.ingest_drops(config, now=T0 + 9) == 6
    said = [(r["kind"], r["source"], r["outcome"], r["drop"]["name"]) for r in lines(config)]  # type: ignore[index]
    assert said == [
        ("push-accepted", "hook", "accepted", first),
        ("drop-refused", "worker", "a symbolic link, which is never followed", f"{first}-2-link"),
        ("drop-refused", "worker", "a FIFO, not a drop file", f"{first}-3-fifo"),
        ("drop-refused", "worker", "a folder, not a drop file", f"{first}-4-folder"),
        ("drop-malformed", "worker", "does not start with the drop header of this version", f"{first}-5-junk"),
        ("job-queued", "hook", "queued", said[5][3]),
    ]
    assert "not for the log" not in Path(config.audit_log).read_text()
    assert secret.read_text() == "not for the log\n"
    [left] = os.listdir(folder)
    assert left.startswith(f".refused-{first}-4-folder-")
    assert audit.ingest_drops(config) == 0


def test_a_linked_drop_folder_stops_the_ingest_with_the_fix(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    shutil.rmtree(Path(config.spool, "audit"))
    os.symlink(tmp_path, Path(config.spool, "audit"))
    where = Path(config.spool, "audit")
    with pytest.raises(SpoolError) as raised:
        audit.ingest_drops(config)
    assert str(raised.value) == (f"the audit drop folder {where} cannot be opened (Not a directory) "
                                 f"(it must be a folder, not a link: rm {where}; the worker recreates it)")


def test_the_worker_records_what_it_settled_from_the_job_itself(config: Config) -> None:
    job = make_job(1)
    result = PublishResult(git_commit=job.commit, hub_commit="b" * 40, uploaded=3, deleted=1, skipped=False,
                           mode="incremental")
    settled = [
        job._replace(outcome=Outcome("published", T0, "gw", 1, result=result)),
        make_job(2)._replace(outcome=Outcome("superseded", T0, "gw", 1, superseded_by=jid(3))),
        make_job(4)._replace(outcome=Outcome("failed", T0, "gw", 1, reason="the Hub answered 403: no")),
    ]
    assert all(audit.job_settled(config, j, T0) for j in settled)
    assert audit.job_unreadable(config, "broken.json", "not valid JSON", T0)
    assert audit.job_queued(config, make_job(5), T0)
    records = lines(config)
    assert [(r["kind"], r["job"], r["hub_commit"], r["outcome"]) for r in records] == [
        ("job-published", jid(1), "b" * 40, "published"),
        ("job-superseded", jid(2), "", f"superseded by job {jid(3)}"),
        ("job-failed", jid(4), "", "failed: the Hub answered 403: no"),
        ("job-unreadable", "", "", "not valid JSON"),
        ("job-queued", jid(5), "", "queued by the worker: post-receive never queued it"),
    ]
    first = records[0]
    assert (first["repository"], first["ref"], first["old"], first["new"], first["pusher"], first["target"]) == (
        "acme/bert-tiny", "refs/heads/main", "0" * 40, job.commit, "alice", "acme/bert-tiny branch main")
    assert first["detail"] == {"repo_id": "7", "hub_commits": "1", "uploaded": "3", "deleted": "1",
                               "mode": "incremental"}
    assert records[3]["detail"] == {"file": "broken.json"}


def test_an_admin_action_names_the_admin_and_who_they_are_behind_sudo(
        config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUDO_USER", "carol")
    assert audit.admin_action(config, "retry", make_job(1), outcome="queued again", now=T0) == 1
    assert audit.admin_action(config, "purge", outcome="deleted 3 done jobs", detail=(("done", "3"),), now=T0) == 2
    retry, purge = lines(config)
    assert (retry["kind"], retry["source"], retry["job"], retry["outcome"]) == (
        "admin-retry", "admin", jid(1), "queued again")
    assert retry["by"] == {"user": "root", "uid": 0, "host": os.uname().nodename, "pid": os.getpid(),
                           "sudo_user": "carol"}
    assert (purge["kind"], purge["job"], purge["detail"]) == ("admin-purge", "", {"done": "3"})
    with pytest.raises(ValueError, match="action must be one of retry, cancel, purge"):
        audit.admin_action(config, "reboot")


def test_config_changes_are_recorded_with_the_old_and_new_digest(config: Config) -> None:
    first = Path(config.path).read_bytes()
    assert audit.config_seen(config, T0)
    assert not audit.config_seen(config, T0 + 1)  # unchanged: nothing recorded
    Path(config.path).write_bytes(first + b"enforce: false\n")
    assert audit.config_seen(config, T0 + 2)
    assert not audit.config_seen(config, T0 + 3)
    seen = [(r["kind"], r["outcome"], r["detail"]) for r in lines(config)]
    assert seen == [
        ("config-changed", "first seen by this log",
         {"path": config.path, "old_sha256": "", "new_sha256": sha256(first)}),
        ("config-changed", "changed",
         {"path": config.path, "old_sha256": sha256(first), "new_sha256": sha256(first + b"enforce: false\n")}),
    ]


def test_no_token_shaped_value_reaches_the_log(config: Config) -> None:
    token = "hf" + "_" + "".join(chr(ord("a") + n % 26) for n in range(34))
    sneaky = Update(OLD, NEW, f"refs/heads/{token}")
    audit_drop.push_decided(config.spool, PUSH._replace(pusher=token), [
        audit_drop.decision(sneaky, "rejected", "t", [f"train.py:3: {token}", f"Authorization: Bearer {token}"])])
    audit.ingest_drops(config)
    failed = make_job(1)._replace(outcome=Outcome("failed", T0, "gw", 1, reason=f"the Hub said {token}"))
    audit.job_settled(config, failed)
    audit.admin_action(config, "cancel", make_job(2), outcome=f"reason: {token[:-1]}x")
    text = Path(config.audit_log).read_text()
    assert token not in text and token[3:] not in text and token[:-1] not in text
    assert text.count("[REDACTED]") == 6
    assert [r["reasons"] for r in lines(config)][0] == ["train.py:3: [REDACTED]", "Authorization: [REDACTED]"]


def test_a_log_that_cannot_be_written_is_one_error_line_for_the_worker(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    config = make_config(tmp_path)
    os.symlink(tmp_path / "elsewhere", config.audit_log)
    caplog.set_level(logging.ERROR, logger="gitea_hf_hook.worker")
    failed = make_job(4)._replace(outcome=Outcome("failed", T0, "gw", 1, reason="no"))
    assert audit.job_settled(config, failed) is False
    assert caplog.messages == [
        f"audit log: job-failed {jid(4)} is not recorded: the audit log {config.audit_log} is a symbolic link "
        f"(set audit_log to the file itself, {tmp_path / 'elsewhere'})"]
    with pytest.raises(SpoolError, match="is a symbolic link"):
        audit.admin_action(config, "purge")


def test_a_log_others_could_change_is_refused(config: Config) -> None:
    Path(config.audit_log).touch(mode=0o600)
    os.chmod(config.audit_log, 0o620)
    with pytest.raises(SpoolError) as raised:
        audit.append(config, audit.Record("job-failed"))
    assert str(raised.value) == (f"the audit log {config.audit_log} could be changed by others than the worker's user "
                                 f"(owner uid 0, mode 620) (chown it to the worker's user; chmod 600 {config.audit_log})")


def test_root_creates_the_log_for_the_spool_s_owner(config: Config) -> None:
    if os.geteuid() != 0:
        pytest.skip("only root can give a file away")
    os.chown(config.spool, 30002, 30001)
    assert audit.create_log(config) is True
    info = os.stat(config.audit_log)
    assert (info.st_uid, info.st_gid, oct(info.st_mode & 0o7777), info.st_size) == (30002, 30001, "0o600", 0)
    assert audit.create_log(config) is False


# --- several writers at once ------------------------------------------------------------------------------------

def _append_many(config_file: str, writer: int, count: int) -> None:
    config = load(config_file, cached=False)
    for n in range(count):
        audit.append(config, audit.Record("job-failed", outcome=f"writer {writer} record {n}"))


def _drop_many(config_file: str, writer: int, count: int) -> None:
    config = load(config_file, cached=False)
    for n in range(count):
        update = Update(OLD, NEW, f"refs/heads/w{writer}-{n}")
        audit_drop.push_decided(config.spool, PUSH, [audit_drop.decision(update, "accepted", "t")])


def _ingest_until_done(config_file: str, done: multiprocessing.synchronize.Event) -> None:
    config = load(config_file, cached=False)
    while True:
        finished = done.is_set()  # read before the ingest: drops written before it was set are all seen
        audit.ingest_drops(config, limit=7)
        if finished and not os.listdir(os.path.join(config.spool, "audit")):
            return


def _verified(config: Config) -> tuple[list[str], int]:
    from gitea_hf_hook.admin import audit_cmd

    return audit_cmd.verify_lines(audit_cmd.verify(config))


def test_parallel_appends_from_several_processes_make_one_chain_with_every_record(config: Config) -> None:
    spawn = multiprocessing.get_context("spawn")
    writers = [spawn.Process(target=_append_many, args=(config.path, w, 40)) for w in range(4)]
    for p in writers:
        p.start()
    for p in writers:
        p.join()
    assert [p.exitcode for p in writers] == [0, 0, 0, 0]
    assert _verified(config) == ([f"{config.audit_log}: 160 records verified"], 0)
    said = sorted(str(r["outcome"]) for r in lines(config))
    assert said == sorted(f"writer {w} record {n}" for w in range(4) for n in range(40))


def test_hooks_dropping_while_workers_ingest_and_append_lose_and_repeat_nothing(config: Config) -> None:
    spawn = multiprocessing.get_context("spawn")
    done = spawn.Event()
    ingesters = [spawn.Process(target=_ingest_until_done, args=(config.path, done)) for _ in range(2)]
    hooks = [spawn.Process(target=_drop_many, args=(config.path, w, 25)) for w in range(3)]
    worker = spawn.Process(target=_append_many, args=(config.path, 9, 30))
    for p in (*ingesters, *hooks, worker):
        p.start()
    for p in (*hooks, worker):
        p.join()
    done.set()
    for p in ingesters:
        p.join()
    assert [p.exitcode for p in (*ingesters, *hooks, worker)] == [0] * 6
    records = lines(config)
    assert sorted(str(r["ref"]) for r in records if r["kind"] == "push-accepted") == sorted(
        f"refs/heads/w{w}-{n}" for w in range(3) for n in range(25))
    assert sum(r["kind"] == "job-failed" for r in records) == 30
    assert _verified(config) == ([f"{config.audit_log}: 105 records verified"], 0)


# --- export to syslog -------------------------------------------------------------------------------------------

SYSLOG_LISTENER = """
import os, socket, subprocess, sys
sys.path.insert(0, sys.argv[1])
# A private /dev, in this process's own mount namespace: the test's /dev/log, never the machine's.
subprocess.run(["mount", "-t", "tmpfs", "tmpfs", "/dev"], check=True)
listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
listener.bind("/dev/log")
from gitea_hf_hook.config.load import load
from gitea_hf_hook.worker import audit
config = load(sys.argv[2], cached=False)
audit.append(config, audit.Record("job-failed", repository="acme/bert-tiny", outcome=sys.argv[3]))
print(os.getpid())
print(listener.recv(1 << 20).decode())
"""


def test_with_audit_syslog_each_record_is_also_one_syslog_line(tmp_path: Path) -> None:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        if os.environ.get("CI"):
            pytest.fail("CI is set and this test needs root and unshare (util-linux)", pytrace=False)
        pytest.skip("needs root and unshare, for a /dev/log of its own")
    config = make_config(tmp_path, "audit_syslog: true\n")
    assert config.audit_syslog == "auth"
    token = "hf" + "_" + "Q" * 34
    proc = subprocess.run(["unshare", "--mount", "--propagation", "private", sys.executable, "-c", SYSLOG_LISTENER,
                           str(ROOT), config.path, f"the Hub said {token}\x1b[2J"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    pid, message = proc.stdout.rstrip("\n").split("\n")
    [line] = Path(config.audit_log).read_text().splitlines()
    # <38> is facility auth (4) times 8, plus priority info (6).
    assert message.startswith("<38>") and message.endswith(f" gitea-hf-hook-audit[{pid}]: {line}")
    assert token not in message and "\x1b" not in message and '"outcome":"the Hub said [REDACTED]\\u001b[2J"' in line


@pytest.mark.parametrize(("value", "facility"), [("false", ""), ("true", "auth"), ("local3", "local3"),
                                                 ("authpriv", "authpriv")])
def test_audit_syslog_takes_true_false_or_a_facility(tmp_path: Path, value: str, facility: str) -> None:
    assert make_config(tmp_path, f"audit_syslog: {value}\n").audit_syslog == facility


def test_audit_syslog_names_the_facilities_it_knows(tmp_path: Path) -> None:
    from gitea_hf_hook.errors import ConfigError

    with pytest.raises(ConfigError) as raised:
        make_config(tmp_path, "audit_syslog: kern\n")
    assert str(raised.value) == (
        f"{tmp_path}/config.yaml:5: audit_syslog: must be one of auth, authpriv, daemon, user, local0, local1, "
        "local2, local3, local4, local5, local6, local7 (got 'kern') (fix config.yaml; README.md lists every key)")
