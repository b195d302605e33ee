"""Downloads through the real client: hf_hub_download and snapshot_download return the bytes uploaded."""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from huggingface_hub import CommitOperationAdd, get_hf_file_metadata, hf_hub_download, hf_hub_url, snapshot_download
from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

if TYPE_CHECKING:
    from tests.support.hub import Hub

FILES = {
    "README.md": b"# card\n",
    "config.json": b'{"a": 1}\n',
    "empty.txt": b"",
    "nested/deeper/data.txt": b"line\n" * 1000,
    "nested/model.safetensors": os.urandom(1_500_000),  # LFS, multipart on this emulator
    "space in name.txt": b"quoted path\n",
}


@pytest.fixture
def published(clean_hub: Hub, repo_id: str) -> str:
    api = clean_hub.api()
    api.create_repo(repo_id)
    api.create_commit(repo_id, [CommitOperationAdd(p, d) for p, d in FILES.items()], commit_message="files")
    return repo_id


def test_hf_hub_download_is_byte_identical(clean_hub: Hub, published: str, tmp_path: Path) -> None:
    for name, data in FILES.items():
        path = hf_hub_download(published, name, endpoint=clean_hub.url, token=clean_hub.token,
                               cache_dir=tmp_path / "cache")
        assert Path(path).read_bytes() == data, name


def test_snapshot_download_is_byte_identical(clean_hub: Hub, published: str, tmp_path: Path) -> None:
    target = tmp_path / "snapshot"
    snapshot_download(published, endpoint=clean_hub.url, token=clean_hub.token, local_dir=target,
                      cache_dir=tmp_path / "cache")
    got = {str(p.relative_to(target)): p.read_bytes() for p in target.rglob("*")
           if p.is_file() and ".cache" not in p.parts}
    assert got == {**FILES, ".gitattributes": got[".gitattributes"]}


def test_download_by_tag_and_commit(clean_hub: Hub, published: str, tmp_path: Path) -> None:
    api = clean_hub.api()
    old = api.model_info(published).sha
    assert old is not None
    api.create_tag(published, tag="v1")
    api.create_commit(published, [CommitOperationAdd("config.json", b'{"a": 2}\n')], commit_message="bump")
    for revision in ("v1", old):
        path = api.hf_hub_download(published, "config.json", revision=revision, cache_dir=tmp_path / revision)
        assert Path(path).read_bytes() == FILES["config.json"]
    latest = api.hf_hub_download(published, "config.json", cache_dir=tmp_path / "main")
    assert Path(latest).read_bytes() == b'{"a": 2}\n'


def test_file_metadata_headers(clean_hub: Hub, published: str) -> None:
    head = clean_hub.api().model_info(published).sha
    lfs = get_hf_file_metadata(hf_hub_url(published, "nested/model.safetensors", endpoint=clean_hub.url),
                               token=clean_hub.token)
    assert lfs.commit_hash == head
    assert lfs.etag == hashlib.sha256(FILES["nested/model.safetensors"]).hexdigest()
    assert lfs.size == len(FILES["nested/model.safetensors"])
    regular = get_hf_file_metadata(hf_hub_url(published, "config.json", endpoint=clean_hub.url),
                                   token=clean_hub.token)
    data = FILES["config.json"]
    assert regular.etag == hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
    assert regular.size == len(data)


def test_range_request(clean_hub: Hub, published: str) -> None:
    url = hf_hub_url(published, "nested/deeper/data.txt", endpoint=clean_hub.url)
    request = urllib.request.Request(url, headers={"Range": "bytes=5-9"})
    with urllib.request.urlopen(request) as response:
        assert response.status == 206
        assert response.read() == FILES["nested/deeper/data.txt"][5:10]


def test_public_repo_downloads_anonymously(clean_hub: Hub, published: str, tmp_path: Path) -> None:
    path = hf_hub_download(published, "config.json", endpoint=clean_hub.url, token=False, cache_dir=tmp_path)
    assert Path(path).read_bytes() == FILES["config.json"]


def test_private_repo_needs_token(clean_hub: Hub, repo_id: str, tmp_path: Path) -> None:
    api = clean_hub.api()
    api.create_repo(repo_id, repo_type="dataset", private=True)
    api.upload_file(path_or_fileobj=b"secret\n", path_in_repo="data.csv", repo_id=repo_id, repo_type="dataset")
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download(repo_id, "data.csv", repo_type="dataset", endpoint=clean_hub.url, token=False,
                        cache_dir=tmp_path / "anon")
    path = hf_hub_download(repo_id, "data.csv", repo_type="dataset", endpoint=clean_hub.url,
                           token=clean_hub.token, cache_dir=tmp_path / "auth")
    assert Path(path).read_bytes() == b"secret\n"


def test_missing_file_and_revision(clean_hub: Hub, published: str, tmp_path: Path) -> None:
    api = clean_hub.api()
    with pytest.raises(EntryNotFoundError):
        api.hf_hub_download(published, "nope.txt", cache_dir=tmp_path)
    with pytest.raises(RevisionNotFoundError):
        api.hf_hub_download(published, "config.json", revision="no-branch", cache_dir=tmp_path)
    assert api.file_exists(published, "config.json") is True
    assert api.file_exists(published, "nope.txt") is False
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(hf_hub_url(published, "nested", endpoint=clean_hub.url))
    assert err.value.code == 404 and err.value.headers["X-Error-Code"] == "EntryNotFound"
