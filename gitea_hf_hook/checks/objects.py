"""What one pushed object holds: its findings, which hold wherever it sits, so a push checks each object once.

An object is a blob, or for a Git LFS pointer the object it names in Gitea's store. Which scanners apply
depends on the content and on the kind of name it is published under (:func:`kind_of`), never on the rest
of the path, so findings are kept per object and kind and reused for every path and ref that holds it.
"""

from __future__ import annotations

import io
import json
import os
import stat
from typing import BinaryIO

from ..config.model import Checks
from ..gitea import lfs
from .budget import MIB, Budget
from .scanners import PICKLE_SUFFIXES, Finding

# Parsing JSON holds the whole document as Python objects: about 28 bytes of memory per input byte at worst
# (a long list of empty lists). Larger files (tokenizers, datasets) are published unparsed.
MAX_JSON = 8 * MIB


def lfs_missing(pointer: lfs.Pointer) -> Finding:
    """One message whether the object is missing, not a regular file or of another size: the pusher learns
    no more than that this push cannot use it (the oid is the pusher's own, from the pointer)."""
    return Finding(f"Git LFS object {pointer.oid[:12]} is not on the server, or does not match its pointer",
                   "run: git lfs push --all origin, then push again")


def kind_of(name: str) -> str:
    """Which name-chosen checks a file gets: ``pickle``, ``safetensors``, ``json`` or ``""``; ``name`` lowercase."""
    if name.endswith(PICKLE_SUFFIXES):
        return "pickle"
    if name.endswith(".safetensors"):
        return "safetensors"
    if name.endswith(".json"):
        return "json"
    return ""


def open_lfs(lfs_root: str, pointer: lfs.Pointer) -> BinaryIO | None:
    """The object a pointer names, when the store holds a regular file of the pointer's size; else None.

    Never through a link, and never a FIFO, which would block: the store is Gitea's user's to write.
    """
    try:
        fd = os.open(lfs.object_path(lfs_root, pointer.oid), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_size != pointer.size:
        os.close(fd)
        return None
    os.set_blocking(fd, True)
    return open(fd, "rb")


class Scanner:
    """The findings of each object of one push, computed once: keyed by blob id or LFS oid, and kind."""

    def __init__(self, checks: Checks, lfs_root: str, budget: Budget) -> None:
        self.checks, self.lfs_root, self.budget = checks, lfs_root, budget
        self._lfs: dict[tuple[str, str], list[Finding]] = {}

    def blob(self, data: bytes, kind: str) -> list[Finding]:
        """The findings of a blob's content, following it into the LFS store when it is a pointer."""
        pointer = lfs.parse_pointer(data)
        if pointer is None:
            return self._content(io.BytesIO(data), len(data), kind, data)
        key = (pointer.oid, kind)
        if key not in self._lfs:
            self._lfs[key] = self._lfs_object(pointer, kind)
        return self._lfs[key]

    def _lfs_object(self, pointer: lfs.Pointer, kind: str) -> list[Finding]:
        f = open_lfs(self.lfs_root, pointer)
        if f is None:
            return [lfs_missing(pointer)] if self.checks.lfs_objects else []
        with f, self.budget.metered(f) as metered:
            return self._content(metered, pointer.size, kind, None)

    def _content(self, f: BinaryIO, size: int, kind: str, data: bytes | None) -> list[Finding]:
        """Every scanner that applies; ``data`` is the content itself when it is a blob held in memory."""
        checks = self.checks
        found: list[Finding] = []
        if checks.pickle != "allow":
            from .scanners.pickles import pickle_format, scan_pickle

            what = pickle_format(f, size)
            if what is not None or kind == "pickle":
                if checks.pickle == "deny":
                    found.append(Finding(f"{what or 'pickle'} files can run code when loaded",
                                         "convert the weights to safetensors"))
                else:
                    f.seek(0)
                    found += scan_pickle(f)
        if kind == "safetensors" and checks.safetensors:
            from .scanners.safetensors import check_safetensors

            f.seek(0)
            found += check_safetensors(f, size)
        if kind == "json" and checks.json and size <= MAX_JSON:
            f.seek(0)
            found += _json(f.read(size))
        if checks.secrets:
            from .scanners.secrets import scan_secrets, scan_secrets_file

            if data is not None:
                found += scan_secrets(data)
            elif size <= checks.lfs_secrets_mb * MIB:
                f.seek(0)
                found += scan_secrets_file(f, size)
        return found


def _json(data: bytes) -> list[Finding]:
    try:
        json.loads(data)
    except RecursionError:
        return [Finding("not valid JSON: it nests too deeply", "flatten the file, or exclude it")]
    except (UnicodeDecodeError, ValueError) as exc:
        where = f" at line {exc.lineno}" if isinstance(exc, json.JSONDecodeError) else ""
        return [Finding(f"not valid JSON{where}", "fix the file, or exclude it")]
    return []
