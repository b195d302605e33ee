"""The spool and its claims: whole jobs only, one holder per job, and locks that die with their process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from gitea_hf_hook import claims, spool

ROOT = Path(__file__).resolve().parent.parent
T0 = float(int(time.time()))  # near the real clock, so file ages and the injected clock agree


def make_job(n: int, *, kind: str = "branch", revision: str = "main", hub_repo: str = "acme/bert-tiny",
             created: float | None = None, **extra: Any) -> dict[str, Any]:
    """A job as post-receive writes it, for push number ``n`` (its commit id is ``n`` in hex)."""
    commit = f"{n:040x}"
    ref = f"refs/heads/{revision}" if kind == "branch" else f"refs/tags/{revision}"
    return {"id": f"20270115-080000-{n:08x}", "created": T0 + n if created is None else created,
            "repo_dir": "/srv/gitea/acme/bert-tiny.git",
            "gitea": {"owner": "acme", "name": "bert-tiny", "repo_id": 7, "pusher": "alice", "pusher_id": 2,
                      "deploy_key_id": 0, "trigger": "", "pr_id": 0},
            "ref": ref, "old": "0" * 40, "new": commit, "commit": commit,
            "target": {"hub_repo": hub_repo, "repo_type": "model", "kind": kind, "name": revision,
                       "revision": revision},
            "attempts": 0, "not_before": 0, **extra}


def python(code: str, *args: str, **kwargs: Any) -> subprocess.Popen[str]:
    """Start ``python -c code args...`` in the project directory."""
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=ROOT, text=True, **kwargs)


@pytest.fixture
def root(tmp_path: Path) -> str:
    path = str(tmp_path / "spool")
    spool.ensure_layout(path)
    return path


def test_a_reader_never_sees_half_a_job(root: str) -> None:
    # A separate process queues 60 jobs of 200 kB each while this one reads every job file it can see.
    writer = python("import sys; from gitea_hf_hook import spool\n"
                    "for n in range(60):\n"
                    "    spool.enqueue(sys.argv[1], {'id': f'job-{n:03d}', 'padding': 'x' * 200_000})\n", root)
    seen: set[str] = set()
    while True:
        running = writer.poll() is None
        for name in spool.job_names(root, "queue"):
            if name not in seen:
                data = Path(root, "queue", name).read_bytes()
                job = json.loads(data)  # a half-written file would not parse
                assert len(job["padding"]) == 200_000
                seen.add(name)
        if not running:
            break
    assert writer.returncode == 0
    assert len(seen) == 60
    assert os.listdir(Path(root, "tmp")) == []


def test_the_hook_side_of_the_spool_does_not_import_filelock() -> None:
    proc = subprocess.run([sys.executable, "-c", "import sys, gitea_hf_hook.spool; print('filelock' in sys.modules)"],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.stdout == "False\n"


@pytest.mark.parametrize(("data", "problem"), [
    (b"{not json", "not valid JSON (Expecting property name enclosed in double quotes: line 1 column 2 (char 1))"),
    (b"[1, 2]", "not a JSON object"),
    (b'{"version": 2, "id": "x"}', "job format version 2 is not the one this worker reads (1); run the same "
                                   "gitea-hf-hook version on the Gitea server and the workers"),
    (b'{"version": 1, "id": "../evil"}', "its id '../evil' does not match its file name x.json"),
    (b'{"version": 1, "id": "x", "target": {"hub_repo": "a/b"}}',
     "its target (hub_repo, repo_type, kind, revision) is missing or incomplete"),
])
def test_a_bad_job_file_says_what_is_wrong(data: bytes, problem: str) -> None:
    with pytest.raises(spool.BadJob) as caught:
        spool.parse_job("x.json", data)
    assert str(caught.value) == problem


def test_a_claim_moves_the_job_to_active_and_records_its_holder(root: str) -> None:
    spool.enqueue(root, make_job(1))
    claim = claims.claim(root, "20270115-080000-00000001.json", T0)
    assert claim is not None
    assert spool.job_names(root, "queue") == []
    assert spool.job_names(root, "active") == ["20270115-080000-00000001.json"]
    lock = claims.lock_path(root, "20270115-080000-00000001")
    assert claims.read_holder(lock) == claims.Holder(socket.gethostname(), os.getpid(), T0)
    assert claims.is_held(lock)
    claim.finish("done", {**make_job(1), "outcome": "published"})
    assert spool.job_names(root, "done") == ["20270115-080000-00000001.json"]
    assert not claims.is_held(lock)
    # A second claim of a job that has moved on finds nothing.
    assert claims.claim(root, "20270115-080000-00000001.json", T0) is None


CLAIM_IN_CHILD = """
import sys
from gitea_hf_hook import claims
claim = claims.claim(sys.argv[1], sys.argv[2], 0.0)
print("claimed" if claim else "taken", flush=True)
sys.stdin.readline()  # hold it until told, or until killed
"""


def test_a_held_job_cannot_be_claimed_by_another_process(root: str) -> None:
    spool.enqueue(root, make_job(1))
    claim = claims.claim(root, "20270115-080000-00000001.json", T0)
    assert claim is not None
    child = python(CLAIM_IN_CHILD, root, "20270115-080000-00000001.json", stdin=subprocess.PIPE,
                   stdout=subprocess.PIPE)
    out, _ = child.communicate("\n", timeout=30)
    assert out == "taken\n"
    assert claims.reclaim(root, T0) == []  # held by this live process: not an orphan
    claim.release()


def test_a_lock_dies_with_its_process_and_the_job_is_reclaimed(root: str) -> None:
    spool.enqueue(root, make_job(1))
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
    assert spool.job_names(root, "queue") == ["20270115-080000-00000001.json"]


def test_a_target_is_locked_by_one_process_at_a_time(root: str) -> None:
    lock = claims.lock_target(root, "abc", T0)
    assert lock is not None
    child = subprocess.run([sys.executable, "-c", "import sys; from gitea_hf_hook import claims; "
                            "print(claims.lock_target(sys.argv[1], 'abc', 0.0) is None)", root],
                           cwd=ROOT, capture_output=True, text=True)
    assert child.stdout == "True\n"
    lock.release()
    again = claims.lock_target(root, "abc", T0)
    assert again is not None
    again.release()


def test_old_lock_files_of_finished_jobs_are_removed(root: str) -> None:
    spool.enqueue(root, make_job(1))
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
