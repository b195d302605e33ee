"""Commits through the real client: regular and LFS files, multipart, deduplication, deletes, trees."""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from huggingface_hub import CommitOperationAdd, CommitOperationDelete, RepoFile, RepoFolder
from huggingface_hub.errors import HfHubHTTPError, RemoteEntryNotFoundError

if TYPE_CHECKING:
    from tests.support.hub import Hub

MiB = 1024 * 1024


def git_blob(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def pointer(data: bytes) -> bytes:
    sha = hashlib.sha256(data).hexdigest()
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha}\nsize {len(data)}\n".encode()


def write_files(root: Path, files: dict[str, bytes]) -> None:
    for path, data in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(data)


def puts(hub: Hub) -> list[str]:
    return [r["path"] for r in hub.requests() if r["method"] == "PUT"]


@pytest.fixture
def folder(tmp_path: Path) -> tuple[Path, dict[str, bytes]]:
    """A model folder: text, a small binary, a text file over 10 MiB, a *.bin text file, nested folders."""
    files = {
        "README.md": b"---\nlicense: mit\n---\n# A model\n",
        "config.json": json.dumps({"hidden": 8}).encode(),
        "weights/small.dat": bytes(range(256)) * 4,                  # binary sample -> LFS
        "weights/big.txt": b"0123456789abcdef\n" * (650 * 1024),     # 10.6 MiB of text -> LFS by size
        "weights/vocab.bin": b"text, but *.bin is LFS by .gitattributes\n",
        "docs/deep/notes.txt": "naïve café\n".encode(),
        "empty.txt": b"",
    }
    write_files(tmp_path / "model", files)
    return tmp_path / "model", files


def test_upload_folder_regular_and_lfs(clean_hub: Hub, repo_id: str,
                                       folder: tuple[Path, dict[str, bytes]]) -> None:
    path, files = folder
    api = clean_hub.api()
    api.create_repo(repo_id)
    info = api.upload_folder(folder_path=path, repo_id=repo_id, commit_message="Add model")

    assert len(info.oid) == 40
    tree = {f.path: f for f in api.list_repo_tree(repo_id, recursive=True) if isinstance(f, RepoFile)}
    assert sorted(tree) == sorted([".gitattributes", *files])
    lfs_paths = {"weights/small.dat", "weights/big.txt", "weights/vocab.bin"}
    for name, data in files.items():
        entry = tree[name]
        assert entry.size == len(data)
        if name in lfs_paths:
            assert entry.lfs is not None and entry.lfs.sha256 == hashlib.sha256(data).hexdigest()
            assert entry.lfs.size == len(data)
            assert entry.lfs.pointer_size == len(pointer(data))
            assert entry.blob_id == git_blob(pointer(data))
        else:
            assert entry.lfs is None, name
            assert entry.blob_id == git_blob(data)

    # The 10.6 MiB file crossed the 1 MiB multipart threshold: numbered parts, then a completion POST.
    parts = [p for p in puts(clean_hub) if p.rsplit("/", 1)[-1].isdigit()]
    assert len(parts) == math.ceil(len(files["weights/big.txt"]) / (256 * 1024))
    assert clean_hub.stats()["commits"][repo_id] == 1
    assert api.list_repo_commits(repo_id)[0].title == "Add model"


def test_multipart_upload_round_trips(clean_hub: Hub, repo_id: str, tmp_path: Path) -> None:
    data = os.urandom(3 * MiB + 12345)
    (tmp_path / "blob.safetensors").write_bytes(data)
    api = clean_hub.api()
    api.create_repo(repo_id)
    api.upload_file(path_or_fileobj=tmp_path / "blob.safetensors", path_in_repo="blob.safetensors",
                    repo_id=repo_id)

    log = clean_hub.requests()
    part_puts = [r for r in log if r["method"] == "PUT"]
    assert len(part_puts) == math.ceil(len(data) / (256 * 1024)) == 13
    assert all(r["status"] == 200 for r in part_puts)
    completion = [r for r in log if r["method"] == "POST" and r["path"].startswith("/lfs-uploads/")]
    assert len(completion) == 1 and completion[0]["status"] == 200
    downloaded = api.hf_hub_download(repo_id, "blob.safetensors", cache_dir=tmp_path / "cache")
    assert Path(downloaded).read_bytes() == data


