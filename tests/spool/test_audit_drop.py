"""The hooks' audit drops: what pre-receive and post-receive leave in spool/audit/, and how the worker reads it.

Gitea's user writes this folder, so the reader is tested against everything that user could put there.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gitea_hf_hook.gitea.environment import read_push
from gitea_hf_hook.gitea.hook_input import Update
from gitea_hf_hook.spool import audit_drop, layout
from tests.support.gitea_server import gitea_env
from tests.support.jobs import ROOT

OLD, NEW = "1" * 40, "2" * 40
MAIN = Update(OLD, NEW, "refs/heads/main")
PUSH = read_push(gitea_env("acme", "bert-tiny", "alice"))
T0 = 1_800_000_000.5


@pytest.fixture
def spool(tmp_path: Path) -> str:
    path = str(tmp_path / "spool")
    layout.ensure_layout(path)
    return path


def drops(spool: str) -> list[audit_drop.Drop]:
    folder = audit_drop.open_folder(spool)
    try:
        return [audit_drop.read(folder, name) for name in audit_drop.pending(folder, 1000)]
    finally:
        os.close(folder)


def fields(drop: audit_drop.Drop) -> list[tuple[dict[str, str], list[str]]]:
    return [(r.fields, r.reasons) for r in drop.records]


def test_pre_receive_leaves_one_drop_with_a_record_per_ref_it_decided(spool: str) -> None:
    tag = Update("0" * 40, "3" * 40, "refs/tags/v1.0")
    names = audit_drop.push_decided(spool, PUSH, [
        audit_drop.decision(MAIN, "accepted", "acme/bert-tiny branch main", job="20270115-080000-0000000a"),
        audit_drop.decision(tag, "rejected", "acme/bert-tiny tag v1.0", ["README.md: no model card"]),
    ], now=T0)
    assert len(names) == 1 and sorted(os.listdir(Path(spool, "audit"))) == names
    assert names[0].endswith(f"-{os.getpid()}-" + names[0].split("-")[2]) and names[0].endswith(".drop")
    assert os.listdir(Path(spool, "tmp")) == []  # written there, then renamed: never seen half-written
    [drop] = drops(spool)
    pushed = {"time": repr(T0), "repository": "acme/bert-tiny", "repo_id": "7", "pusher": "alice", "pusher_id": "2",
              "deploy_key_id": "", "trigger": "", "pr_id": "0"}
    assert (drop.status, drop.problem, drop.uid) == ("ok", "", os.geteuid())
    assert fields(drop) == [
        ({"kind": "push-accepted", **pushed, "ref": "refs/heads/main", "old": OLD, "new": NEW,
          "target": "acme/bert-tiny branch main", "job": "20270115-080000-0000000a"}, []),
        ({"kind": "push-rejected", **pushed, "ref": "refs/tags/v1.0", "old": "0" * 40, "new": "3" * 40,
          "target": "acme/bert-tiny tag v1.0"}, ["README.md: no model card"]),
    ]


def test_post_receive_reports_each_queued_job_with_what_gitea_said_of_the_push(spool: str) -> None:
    environ = gitea_env("acme", "bert-tiny", "bob", via="pr-merge")
    audit_drop.jobs_queued(spool, environ, "/srv/acme/bert-tiny.git", [(MAIN, "20270115-080000-0000000b")], now=T0)
    [drop] = drops(spool)
    assert fields(drop) == [({
        "kind": "job-queued", "time": repr(T0), "repository": "acme/bert-tiny", "repo_id": "7", "pusher": "bob",
        "pusher_id": "3", "deploy_key_id": "", "trigger": "pr-merge-to-base", "pr_id": "42", "ref": "refs/heads/main",
        "old": OLD, "new": NEW, "job": "20270115-080000-0000000b"}, [])]


def test_without_gitea_variables_the_repository_comes_from_its_folder(spool: str) -> None:
    audit_drop.jobs_queued(spool, {}, "/srv/Acme/Bert-Tiny.git", [(MAIN, "20270115-080000-0000000b")], now=T0)
    [drop] = drops(spool)
    assert drop.records[0].fields["repository"] == "acme/bert-tiny"
    assert drop.records[0].fields["pusher"] == ""


def test_values_are_bounded_and_only_twenty_reasons_are_kept(spool: str) -> None:
    reasons = [f"file{n}.bin: pickle files can run code" for n in range(25)]
    audit_drop.push_decided(spool, PUSH, [audit_drop.decision(MAIN, "rejected", "t" * 5000, reasons)], now=T0)
    [drop] = drops(spool)
    [(kept, said)] = fields(drop)
    assert kept["target"] == "t" * 997 + "..."
    assert said == reasons[:20] + ["... and 5 more"]


def test_a_ref_that_is_not_utf8_and_a_nul_in_a_reason_come_back_as_text(spool: str) -> None:
    odd = Update(OLD, NEW, "refs/heads/caf\udce9\x1b[31m")
    audit_drop.push_decided(spool, PUSH, [audit_drop.decision(odd, "would-reject", "", ["a\0b\nforged line"])])
    [drop] = drops(spool)
    [(kept, said)] = fields(drop)
    assert (kept["kind"], kept["ref"], said) == ("push-would-reject", "refs/heads/caf\udce9\x1b[31m",
                                                 ["a\\x00b\nforged line"])


def test_a_push_of_many_refs_is_spread_over_drops_each_within_the_cap(spool: str) -> None:
    reasons = ["r" * 1000] * 20
    decisions = [audit_drop.decision(Update(OLD, NEW, f"refs/heads/b{n}"), "rejected", "x" * 1000, reasons)
                 for n in range(40)]
    names = audit_drop.push_decided(spool, PUSH, decisions, now=T0)
    sizes = [Path(spool, "audit", name).stat().st_size for name in names]
    assert len(names) > 1 and max(sizes) <= audit_drop.MAX_DROP
    found = [r.fields["ref"] for d in drops(spool) for r in d.records]
    assert found == [f"refs/heads/b{n}" for n in range(40)]


def test_an_unknown_outcome_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="outcome must be one of accepted, rejected, would-reject"):
        audit_drop.decision(MAIN, "maybe")


def test_the_hook_side_imports_nothing_post_receive_avoids(spool: str) -> None:
    # post-receive runs after every push with python -I -S and imports no json, re or typing (test_hook_cost.py).
    code = ("import sys; sys.path.insert(0, sys.argv[1])\n"
            "from gitea_hf_hook.spool import audit_drop\n"
            "from gitea_hf_hook.gitea.hook_input import parse_updates\n"
            "[u] = parse_updates(f'{sys.argv[3]} {sys.argv[3]} refs/heads/main\\n')\n"
            "audit_drop.jobs_queued(sys.argv[2], {}, '/srv/acme/bert.git', [(u, '20270115-080000-0000000b')])\n"
            "print(sorted(m for m in ('json', 're', 'typing', 'hashlib', 'subprocess', 'yaml') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-I", "-S", "-c", code, str(ROOT), spool, NEW], capture_output=True,
                          text=True)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "[]\n", "")
    assert len(os.listdir(Path(spool, "audit"))) == 1


# --- the worker's reader, against what Gitea's user could leave there --------------------------------------------

def plant(spool: str, name: str, data: bytes) -> None:
    Path(spool, "audit", name).write_bytes(data)


def test_a_link_is_refused_without_being_followed(spool: str, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("the worker's private file\n")
    os.symlink(secret, Path(spool, "audit", "1-link.drop"))
    [drop] = drops(spool)
    assert (drop.status, drop.problem, drop.sha256) == ("refused", "a symbolic link, which is never followed", "")
    folder = audit_drop.open_folder(spool)
    audit_drop.discard(folder, drop)
    os.close(folder)
    assert os.listdir(Path(spool, "audit")) == [] and secret.read_text() == "the worker's private file\n"


def test_a_fifo_is_refused_without_blocking(spool: str) -> None:
    os.mkfifo(Path(spool, "audit", "1-fifo.drop"))
    [drop] = drops(spool)
    assert (drop.status, drop.problem) == ("refused", "a FIFO, not a drop file")


def test_a_folder_is_refused_and_set_aside_since_it_cannot_be_removed(spool: str) -> None:
    Path(spool, "audit", "1-folder.drop", "inside").mkdir(parents=True)
    [drop] = drops(spool)
    assert (drop.status, drop.problem, drop.is_folder) == ("refused", "a folder, not a drop file", True)
    folder = audit_drop.open_folder(spool)
    audit_drop.discard(folder, drop)
    assert audit_drop.pending(folder, 10) == []
    os.close(folder)
    [kept] = os.listdir(Path(spool, "audit"))
    assert kept.startswith(".refused-1-folder.drop-")


def test_an_oversized_file_is_refused_unread(spool: str) -> None:
    plant(spool, "1-big.drop", audit_drop.MAGIC + b"x" * audit_drop.MAX_DROP)
    [drop] = drops(spool)
    assert (drop.status, drop.problem, drop.sha256) == ("refused", "larger than 262144 bytes, so not a drop file", "")


def test_the_drop_folder_itself_is_never_opened_through_a_link(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    (spool / "elsewhere").mkdir(parents=True)
    os.symlink(spool / "elsewhere", spool / "audit")
    with pytest.raises(NotADirectoryError):  # O_DIRECTORY with O_NOFOLLOW: a link is no folder
        audit_drop.open_folder(str(spool))


RECORD = (b"kind=push-accepted\0time=1800000000.5\0repository=acme/bert\0ref=refs/heads/main\0new=" + NEW.encode()
          + b"\0")


@pytest.mark.parametrize(("data", "problem"), [
    (b"hello", "does not start with the drop header of this version"),
    (audit_drop.MAGIC, "holds no record, or its last field is cut short"),
    (audit_drop.MAGIC + RECORD[:-5], "holds no record, or its last field is cut short"),
    (audit_drop.MAGIC + b"time=1\0" + RECORD, "field 1 (time): comes before the first record's kind"),
    (audit_drop.MAGIC + RECORD + b"token=x\0", "field 6: 'token' is not a field this version knows"),
    (audit_drop.MAGIC + RECORD + b"ref=refs/heads/x\0", "field 6 (ref): appears twice in one record"),
    (audit_drop.MAGIC + RECORD.replace(b"push-accepted", b"push-forged"),
     "record 1: kind 'push-forged' is not one this version knows"),
    (audit_drop.MAGIC + RECORD.replace(b"1800000000.5", b"nan"), "record 1: time: not a time"),
    (audit_drop.MAGIC + RECORD.replace(b"acme/bert", b"acme"), "record 1: repository: must be owner/name"),
    (audit_drop.MAGIC + RECORD.replace(b"refs/heads/main", b"main"), "record 1: ref: must start with refs/"),
    (audit_drop.MAGIC + RECORD.replace(NEW.encode(), b"HEAD"), "record 1: new: must be a full hex object id"),
    (audit_drop.MAGIC + RECORD + b"job=../../x\0", "record 1: job: not a job id"),
    (audit_drop.MAGIC + RECORD.replace(b"repository=acme/bert\0", b""), "record 1: repository: missing"),
    (audit_drop.MAGIC + RECORD + b"target=" + b"t" * 1001 + b"\0", "field 6 (target): longer than 1000 characters"),
    (audit_drop.MAGIC + RECORD + b"reason=r\0" * 22, "field 27: more than 21 reasons in one record"),
])
def test_a_drop_that_is_not_one_this_version_writes_says_what_is_wrong(spool: str, data: bytes, problem: str) -> None:
    plant(spool, "1.drop", data)
    [drop] = drops(spool)
    assert (drop.status, drop.problem, drop.size) == ("malformed", problem, len(data))
    assert len(drop.sha256) == 64


def test_entries_come_in_name_order_and_dotfiles_are_not_drops(spool: str) -> None:
    for name in ("3.drop", ".half-written", "1.drop", "2.drop"):
        plant(spool, name, audit_drop.MAGIC + RECORD)
    folder = audit_drop.open_folder(spool)
    try:
        assert audit_drop.pending(folder, 2) == ["1.drop", "2.drop"]
        assert audit_drop.pending(folder, 10) == ["1.drop", "2.drop", "3.drop"]
    finally:
        os.close(folder)
