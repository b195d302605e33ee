"""Git LFS pointer files and Gitea's local LFS content store."""

from __future__ import annotations

import os
import re
from typing import NamedTuple

# The spec allows only these version lines; git-lfs writes pointers well under 200 bytes and refuses to read
# ones of 1024 bytes or more, so anything larger is content.
_VERSIONS = (b"version https://git-lfs.github.com/spec/v1", b"version https://hawser.github.com/spec/v1")
MAX_POINTER_SIZE = 1023
_OID = re.compile(rb"oid sha256:([0-9a-f]{64})\Z")
_SIZE = re.compile(rb"size (0|[1-9][0-9]{0,18})\Z")


class Pointer(NamedTuple):
    """A parsed Git LFS pointer: the content's sha256 and its size in bytes."""

    oid: str
    size: int


def parse_pointer(data: bytes) -> Pointer | None:
    """Parse ``data`` as a Git LFS pointer file, or return None when it is ordinary content."""
    if len(data) > MAX_POINTER_SIZE or not data.startswith(b"version ") or not data.endswith(b"\n"):
        return None
    lines = data[:-1].split(b"\n")
    if lines[0] not in _VERSIONS:
        return None
    oid = size = None
    for line in lines[1:]:
        if (m := _OID.match(line)) is not None:
            oid = m.group(1).decode()
        elif (m := _SIZE.match(line)) is not None:
            size = int(m.group(1))
        elif not line.startswith(b"ext-"):
            return None
    if oid is None or size is None:
        return None
    return Pointer(oid, size)


def object_path(lfs_root: str, oid: str) -> str:
    """Where Gitea's local store keeps the object: ``<root>/<oid[0:2]>/<oid[2:4]>/<oid[4:]>``."""
    return os.path.join(lfs_root, oid[0:2], oid[2:4], oid[4:])

