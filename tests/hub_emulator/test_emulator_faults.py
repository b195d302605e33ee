"""Fault injection, the request log, counters, and keeping tokens out of every log."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

import httpx2
import pytest
from huggingface_hub import CommitOperationAdd
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

if TYPE_CHECKING:
    from tests.hub_emulator.conftest import StartEmulator
    from tests.support.hub import Hub


def test_503_then_success_is_retried_by_the_client(clean_hub: Hub, repo_id: str) -> None:
    api = clean_hub.api()
    api.create_repo(repo_id)
    clean_hub.fault(method="POST", path="/preupload/", status=503, retry_after=0, times=1)
    info = api.create_commit(repo_id, [CommitOperationAdd("a.txt", b"a")], commit_message="despite 503")

    assert api.model_info(repo_id).sha == info.oid
    preuploads = [(r["status"], r.get("fault", False)) for r in clean_hub.requests() if "/preupload/" in r["path"]]
    assert preuploads == [(503, True), (200, False)]
    assert clean_hub.control("GET", "/_emulator/faults")["faults"] == []


def test_403_on_commit_surfaces_and_changes_nothing(clean_hub: Hub, repo_id: str) -> None:
    api = clean_hub.api()
    api.create_repo(repo_id)
    head = api.model_info(repo_id).sha
    clean_hub.fault(method="POST", path=r"/api/models/.*/commit/", status=403)
    with pytest.raises(HfHubHTTPError) as err:
        api.create_commit(repo_id, [CommitOperationAdd("a.txt", b"a")], commit_message="refused")
    assert err.value.response.status_code == 403
    assert api.model_info(repo_id).sha == head
    # The rule was used up: the same commit now goes through.
    api.create_commit(repo_id, [CommitOperationAdd("a.txt", b"a")], commit_message="accepted")
    assert api.list_repo_files(repo_id) == [".gitattributes", "a.txt"]


def test_dropped_upload_connection_is_retried(clean_hub: Hub, repo_id: str, tmp_path: Path) -> None:
    api = clean_hub.api()
    api.create_repo(repo_id)
    data = bytes(range(256)) * 100
    clean_hub.fault(method="PUT", path="^/lfs-uploads/", drop=True)
    api.upload_file(path_or_fileobj=data, path_in_repo="w.bin", repo_id=repo_id)
    statuses = [r["status"] for r in clean_hub.requests() if r["method"] == "PUT"]
    assert statuses == [None, 200]
    assert Path(api.hf_hub_download(repo_id, "w.bin", cache_dir=tmp_path)).read_bytes() == data


def test_a_commit_whose_answer_is_dropped_is_made_but_never_answered(clean_hub: Hub, repo_id: str) -> None:
    api = clean_hub.api()
    api.create_repo(repo_id)
    head = api.model_info(repo_id).sha
    clean_hub.fault(method="POST", path=r"/api/models/.*/commit/", drop_after=True)
    with pytest.raises(httpx2.RemoteProtocolError, match="^Server disconnected without sending a response.$"):
        api.create_commit(repo_id, [CommitOperationAdd("a.txt", b"a")], commit_message="answer lost")

    # The client never heard of it, yet the commit is on the Hub, on top of the previous head.
    commits = api.list_repo_commits(repo_id)
    assert [c.title for c in commits] == ["answer lost", "initial commit"]
    assert commits[1].commit_id == head
    assert api.list_repo_files(repo_id) == [".gitattributes", "a.txt"]
    commit_posts = [(r["status"], r.get("fault", False)) for r in clean_hub.requests() if "/commit/" in r["path"]]
    assert commit_posts == [(None, True)]  # sent once, by the client, and answered never
    assert clean_hub.stats()["commits"][repo_id] == 1
    assert clean_hub.control("GET", "/_emulator/faults")["faults"] == []


def test_delay_and_persistent_rules(clean_hub: Hub) -> None:
    clean_hub.fault(method="GET", path="^/api/whoami-v2$", delay=0.3, times=-1)
    started = time.monotonic()
    for _ in range(2):
        assert clean_hub.api().whoami()["name"] == "emulator"
    assert time.monotonic() - started >= 0.6
    assert len(clean_hub.control("GET", "/_emulator/faults")["faults"]) == 1
    clean_hub.control("DELETE", "/_emulator/faults")
    assert clean_hub.control("GET", "/_emulator/faults")["faults"] == []


def test_error_code_fault_is_classified(clean_hub: Hub, repo_id: str) -> None:
    api = clean_hub.api()
    api.create_repo(repo_id)
    clean_hub.fault(path=f"/api/models/{repo_id}$", status=404, error_code="RepoNotFound")
    with pytest.raises(RepositoryNotFoundError):
        api.model_info(repo_id)
    assert api.model_info(repo_id).id == repo_id


def test_invalid_fault_and_control_auth(clean_hub: Hub) -> None:
    with pytest.raises(urllib.error.HTTPError) as err:
        clean_hub.control("POST", "/_emulator/faults", {"path": "(", "status": 500})
    assert err.value.code == 400
    with pytest.raises(urllib.error.HTTPError) as err:
        clean_hub.control("POST", "/_emulator/faults", {"path": "x"})
    assert err.value.code == 400
    with pytest.raises(urllib.error.HTTPError) as err:
        clean_hub.control("POST", "/_emulator/faults", {"path": "x", "drop_after": True, "status": 500})
    assert err.value.code == 400
    assert err.value.headers["X-Error-Message"] == ("fault 'drop_after' handles the request, so it cannot go "
                                                    "with 'status' or 'drop'")
    with pytest.raises(urllib.error.HTTPError) as err:
        clean_hub.control("GET", "/_emulator/requests", token="hf_wrong")
    assert err.value.code == 401
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(clean_hub.url + "/_emulator/stats")
    assert err.value.code == 401


def test_tokens_never_reach_logs(start_emulator: StartEmulator) -> None:
    hub = start_emulator("--verbose")
    api = hub.api()
    api.create_repo("emulator/logged")
    api.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id="emulator/logged")
    for token in (hub.token, "hf_WrongTokenValue42"):
        request = urllib.request.Request(f"{hub.url}/api/models/emulator/hf_NameLikeAToken9?t={hub.token}",
                                         headers={"Authorization": f"Bearer {token}"})
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(request)
    log = json.dumps(hub.requests())
    assert hub.stop() == 0
    stderr = hub.stderr_path.read_text()
    assert "/api/models/emulator/hf_***?t=hf_***" in log
    assert "GET /api/models/emulator/hf_***" in stderr
    for text in (log, stderr):
        for secret in (hub.token, hub.other_token, hub.read_token, "hf_WrongTokenValue42", "hf_NameLikeAToken9"):
            assert secret not in text


def test_stats_count_commits_and_lfs_bytes(clean_hub: Hub, repo_id: str) -> None:
    api = clean_hub.api()
    api.create_repo(repo_id, repo_type="dataset")
    before = clean_hub.stats()["lfs_bytes_received"]
    blob = bytes(range(256)) * 40
    api.upload_file(path_or_fileobj=blob, path_in_repo="d.bin", repo_id=repo_id, repo_type="dataset")
    api.upload_file(path_or_fileobj=b"t", path_in_repo="t.txt", repo_id=repo_id, repo_type="dataset")
    stats = clean_hub.stats()
    assert stats["commits"][f"datasets/{repo_id}"] == 2
    assert stats["lfs_bytes_received"] - before == len(blob)
