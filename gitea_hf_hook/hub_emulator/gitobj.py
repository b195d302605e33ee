"""Git object arithmetic: blob, tree and commit ids, LFS pointers, and the Hub's "is this LFS?" rules.

Ids are computed exactly as git computes them, so an oid the emulator reports for a regular file matches
``git hash-object`` and the client's own ``utils.sha.git_hash``; the client compares these to skip unchanged files.
"""

from __future__ import annotations

import codecs
import fnmatch
import hashlib
from collections.abc import Iterable, Mapping

from .errors import bad_request

#: Regular (non-LFS) files above this size are sent to LFS by preupload and refused by /commit, as on the Hub.
REGULAR_FILE_MAX = 10 * 1024 * 1024

#: What the Hub writes as ``.gitattributes`` in the initial commit of a new repository.
DEFAULT_GITATTRIBUTES = "".join(
    f"{pattern} filter=lfs diff=lfs merge=lfs -text\n"
    for pattern in (
        "*.7z", "*.arrow", "*.bin", "*.bz2", "*.ckpt", "*.ftz", "*.gz", "*.h5", "*.joblib", "*.lfs.*",
        "*.mlmodel", "*.model", "*.msgpack", "*.npy", "*.npz", "*.onnx", "*.ot", "*.parquet", "*.pb",
        "*.pickle", "*.pkl", "*.pt", "*.pth", "*.rar", "*.safetensors", "saved_model/**/*", "*.tar.*",
        "*.tar", "*.tflite", "*.tgz", "*.wasm", "*.xz", "*.zip", "*.zst", "*tfevents*",
    )
)


def git_blob_oid(data: bytes) -> str:
    """Git blob sha1 of ``data`` (``git hash-object``)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    """The Git LFS pointer text git stores in place of an LFS file."""
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def lfs_blob_oid(sha256: str, size: int) -> tuple[str, int]:
    """Git blob sha1 and byte size of the LFS pointer of an object: the ``oid``/``pointerSize`` the tree reports."""
    pointer = lfs_pointer(sha256, size)
    return git_blob_oid(pointer), len(pointer)


def tree_oids(files: Mapping[str, str]) -> dict[str, str]:
    """Git tree sha1 of every directory (``""`` is the root) of a snapshot mapping file path to blob oid."""
    children: dict[str, dict[str, tuple[str, str]]] = {"": {}}
    for path, oid in files.items():
        parts = path.split("/")
        for depth in range(1, len(parts)):
            children.setdefault("/".join(parts[:depth]), {})
        parent = "/".join(parts[:-1])
        children[parent][parts[-1]] = ("100644", oid)
    # Deepest directories first, so a parent always finds its sub-directories already hashed.
    oids: dict[str, str] = {}
    for directory in sorted(children, key=lambda d: d.count("/") + (1 if d else 0), reverse=True):
        entries = children[directory]
        # git sorts tree entries by name, comparing a directory name as if it ended with "/".
        ordered = sorted(entries.items(), key=lambda kv: kv[0] + ("/" if kv[1][0] == "40000" else ""))
        body = b"".join(f"{mode} {name}".encode() + b"\0" + bytes.fromhex(oid) for name, (mode, oid) in ordered)
        oids[directory] = hashlib.sha1(b"tree %d\0" % len(body) + body).hexdigest()
        if directory:
            parent, _, name = directory.rpartition("/")
            children[parent][name] = ("40000", oids[directory])
    return oids


def commit_oid(tree: str, parents: Iterable[str], author: str, timestamp: int, message: str) -> str:
    """Git commit sha1, so commit ids are the 40-hex ids a real git server would give."""
    lines = [f"tree {tree}"] + [f"parent {p}" for p in parents]
    ident = f"{author} <{author}@users.noreply.huggingface.co> {timestamp} +0000"
    text = "\n".join(lines + [f"author {ident}", f"committer {ident}", "", message]) + "\n"
    data = text.encode()
    return hashlib.sha1(b"commit %d\0" % len(data) + data).hexdigest()


def is_binary_sample(sample: bytes, size: int) -> bool:
    """Whether a file's first bytes look binary: a NUL byte, or bytes that are not UTF-8 text.

    A 512-byte sample may end in the middle of a multi-byte character, so an incomplete trailing sequence
    counts as text when the sample is shorter than the file.
    """
    if b"\0" in sample:
        return True
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        decoder.decode(sample, final=len(sample) >= size)
    except UnicodeDecodeError:
        return True
    return False


def lfs_patterns(gitattributes: str) -> list[str]:
    """The patterns a ``.gitattributes`` text assigns ``filter=lfs``."""
    patterns = []
    for line in gitattributes.splitlines():
        fields = line.split()
        if len(fields) >= 2 and not fields[0].startswith("#") and "filter=lfs" in fields[1:]:
            patterns.append(fields[0])
    return patterns


def matches_lfs_pattern(path: str, patterns: Iterable[str]) -> bool:
    """gitattributes matching, simplified: a pattern without ``/`` matches the base name, else the full path."""
    base = path.rsplit("/", 1)[-1]
    for pattern in patterns:
        if "/" in pattern.strip("/"):
            # fnmatch's "*" already crosses "/", so "**/" only needs to tolerate zero directories.
            glob = pattern.lstrip("/")
            if fnmatch.fnmatchcase(path, glob) or fnmatch.fnmatchcase(path, glob.replace("**/", "")):
                return True
        elif fnmatch.fnmatchcase(base, pattern.strip("/")):
            return True
    return False


def check_path(path: str) -> str:
    """Refuse paths the Hub refuses: empty, absolute, ``..``/``.`` segments, and ``.git`` internals."""
    if not isinstance(path, str) or not path or path.startswith("/") or path.endswith("/"):
        raise bad_request(f"Invalid path: {path!r}")
    parts = path.split("/")
    if any(part in ("", ".", "..", ".git") for part in parts) or "\0" in path:
        raise bad_request(f"Invalid path: {path!r}")
    return path