def test_stored_lfs_object_is_not_uploaded_again(clean_hub: Hub, repo_id: str, tmp_path: Path) -> None:
    data = os.urandom(300_000)
    api = clean_hub.api()
    api.create_repo(repo_id)
    api.upload_file(path_or_fileobj=data, path_in_repo="a/model.bin", repo_id=repo_id)
    assert len(puts(clean_hub)) == 1

    clean_hub.clear_requests()
    api.upload_file(path_or_fileobj=data, path_in_repo="b/copy.bin", repo_id=repo_id)
    log = clean_hub.requests()
    assert [r["method"] for r in log if r["path"].endswith("/info/lfs/objects/batch")] == ["POST"]
    assert puts(clean_hub) == []
    assert Path(api.hf_hub_download(repo_id, "b/copy.bin", cache_dir=tmp_path / "c")).read_bytes() == data


def test_unchanged_files_make_no_commit(clean_hub: Hub, repo_id: str,
                                        folder: tuple[Path, dict[str, bytes]]) -> None:
    path, _ = folder
    api = clean_hub.api()
    api.create_repo(repo_id)
    first = api.upload_folder(folder_path=path, repo_id=repo_id)
    clean_hub.clear_requests()
    again = api.upload_folder(folder_path=path, repo_id=repo_id)
    assert again.oid == first.oid
    assert clean_hub.stats()["commits"][repo_id] == 1
    log = clean_hub.requests()
    assert not [r for r in log if r["method"] == "PUT" or "/commit/" in r["path"]]


def test_delete_file_and_folder(clean_hub: Hub, repo_id: str) -> None:
    api = clean_hub.api()
    api.create_repo(repo_id)
    api.create_commit(repo_id, [CommitOperationAdd(p, p.encode()) for p in
                                ("keep.txt", "gone.txt", "dir/a.txt", "dir/sub/b.txt", "dirx.txt")],
                      commit_message="add")
    api.create_commit(repo_id, [CommitOperationDelete("gone.txt"), CommitOperationDelete("dir/")],
                      commit_message="delete")
    assert api.list_repo_files(repo_id) == [".gitattributes", "dirx.txt", "keep.txt"]
    with pytest.raises(RemoteEntryNotFoundError):
        api.delete_file("gone.txt", repo_id)
    with pytest.raises(RemoteEntryNotFoundError):
        api.delete_folder("dir", repo_id)


def test_stale_parent_commit_is_refused(clean_hub: Hub, repo_id: str) -> None:
    api = clean_hub.api()
    api.create_repo(repo_id)
    base = api.model_info(repo_id).sha
    api.create_commit(repo_id, [CommitOperationAdd("a.txt", b"a")], commit_message="a", parent_commit=base)
    with pytest.raises(HfHubHTTPError) as err:
        api.create_commit(repo_id, [CommitOperationAdd("b.txt", b"b")], commit_message="b", parent_commit=base)
    assert err.value.response.status_code == 412
    assert api.list_repo_files(repo_id) == [".gitattributes", "a.txt"]


def test_invalid_readme_metadata_is_refused(clean_hub: Hub, repo_id: str) -> None:
    api = clean_hub.api()
    api.create_repo(repo_id)
    with pytest.raises(ValueError, match="Invalid metadata in README.md"):
        api.upload_file(path_or_fileobj=b"---\nlicense: mit\n# never closed\n", path_in_repo="README.md",
                        repo_id=repo_id)


