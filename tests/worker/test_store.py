"""Gitea's LFS store is Gitea's user's to write: the worker reads regular files only, and checks what it streams."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from gitea_hf_hook.errors import PublishError
from gitea_hf_hook.gitea import lfs
from gitea_hf_hook.worker import store
from gitea_hf_hook.worker.store import Mismatch

CONTENT = b"weights " * 4096


def put(root: Path, content: bytes) -> tuple[str, Path]:
    oid = hashlib.sha256(content).hexdigest()
    path = Path(lfs.object_path(str(root), oid))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return oid, path


def test_an_object_streams_whole_and_checked(tmp_path: Path) -> None:
    oid, _ = put(tmp_path, CONTENT)
    with store.open_object(str(tmp_path), oid, len(CONTENT), "weights.bin") as obj:
        assert obj.sample() == CONTENT[:512] and obj.tell() == 0
        chunks = iter(lambda: obj.read(1000), b"")
        assert b"".join(chunks) == CONTENT
        obj.seek(0)
        assert obj.read() == CONTENT  # the client starts over: checked again


def test_bytes_that_are_not_the_oid_are_never_handed_over_whole(tmp_path: Path) -> None:
    oid, path = put(tmp_path, CONTENT)
    path.write_bytes(CONTENT.replace(b"weights", b"WEIGHTS", 1))  # the same size, other bytes
    with store.open_object(str(tmp_path), oid, len(CONTENT), "weights.bin") as obj:
        first = obj.read(len(CONTENT) - 10)
        assert len(first) == len(CONTENT) - 10
        with pytest.raises(Mismatch) as refused:
            obj.read(100)
        assert obj.mismatch
    assert str(refused.value) == f"weights.bin: the bytes of Gitea's LFS object are not those of oid {oid}"


def test_a_link_in_the_store_is_not_followed(tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text("not for the Hub\n")
    oid = hashlib.sha256(CONTENT).hexdigest()
    path = Path(lfs.object_path(str(tmp_path / "lfs"), oid))
    path.parent.mkdir(parents=True)
    path.symlink_to(secret)
    with pytest.raises(PublishError) as refused:
        store.open_object(str(tmp_path / "lfs"), oid, len(CONTENT), "weights.bin")
    assert refused.value.message == (f"weights.bin: Gitea's LFS object {path} cannot be opened without following a "
                                     "link (Too many levels of symbolic links)")
    # A folder of the store that is a link is not followed either.
    os.unlink(path)
    path.parent.rmdir()
    path.parent.symlink_to(tmp_path)
    with pytest.raises(PublishError):
        store.open_object(str(tmp_path / "lfs"), oid, len(CONTENT), "weights.bin")


def test_an_object_of_another_size_or_kind_is_refused(tmp_path: Path) -> None:
    oid, path = put(tmp_path, CONTENT)
    with pytest.raises(PublishError) as short:
        store.open_object(str(tmp_path), oid, len(CONTENT) + 1, "weights.bin")
    assert short.value.message == (f"weights.bin: Gitea's LFS object {path} has {len(CONTENT)} bytes, the pointer "
                                   f"says {len(CONTENT) + 1}")
    path.unlink()
    os.mkfifo(path)  # would block a reader forever
    with pytest.raises(PublishError) as fifo:
        store.open_object(str(tmp_path), oid, len(CONTENT), "weights.bin")
    assert fifo.value.message == f"weights.bin: Gitea's LFS object {path} is not a regular file"


def test_a_missing_object_names_the_path_and_oid(tmp_path: Path) -> None:
    oid = hashlib.sha256(CONTENT).hexdigest()
    with pytest.raises(PublishError) as missing:
        store.open_object(str(tmp_path), oid, 1, "weights.bin")
    assert missing.value.message == (f"weights.bin is a Git LFS pointer to object {oid}, which is not in Gitea's LFS "
                                     f"store ({lfs.object_path(str(tmp_path), oid)})")
