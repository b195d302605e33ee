"""The process contract: one listening line, clean exit on signals, and state that survives a restart."""

from __future__ import annotations

import re
import signal
from pathlib import Path
from typing import TYPE_CHECKING

from huggingface_hub import CommitOperationAdd

if TYPE_CHECKING:
    from tests.hub_emulator.conftest import StartEmulator


def test_listening_line_and_clean_exit(start_emulator: StartEmulator) -> None:
    hub = start_emulator()
    assert re.fullmatch(r"hub-emulator listening on http://127\.0\.0\.1:[1-9][0-9]*", hub.banner)
    assert hub.api().whoami()["name"] == "emulator"
    assert hub.stop() == 0
    assert hub.trailing_stdout == b""  # exactly one line on stdout


def test_sigint_exits_cleanly(start_emulator: StartEmulator) -> None:
    hub = start_emulator()
    hub.process.send_signal(signal.SIGINT)
    assert hub.process.wait(timeout=15) == 0


def test_state_survives_restart(start_emulator: StartEmulator, tmp_path: Path) -> None:
    data_dir = tmp_path / "hub-data"
    first = start_emulator(data_dir=data_dir)
    api = first.api()
    api.create_repo("emulator/durable")
    api.create_repo("emulator/durable", repo_type="dataset", private=True)
    weights = bytes(range(256)) * 1000
    commit = api.create_commit("emulator/durable", [CommitOperationAdd("w.bin", weights),
                                                    CommitOperationAdd("notes/a.txt", b"a\n")],
                               commit_message="before restart")
    api.create_tag("emulator/durable", tag="v1")
    api.create_branch("emulator/durable", branch="dev")
    tree_before = [(f.path, getattr(f, "blob_id", None)) for f in api.list_repo_tree("emulator/durable",
                                                                                        recursive=True)]
    assert first.stop() == 0

    second = start_emulator(data_dir=data_dir)
    assert second.stats()["repos"] == 2
    api = second.api()
    assert api.model_info("emulator/durable").sha == commit.oid
    assert api.dataset_info("emulator/durable").private is True
    refs = api.list_repo_refs("emulator/durable")
    assert {b.name for b in refs.branches} == {"main", "dev"}
    assert [(t.name, t.target_commit) for t in refs.tags] == [("v1", commit.oid)]
    assert [c.title for c in api.list_repo_commits("emulator/durable")] == ["before restart", "initial commit"]
    assert [(f.path, getattr(f, "blob_id", None)) for f in api.list_repo_tree("emulator/durable",
                                                                                recursive=True)] == tree_before
    path = api.hf_hub_download("emulator/durable", "w.bin", cache_dir=tmp_path / "cache")
    assert Path(path).read_bytes() == weights

    # The LFS object is still stored: re-adding it uploads nothing, and history continues from the old head.
    second.clear_requests()
    after = api.create_commit("emulator/durable", [CommitOperationAdd("copy.bin", weights)],
                              commit_message="after restart", parent_commit=commit.oid)
    assert not [r for r in second.requests() if r["method"] == "PUT"]
    assert [c.commit_id for c in api.list_repo_commits("emulator/durable")][:2] == [after.oid, commit.oid]
    assert second.stop() == 0