def test_tree_pages_and_oids_match_git(clean_hub: Hub, repo_id: str, tmp_path: Path) -> None:
    files = {f"src/mod{i}/file{j}.py": f"print({i}, {j})\n".encode() for i in range(3) for j in range(3)}
    files.update({"a-b.txt": b"dash sorts before the folder a\n", "a/z.txt": b"z\n",
                  "model.safetensors": os.urandom(2048)})
    api = clean_hub.api()
    api.create_repo(repo_id)
    api.create_commit(repo_id, [CommitOperationAdd(p, d) for p, d in files.items()], commit_message="tree")
    head = api.model_info(repo_id).sha

    listing = list(api.list_repo_tree(repo_id, recursive=True))
    pages = [r for r in clean_hub.requests() if "/tree/" in r["path"]]
    assert len(pages) == math.ceil(len(listing) / 4) > 1

    # Build the same tree with git itself (LFS files as their pointers) and compare every oid.
    work = tmp_path / "git"
    write_files(work, {p: (pointer(d) if p.endswith(".safetensors") else d) for p, d in files.items()})
    gitattributes = api.hf_hub_download(repo_id, ".gitattributes", cache_dir=tmp_path / "cache")
    (work / ".gitattributes").write_bytes(Path(gitattributes).read_bytes())
    subprocess.run(["git", "init", "-q", str(work)], check=True)
    subprocess.run(["git", "-C", str(work), "add", "-A"], check=True)
    tree_id = subprocess.run(["git", "-C", str(work), "write-tree"], check=True, capture_output=True,
                             text=True).stdout.strip()
    ls = subprocess.run(["git", "-C", str(work), "ls-tree", "-r", "-t", tree_id], check=True,
                        capture_output=True, text=True).stdout
    expected = {line.split("\t")[1]: line.split()[2] for line in ls.splitlines()}
    got = {e.path: (e.blob_id if isinstance(e, RepoFile) else e.tree_id) for e in listing}
    assert got == expected
    lfs = next(e for e in listing if e.path == "model.safetensors")
    assert isinstance(lfs, RepoFile) and lfs.lfs is not None
    assert lfs.lfs.sha256 == hashlib.sha256(files["model.safetensors"]).hexdigest()

    top = list(api.list_repo_tree(repo_id))
    assert sorted(e.path for e in top) == [".gitattributes", "a", "a-b.txt", "model.safetensors", "src"]
    sub = list(api.list_repo_tree(repo_id, path_in_repo="src/mod1", revision=head, expand=True))
    assert [e.path for e in sub] == [f"src/mod1/file{j}.py" for j in range(3)]
    assert all(e.last_commit is not None and e.last_commit.oid == head for e in sub)
    assert isinstance(next(e for e in top if e.path == "src"), RepoFolder)


def test_corrupt_lfs_upload_is_refused(clean_hub: Hub, repo_id: str) -> None:
    clean_hub.api().create_repo(repo_id)
    announced = b"the bytes announced"
    oid = hashlib.sha256(announced).hexdigest()
    batch = json.dumps({"operation": "upload", "transfers": ["basic"], "hash_algo": "sha256",
                        "objects": [{"oid": oid, "size": len(announced)}]}).encode()
    status, _, body = http("POST", f"{clean_hub.url}/{repo_id}.git/info/lfs/objects/batch", clean_hub.token, batch)
    assert status == 200
    href = json.loads(body)["objects"][0]["actions"]["upload"]["href"]

    status, _, _ = http("PUT", href, None, b"other bytes arrived")
    assert status == 400
    assert clean_hub.stats()["lfs_uploads_refused"] >= 1

    # A commit naming an object that never arrived is refused, and the branch does not move.
    lines = [{"key": "header", "value": {"summary": "bad", "description": ""}},
             {"key": "lfsFile", "value": {"path": "x.bin", "algo": "sha256", "oid": oid, "size": len(announced)}}]
    ndjson = b"".join(json.dumps(line).encode() + b"\n" for line in lines)
    status, headers, _ = http("POST", f"{clean_hub.url}/api/models/{repo_id}/commit/main", clean_hub.token, ndjson)
    assert status == 400
    assert clean_hub.api().list_repo_files(repo_id) == [".gitattributes"]


def http(method: str, url: str, token: str | None, body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    """A raw request, for what the client never sends on its own (corrupt uploads)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()
