"""Gitea's LFS store as the worker reads it: regular files only, never through a link, checked as they stream.

The store belongs to Gitea's user, who could plant a link to a token file where an object should be, or change an
object's bytes. So an object is opened with ``O_NOFOLLOW``, and so is each folder below ``gitea.lfs_root`` (the
root itself is the admin's, from the config); it must be a regular file of the pointer's size; and it is read
through :class:`VerifiedObject`, which hashes the bytes as the client uploads them (it reads them once anyway)
and refuses to hand over the last chunk when they are not the oid's.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat

from ..errors import PublishError
from ..gitea import lfs

SAMPLE = 512  # what the client sends the Hub to choose between LFS and regular storage


class Mismatch(OSError):  # an OSError, which the client lets through unchanged
    """The store object's bytes are not those its oid names."""


def _open_beneath(root: str, parts: list[str]) -> int:
    """A descriptor for ``root/parts...``, opened one component at a time and never through a link."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in parts[:-1]:
            child = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = child
        return os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=fd)
    finally:
        os.close(fd)


def open_object(lfs_root: str, oid: str, size: int, shown: str) -> VerifiedObject:
    """The store object ``oid`` for the file ``shown``, open and checked; raises PublishError."""
    path = lfs.object_path(lfs_root, oid)
    try:
        fd = _open_beneath(lfs_root, [oid[0:2], oid[2:4], oid[4:]])
    except FileNotFoundError:
        raise PublishError(f"{shown} is a Git LFS pointer to object {oid}, which is not in Gitea's LFS store "
                           f"({path})", "push the object with git lfs push --all, then push again") from None
    except OSError as exc:
        raise PublishError(f"{shown}: Gitea's LFS object {path} cannot be opened without following a link "
                           f"({exc.strerror})", "the store holds links only when tampered with: remove the link "
                           "and push the object again") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_size != size:
        os.close(fd)
        what = "is not a regular file" if not stat.S_ISREG(info.st_mode) else \
            f"has {info.st_size} bytes, the pointer says {size}"
        raise PublishError(f"{shown}: Gitea's LFS object {path} {what}",
                           "the store object is damaged: push it again with git lfs push --all")
    os.set_blocking(fd, True)
    return VerifiedObject(fd, oid, size, shown)


class VerifiedObject(io.BufferedIOBase):
    """A store object read by the client; the bytes read in order from the start are hashed, and the read that
    would complete a copy whose sha256 is not ``oid`` raises :class:`Mismatch` instead.

    A buffered-IO object because that is what the client accepts as an upload's source."""

    def __init__(self, fd: int, oid: str, size: int, shown: str) -> None:
        super().__init__()
        self._file = os.fdopen(fd, "rb", buffering=0)
        self.oid, self.size, self.shown = oid, size, shown
        self._hash = hashlib.sha256()
        self._hashed = 0  # bytes hashed, from offset 0
        self.mismatch = False

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        return self._file.tell()

    def read(self, size: int | None = -1) -> bytes:
        at = self._file.tell()
        data = self._file.read(self.size - at if size is None or size < 0 else size) or b""
        if not data:
            if at < self.size:  # shrunk since it was opened: the copy would end short
                self.mismatch = True
                raise Mismatch(f"{self.shown}: Gitea's LFS object ends at {at} bytes, the pointer says {self.size}")
            return b""
        if at == 0 and self._hashed:
            self._hash, self._hashed = hashlib.sha256(), 0  # the client starts over (a retry): so do we
        if at != self._hashed:
            raise Mismatch(f"{self.shown}: the client read Gitea's LFS object out of order; nothing is uploaded "
                           "unchecked")
        self._hash.update(data)
        self._hashed += len(data)
        if self._hashed >= self.size and self._hash.hexdigest() != self.oid:
            self.mismatch = True
            raise Mismatch(f"{self.shown}: the bytes of Gitea's LFS object are not those of oid {self.oid}")
        return data

    read1 = read

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        memoryview(buffer)[:len(data)] = data
        return len(data)

    def sample(self) -> bytes:
        """The first bytes, for the client's choice of upload mode; the position does not move."""
        return os.pread(self._file.fileno(), SAMPLE, 0)

    def close(self) -> None:
        self._file.close()
        super().close()


def read_small(lfs_root: str, oid: str, size: int, shown: str) -> bytes:
    """The whole content of a small store object, checked against its oid (for comparing with the Hub)."""
    with open_object(lfs_root, oid, size, shown) as obj:
        data = obj.read()
    if hashlib.sha256(data).hexdigest() != oid:
        raise PublishError(f"{shown}: the bytes of Gitea's LFS object {lfs.object_path(lfs_root, oid)} are not "
                           f"those of oid {oid}", "the store object is damaged or altered: push it again")
    return data
