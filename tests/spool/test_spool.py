"""The spool and its claims: whole jobs only, one holder per job, and locks that die with their process."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from gitea_hf_hook.errors import JobError
from gitea_hf_hook.spool import claims, layout
from gitea_hf_hook.spool.job import Outcome, dump, parse
from gitea_hf_hook.spool.state import PublishResult, TargetState
from gitea_hf_hook.spool.state import dump as dump_state
from gitea_hf_hook.spool.state import parse as parse_state
from tests.support.jobs import ROOT, T0, jid, make_job, python


@pytest.fixture
def root(tmp_path: Path) -> str:
    path = str(tmp_path / "spool")
    layout.ensure_layout(path)
    return path


def test_a_reader_never_sees_half_a_job(root: str) -> None:
    # A separate process queues 60 jobs of 200 kB each while this one reads every job file it can see.
    writer = python("import sys; from gitea_hf_hook.spool import layout; from tests.support.jobs import make_job\n"
                    "for n in range(60):\n"
                    "    job = make_job(n)\n"
                    "    layout.enqueue(sys.argv[1], job._replace(request=job.request._replace(repo_dir='x' * 200_000)))\n",
                    root)
    seen: set[str] = set()
    while True:
        running = writer.poll() is None
        for name in layout.job_names(root, "queue"):
            if name not in seen:
                data = Path(root, "queue", name).read_bytes()
                job = parse(name, data)  # a half-written file would not parse
                assert len(job.request.repo_dir) == 200_000
                seen.add(name)
        if not running:
            break
    assert writer.returncode == 0
    assert len(seen) == 60
    assert os.listdir(Path(root, "tmp")) == []


def test_the_hook_side_of_the_spool_does_not_import_filelock() -> None:
    code = "import sys, gitea_hf_hook.spool.layout, gitea_hf_hook.spool.job; print('filelock' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.stdout == "False\n"


def test_a_job_survives_the_round_trip_through_its_file() -> None:
    job = make_job(1).failed_attempt(T0 + 5, "the Hub answered 503")
    job = job._replace(outcome=Outcome("published", T0 + 9, "gw-1", 42, result=PublishResult("c" * 40, "b" * 40)))
    assert parse(jid(1) + ".json", dump(job)) == job


def test_a_job_written_by_the_previous_release_is_read_in_the_new_shape() -> None:
    old = {"version": 1, "id": jid(1), "created": T0, "repo_dir": "/srv/acme/bert.git", "ref": "refs/heads/main",
           "old": "0" * 40, "new": "a" * 40, "commit": "a" * 40, "attempts": 2, "not_before": T0 + 60,
           "gitea": {"owner": "acme", "name": "bert", "repo_id": "7", "pusher": "alice", "pusher_id": "2",
                     "deploy_key_id": "", "trigger": "", "pr_id": "0"},
           "target": {"hub_repo": "acme/bert", "repo_type": "model", "kind": "branch", "name": "main",
                      "revision": "main", "url": "https://huggingface.co/acme/bert"},
           "errors": [{"at": T0 + 1, "message": "the Hub answered 503"}]}
    job = parse(jid(1) + ".json", json.dumps(old).encode())
    assert (job.request.repository, job.commit, job.target.label, job.attempts, job.pushed.pusher) == (
        "acme/bert", "a" * 40, "acme/bert branch main", 2, "alice")


GOOD = json.loads(dump(make_job(1)))


def with_field(path: str, value: object) -> bytes:
    data = json.loads(json.dumps(GOOD))
    *parents, last = path.split(".")
    node = data
    for key in parents:
        node = node[key]
    node[last] = value
    return json.dumps(data).encode()


@pytest.mark.parametrize(("data", "problem"), [
    (b"{not json", "not valid JSON (Expecting property name enclosed in double quotes: line 1 column 2 (char 1))"),
    (b"[1, 2]", "not a JSON object"),
    (with_field("version", 7), "job format version 7 is not one this worker reads (1 or 2)"),
    (with_field("id", "../evil"), "id: '../evil' does not match the file name"),
    (with_field("attempts", "3"), "attempts: must be a whole number (got str)"),
    (with_field("request.commit", ["a"]), "request.commit: must be a string (got list)"),
    (with_field("request.commit", "--output=/etc/token"), "request.commit: must be a full hex object id"),
    (with_field("request.ref", "HEAD"), "request.ref: must be a branch or a tag"),
    (with_field("request.target.kind", "note"), "request.target: kind or repo_type is not one this worker knows"),
    (with_field("request.target.hub_repo", "../x"), "request.target.hub_repo: must be namespace/name"),
    (with_field("request.target.url", "https://evil.example"), "request.target.url: is not a field this version knows"),
    (with_field("pushed", None), "pushed: must be an object (got NoneType)"),
])
def test_a_bad_job_file_says_what_is_wrong_naming_the_file_and_field(data: bytes, problem: str) -> None:
    with pytest.raises(JobError) as caught:
        parse(jid(1) + ".json", data)
    assert caught.value.message == f"job file {jid(1)}.json: {problem}"


def test_a_state_file_is_checked_field_by_field() -> None:
    state = TargetState(make_job(1).target, jid(1), T0, T0 + 5, PublishResult("a" * 40, "b" * 40, ("b" * 40,)))
    assert parse_state("s.json", dump_state(state)) == state
    broken = dump_state(state).replace(b'"uploaded": 0', b'"uploaded": "lots"')
    with pytest.raises(JobError) as caught:
        parse_state("s.json", broken)
    assert caught.value.message == "state file s.json: result.uploaded: must be a whole number (got str)"
    # Its commit ids reach git's command line: an option in their place is refused, whatever the shape around it.
    option = dump_state(state).replace(b'"git_commit": "' + b"a" * 40, b'"git_commit": "--output=/etc/passwd')
    with pytest.raises(JobError) as caught:
        parse_state("s.json", option)
    assert caught.value.message == "state file s.json: result.git_commit: must be a full hex object id"


def test_the_worker_writes_its_own_files_beside_them_never_in_tmp(root: str) -> None:
    """tmp/ is Gitea's user's to write: a temporary file there could be swapped before the rename."""
    before = sorted(os.listdir(os.path.join(root, "tmp")))
    path = layout.write_private(os.path.join(root, "state", "targets"), "t.json", b"{}")
    assert Path(path).read_bytes() == b"{}" and oct(Path(path).stat().st_mode & 0o777) == "0o640"
    assert sorted(os.listdir(os.path.join(root, "tmp"))) == before
    assert os.listdir(os.path.join(root, "state", "targets")) == ["t.json"]


def test_a_job_file_is_read_only_when_it_is_a_small_regular_file(root: str) -> None:
    queue = os.path.join(root, "queue")
    os.symlink("/etc/hostname", os.path.join(queue, "link.json"))
    with pytest.raises(OSError) as link:
        layout.read_entry(queue, "link.json")
    assert link.value.strerror == "Too many levels of symbolic links"
    Path(queue, "huge.json").write_bytes(b" " * (layout.MAX_FILE + 1))
    with pytest.raises(OSError) as huge:
        layout.read_entry(queue, "huge.json")
    assert huge.value.strerror == f"larger than {layout.MAX_FILE} bytes"


def test_a_claim_moves_the_job_to_active_and_records_its_holder(root: str) -> None:
    layout.enqueue(root, make_job(1))
    claim = claims.claim(root, "20270115-080000-00000001.json", T0)
    assert claim is not None
    assert layout.job_names(root, "queue") == []
    assert layout.job_names(root, "active") == ["20270115-080000-00000001.json"]
    lock = claims.lock_path(root, "20270115-080000-00000001")
    assert claims.read_holder(lock) == claims.Holder(socket.gethostname(), os.getpid(), T0)
    assert claims.is_held(lock)
    claim.finish("done", make_job(1)._replace(outcome=Outcome("published", T0, "gw-1", 1)))
    assert layout.job_names(root, "done") == ["20270115-080000-00000001.json"]
    assert not claims.is_held(lock)
    # A second claim of a job that has moved on finds nothing.
    assert claims.claim(root, "20270115-080000-00000001.json", T0) is None


CLAIM_IN_CHILD = """
import sys
from gitea_hf_hook.spool import claims
claim = claims.claim(sys.argv[1], sys.argv[2], 0.0)
print("claimed" if claim else "taken", flush=True)
sys.stdin.readline()  # hold it until told, or until killed
"""


def test_a_held_job_cannot_be_claimed_by_another_process(root: str) -> None:
    layout.enqueue(root, make_job(1))
    claim = claims.claim(root, "20270115-080000-00000001.json", T0)
    assert claim is not None
    child = python(CLAIM_IN_CHILD, root, "20270115-080000-00000001.json", stdin=subprocess.PIPE,
                   stdout=subprocess.PIPE)
    out, _ = child.communicate("\n", timeout=30)
    assert out == "taken\n"
    assert claims.reclaim(root, T0) == []  # held by this live process: not an orphan
    claim.release()


def test_a_lock_dies_with_its_process_and_the_job_is_reclaimed(root: str) -> None:
    layout.enqueue(root, make_job(1))
    child = python(CLAIM_IN_CHILD, root, "20270115-080000-00000001.json", stdin=subprocess.PIPE,
                   stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None and child.stdout.readline() == "claimed\n"
        assert claims.reclaim(root, T0) == []  # alive: its job is not up for grabs
        child.kill()
        child.wait(timeout=30)
    finally:
        child.kill()
    found = claims.reclaim(root, T0 + 5)
    assert [(c.name, c.previous) for c in found] == [
        ("20270115-080000-00000001.json", claims.Holder(socket.gethostname(), child.pid, 0.0))]
    found[0].finish("queue")
    assert layout.job_names(root, "queue") == ["20270115-080000-00000001.json"]


def test_a_target_is_locked_by_one_process_at_a_time(root: str) -> None:
    lock = claims.lock_target(root, "abc", T0)
    assert lock is not None
    child = subprocess.run([sys.executable, "-c", "import sys; from gitea_hf_hook.spool import claims; "
                            "print(claims.lock_target(sys.argv[1], 'abc', 0.0) is None)", root],
                           cwd=ROOT, capture_output=True, text=True)
    assert child.stdout == "True\n"
    lock.release()
    again = claims.lock_target(root, "abc", T0)
    assert again is not None
    again.release()


def test_old_lock_files_of_finished_jobs_are_removed(root: str) -> None:
    layout.enqueue(root, make_job(1))
    for n in (1, 2, 3):
        with claims.holding(claims.lock_path(root, f"20270115-080000-{n:08x}")):
            pass
    old = T0 - 7200
    for n in (1, 2, 3):
        os.utime(claims.lock_path(root, f"20270115-080000-{n:08x}"), (old, old))
    os.utime(claims.lock_path(root, "20270115-080000-00000003"), (T0, T0))  # finished only just now
    assert claims.remove_stale_locks(root, T0, 3600) == 1
    assert sorted(os.listdir(Path(root, "state", "locks"))) == ["job-20270115-080000-00000001.lock",
                                                               "job-20270115-080000-00000003.lock"]


def test_post_receive_queues_only_the_job_prepared_for_exactly_its_update(root: str) -> None:
    mine = make_job(1, repo_dir="/srv/gitea/acme/bert-tiny.git")
    # Same new id and ref in another repository, and the same repository on another branch.
    other_repo = make_job(2, repo_dir="/srv/gitea/acme/other.git", commit=mine.commit)
    other_ref = make_job(3, revision="dev", commit=mine.commit)
    for job in (mine, other_repo, other_ref):
        layout.prepare(root, job, f"hf-publish: queued {job.id}")
    queued = layout.promote(root, mine.request.repo_dir, "refs/heads/main", mine.commit)
    assert queued == [(f"hf-publish: queued {mine.id}", mine.id)]
    assert layout.job_names(root, "queue") == [mine.id + ".json"]
    assert sorted(n for n in os.listdir(Path(root, "tmp")) if n.endswith(".json")) == [
        f"prepared-{mine.commit}-{other_repo.id}.json", f"prepared-{mine.commit}-{other_ref.id}.json"]


def test_a_prepared_job_whose_notice_is_lost_waits_for_the_worker(root: str) -> None:
    job = make_job(1)
    layout.prepare(root, job, "hf-publish: queued")
    os.unlink(Path(root, "tmp", f"prepared-{job.commit}-{job.id}.notice"))
    assert layout.promote(root, job.request.repo_dir, job.request.ref, job.commit) == []
    assert layout.job_names(root, "queue") == []
    assert layout.queue_prepared(root, f"prepared-{job.commit}-{job.id}.json") == job.id
    assert layout.job_names(root, "queue") == [job.id + ".json"]


@pytest.mark.parametrize(("field", "value", "problem"), [
    ("created", "NaN", "created: must be a number from 0 to 17179869184"),
    ("created", "1e300", "created: must be a number from 0 to 17179869184"),
    ("created", "1" + "0" * 400, "created: must be a number from 0 to 17179869184"),
    ("attempts", "-1", "attempts: must be a whole number from 0 to 9007199254740992"),
    ("attempts", "1" + "0" * 400, "attempts: must be a whole number from 0 to 9007199254740992"),
])
def test_numbers_no_job_can_hold_are_refused_not_raised(field: str, value: str, problem: str) -> None:
    # Huge or odd numbers must end as a bad job in failed/, never as an exception that stops the worker.
    good = dump(make_job(1)).decode()
    data = re.sub(rf'"{field}": [^,\n]+', f'"{field}": {value}', good).encode()
    with pytest.raises(JobError) as caught:
        parse(jid(1) + ".json", data)
    assert caught.value.message == f"job file {jid(1)}.json: {problem}"


def test_a_job_prepared_by_the_previous_release_is_still_found_by_its_id() -> None:
    old_name = f"prepared-d814ea377ee63976-{'a' * 40}.{jid(1)}.json"
    assert layout.job_file_name(old_name) == jid(1) + ".json"
    assert layout.job_file_name(f"prepared-{'a' * 40}-{jid(1)}.json") == jid(1) + ".json"


def test_a_stray_prepared_file_name_gives_no_job_name_and_does_not_parse(root: str) -> None:
    assert layout.job_file_name("prepared-x.json") == ""
    with pytest.raises(JobError):
        parse(layout.job_file_name("prepared-x.json"), b"{}")
