"""What an admin sees with ``gitea-hf-hook audit verify`` and ``audit show``: every kind of tampering named at its
line, and the records readable, filtered and escaped."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from gitea_hf_hook.admin.cli import cli
from gitea_hf_hook.config.load import load
from gitea_hf_hook.config.model import Config
from gitea_hf_hook.gitea.environment import read_push
from gitea_hf_hook.gitea.hook_input import Update
from gitea_hf_hook.spool import audit_drop, layout
from gitea_hf_hook.spool.job import Outcome
from gitea_hf_hook.spool.state import PublishResult
from gitea_hf_hook.worker import audit
from gitea_hf_hook.worker.audit_chain import canonical, sha256
from tests.support.gitea_server import gitea_env
from tests.support.jobs import jid, make_job

T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z
DAY = 86400.0
OLD, NEW = "1" * 40, "2" * 40


@pytest.fixture
def config(tmp_path: Path) -> Config:
    path = tmp_path / "config.yaml"
    path.write_text(f"gitea:\n  repo_root: {tmp_path}/repos\nspool: {tmp_path}/spool\n"
                    f"audit_log: {tmp_path}/audit.jsonl\n")
    loaded = load(str(path), cached=False)
    layout.ensure_layout(loaded.spool)
    return loaded


def run(config: Config, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--config", config.path, "audit", *args])


def five(config: Config) -> Path:
    """A log of five records, one a day from T0: two the hook reported, three the worker's and an admin's."""
    push = read_push(gitea_env("acme", "bert-tiny", "alice"))
    audit_drop.push_decided(config.spool, push, [audit_drop.decision(
        Update(OLD, NEW, "refs/heads/main"), "rejected", "acme/bert-tiny branch main",
        ["README.md:2: license 'gpl-3.0' is not allowed (allowed: apache-2.0, mit)"])], now=T0 - 1)
    audit.ingest_drops(config, now=T0)
    other = read_push(gitea_env("acme", "gpt-small", "bob"))
    audit_drop.push_decided(config.spool, other, [audit_drop.decision(
        Update(OLD, NEW, "refs/heads/main"), "accepted", "acme/gpt-small branch main", job=jid(2))], now=T0 + DAY)
    audit.ingest_drops(config, now=T0 + DAY)
    result = PublishResult(git_commit="c" * 40, hub_commit="9f8e7d6c5b4a" + "0" * 28)
    published = make_job(1)._replace(outcome=Outcome("published", T0, "gw", 1, result=result))
    audit.job_settled(config, published, T0 + 2 * DAY)
    audit.admin_action(config, "retry", make_job(3), outcome="queued again", now=T0 + 3 * DAY)
    audit.append(config, audit.Record("job-failed", outcome="last"), T0 + 4 * DAY)
    return Path(config.audit_log)


def rewrite(log: Path, lines: list[bytes]) -> None:
    log.write_bytes(b"".join(line + b"\n" for line in lines))


def verify(config: Config) -> tuple[int, str, str]:
    result = run(config, "verify")
    return result.exit_code, result.stdout, result.stderr


def test_an_untouched_log_verifies(config: Config) -> None:
    log = five(config)
    assert verify(config) == (0, f"{log}: 5 records verified\n", "")


def test_no_log_yet_is_no_records_yet(config: Config) -> None:
    assert verify(config) == (0, f"{config.audit_log}: no records yet\n", "")


def test_an_edited_record_is_named(config: Config) -> None:
    log = five(config)
    lines = log.read_bytes().splitlines()
    lines[2] = lines[2].replace(b'"pusher":"alice"', b'"pusher":"carol"')
    rewrite(log, lines)
    assert verify(config) == (1, f"{log}:3: edited: the record's content does not match its hash (the 2 records "
                                 "before it verified)\n", "")


def test_an_edit_that_recomputes_the_hash_breaks_the_chain_at_the_next_line(config: Config) -> None:
    log = five(config)
    lines = log.read_bytes().splitlines()
    record = json.loads(lines[1])
    del record["hash"]
    record["pusher"] = "carol"
    record["hash"] = sha256(canonical(record))
    lines[1] = canonical(record).encode()
    rewrite(log, lines)
    assert verify(config) == (1, f"{log}:3: off the chain: its prev is not the sha256 of line 2 (a record before it "
                                 "was edited, removed or reordered) (the 2 records before it verified)\n", "")


def test_a_removed_record_is_named(config: Config) -> None:
    log = five(config)
    lines = log.read_bytes().splitlines()
    del lines[1]
    rewrite(log, lines)
    assert verify(config) == (1, f"{log}:2: out of place: it holds record 3, so 1 record before it was removed, or "
                                 "records were reordered (the record before it verified)\n", "")


def test_reordered_records_are_named(config: Config) -> None:
    log = five(config)
    lines = log.read_bytes().splitlines()
    lines[3], lines[4] = lines[4], lines[3]
    rewrite(log, lines)
    assert verify(config) == (1, f"{log}:4: out of place: it holds record 5, so 1 record before it was removed, or "
                                 "records were reordered (the 3 records before it verified)\n", "")


def test_a_repeated_record_is_named(config: Config) -> None:
    log = five(config)
    lines = log.read_bytes().splitlines()
    rewrite(log, [*lines[:3], lines[1], *lines[3:]])
    assert verify(config) == (1, f"{log}:4: out of place: it holds record 2, so records were reordered or repeated "
                                 "(the 3 records before it verified)\n", "")


def test_a_record_cut_short_is_named(config: Config) -> None:
    log = five(config)
    os.truncate(log, log.stat().st_size - 20)
    assert verify(config) == (1, f"{log}:5: cut short: the last line does not end with a line break (the log was "
                                 "truncated, or a write is under way) (the 4 records before it verified)\n", "")


def test_records_cut_off_the_end_are_named_from_the_head_the_worker_noted(config: Config) -> None:
    log = five(config)
    rewrite(log, log.read_bytes().splitlines()[:3])
    assert verify(config) == (1, f"{log}:4: missing: the worker appended 5 records, and the log holds 3 (it was "
                                 "truncated) (the 3 records before it verified)\n", "")
    log.write_bytes(b"")
    assert verify(config) == (1, f"{log}:1: missing: the worker appended 5 records, and the log holds none (it was "
                                 "truncated) (no record before it)\n", "")


def test_a_log_rewritten_with_a_valid_chain_is_caught_at_the_worker_s_last_record(config: Config) -> None:
    log = five(config)
    lines, prev = log.read_bytes().splitlines(), sha256(log.read_bytes().splitlines()[1])
    forged = []
    for line in lines[2:]:  # from line 3 on, every record rewritten and chained again as the worker would
        record = json.loads(line)
        del record["hash"]
        record["prev"], record["pusher"] = prev, "mallory"
        record["hash"] = sha256(canonical(record))
        forged.append(canonical(record).encode())
        prev = sha256(forged[-1])
    rewrite(log, [*lines[:2], *forged])
    assert verify(config) == (1, f"{log}:5: replaced: it is not the record 5 the worker appended (the log was "
                                 "rewritten from there) (the 4 records before it verified)\n", "")


def test_a_record_laid_out_anew_is_named(config: Config) -> None:
    log = five(config)
    lines = log.read_bytes().splitlines()
    lines[0] = json.dumps(json.loads(lines[0]), sort_keys=True).encode()  # same content, other spacing
    rewrite(log, lines)
    assert verify(config) == (1, f"{log}:1: rewritten: the record is not laid out as the worker writes it (no record "
                                 "before it)\n", "")


def test_a_line_that_is_not_a_record_is_named(config: Config) -> None:
    log = five(config)
    lines = log.read_bytes().splitlines()
    rewrite(log, [*lines[:2], b"\x1b[2J forged", *lines[2:]])
    assert verify(config) == (1, f"{log}:3: not an audit record (not JSON, or not a version 1 record) (the 2 records "
                                 "before it verified)\n", "")


def test_the_next_append_chains_a_gap_record_that_verify_names(config: Config) -> None:
    log = five(config)
    rewrite(log, log.read_bytes().splitlines()[:3])
    audit.append(config, audit.Record("job-failed", outcome="after the cut"), T0 + 5 * DAY)
    kinds = [json.loads(line)["kind"] for line in log.read_bytes().splitlines()]
    assert kinds == ["push-rejected", "push-accepted", "job-published", "audit-gap", "job-failed"]
    assert verify(config) == (1, f"{log}:4: damage the worker found when it appended this record: the log held 3 "
                                 "records where the worker had appended 5: records were removed or replaced (the 3 "
                                 "records before it verified)\n", "")


def test_a_write_cut_short_by_a_crash_is_closed_and_noted_by_the_next_append(config: Config) -> None:
    log = five(config)
    with log.open("ab") as f:
        f.write(b'{"by":{"host"')  # a worker died mid-write
    audit.append(config, audit.Record("job-failed", outcome="after the crash"), T0 + 5 * DAY)
    records = log.read_bytes().splitlines()
    assert records[5] == b'{"by":{"host"'
    gap = json.loads(records[6])
    assert (gap["kind"], gap["seq"], gap["outcome"], gap["prev"]) == ("audit-gap", 7, "line 6 was cut short",
                                                                    sha256(records[5]))
    assert json.loads(records[7])["outcome"] == "after the crash"
    assert verify(config) == (1, f"{log}:6: not an audit record (not JSON, or not a version 1 record) (the 5 records "
                                 "before it verified)\n", "")


# --- audit show ---------------------------------------------------------------------------------------------------

def test_show_prints_one_readable_line_per_record(config: Config) -> None:
    five(config)
    result = run(config, "show")
    assert (result.exit_code, result.stderr) == (0, "")
    assert result.stdout.splitlines() == [
        "2027-01-15T08:00:00Z #1 push-rejected acme/bert-tiny refs/heads/main 1111111..2222222 by alice -> "
        "acme/bert-tiny branch main (the hook's word): rejected; README.md:2: license 'gpl-3.0' is not allowed "
        "(allowed: apache-2.0, mit) [repo_id=7]",
        f"2027-01-16T08:00:00Z #2 push-accepted acme/gpt-small refs/heads/main 1111111..2222222 by bob -> "
        f"acme/gpt-small branch main job {jid(2)} (the hook's word): accepted [repo_id=7]",
        f"2027-01-17T08:00:00Z #3 job-published acme/bert-tiny refs/heads/main 0000000..c000000 by alice -> "
        f"acme/bert-tiny branch main job {jid(1)} hub commit 9f8e7d6c5b4a: published [deleted=0 hub_commits=1 "
        "repo_id=7 uploaded=0]",
        f"2027-01-18T08:00:00Z #4 admin-retry acme/bert-tiny refs/heads/main 0000000..c000000 by alice -> "
        f"acme/bert-tiny branch main job {jid(3)} (admin root): queued again [repo_id=7]",
        "2027-01-19T08:00:00Z #5 job-failed: last",
    ]


def test_show_filters_by_repository_and_date(config: Config) -> None:
    five(config)
    by_repo = run(config, "show", "--repo", "ACME/gpt-small").stdout.splitlines()
    assert [line.split()[1] for line in by_repo] == ["#2"]
    since = run(config, "show", "--since", "2027-01-17").stdout.splitlines()
    assert [line.split()[1] for line in since] == ["#3", "#4", "#5"]
    both = run(config, "show", "--since", "2027-01-16T09:00:00+01:00", "--repo", "acme/bert-tiny")
    assert [line.split()[1] for line in both.stdout.splitlines()] == ["#3", "#4"]


def test_show_refuses_a_date_it_cannot_read(config: Config) -> None:
    result = run(config, "show", "--since", "last tuesday")
    assert (result.exit_code, result.stdout) == (1, "")
    assert result.stderr == ("gitea-hf-hook: error: --since 'last tuesday' is not a date (give a date such as "
                             "2026-11-25, or 2026-11-25T20:00:00Z (UTC unless it names an offset))\n")


def test_show_json_gives_the_records_as_json_lines(config: Config) -> None:
    log = five(config)
    result = run(config, "show", "--json", "--repo", "acme/gpt-small")
    assert result.stdout == log.read_text().splitlines()[1] + "\n"


def test_names_gitea_s_user_chose_cannot_forge_lines_or_escapes(config: Config) -> None:
    push = read_push(gitea_env("acme", "bert-tiny", "alice"))
    forged = Update(OLD, NEW, "refs/heads/x\x1b]8;;http://evil\x07\u202e\ncaf\udce9")
    audit_drop.push_decided(config.spool, push, [audit_drop.decision(forged, "would-reject", "t", ["a\rb"])], now=T0)
    audit.ingest_drops(config, now=T0)
    Path(config.audit_log).open("ab").write(b"\x1b[2J\n")
    shown = run(config, "show")
    assert shown.stdout == ("2027-01-15T08:00:00Z #1 push-would-reject acme/bert-tiny "
                            "refs/heads/x\\x1b]8;;http://evil\\x07\\u202e\\ncaf\\\\udce9 1111111..2222222 by alice "
                            "-> t (the hook's word): would reject (enforce is off); a\\rb [repo_id=7]\n")
    assert shown.stderr == f"{config.audit_log}:2: not an audit record (audit verify says more)\n"
    as_json = run(config, "show", "--json").stdout
    assert as_json.isascii() and as_json.endswith("\n") and as_json[:-1].isprintable()  # one inert line
    assert json.loads(as_json)["ref"] == "refs/heads/x\x1b]8;;http://evil\x07\u202e\ncaf\\udce9"
