"""Pickle-bearing files: ``pickle_format`` names them by content, ``scan_pickle`` applies the "allowlist"
policy to them: a file passes only if every pickle a loader could read from it imports and calls nothing but
what ``torch.load(weights_only=True)`` accepts.

Nothing is unpickled. ``pickle_walk`` walks each pickle as CPython's C unpickler reads it (its docstring
lists the reader differences it defends against); ``archives`` reads containers strictly. Which pickles a
file holds is decided as the loaders decide, and by content rather than by name:

- a plain pickle (``pickle.load``, ``numpy.load``'s fallback, torch's first legacy pickle): one pickle at
  offset 0, and nothing after it, since another loader may go on reading there;
- torch's legacy layout: that first pickle is the magic number, then four more pickles (protocol version,
  system info, the object, storage keys) each walked strictly whatever its protocol, then raw storages;
- zip archives (torch's since 1.6, NumPy's ``.npz``): only layouts both zip readers agree on; every member
  whose content is a pickle or an ``.npy`` array, whatever its name, and every ``*.pkl`` member;
- torch's pre-0.4 tar layout: its ``storages`` and ``tensors`` members interleave pickles and raw data, walked
  as torch reads them; every other member that is a pickle; and the tar header read as a pickle;
- ``.npy`` arrays of Python objects: the pickle after the header;
- gzip, bz2, xz, LZMA and zlib streams (joblib's and pandas' compressed pickles): the pickle they hold, and
  nothing after the stream.

Bounds: reads, opcodes and stack are capped (``pickle_walk``), as are members and decompressed sizes; every
failure becomes a Finding, and nothing recurses on the file's structure.
"""

from __future__ import annotations

import io
from typing import BinaryIO

from . import PICKLE_SUFFIXES, Finding, Findings, archives, compressed, shown
from .archives import STORED, Member, NotZip, TarMember, TarProblem, Unreadable, ZipProblem
from .pickle_opcodes import walk
from .pickle_walk import (
    CORRUPT_HINT,
    CRAFTED_HINT,
    EXTENSION,
    INVALID,
    LARGE_HINT,
    MAX_MEMO,
    MAX_OPCODES,
    MAX_PICKLE_BYTES,
    MAX_STACK,
    UNRESOLVABLE,
    WEIGHTS_ONLY_GLOBALS,
    Budget,
    Global,
    Walk,
)

__all__ = [
    "EXTENSION", "INVALID", "MAX_MEMBER_BYTES", "MAX_MEMO", "MAX_OPCODES", "MAX_PICKLE_BYTES", "MAX_STACK",
    "MAX_ZIP_PICKLES", "PICKLE_SUFFIXES", "SNIFF_BYTES", "TORCH_LEGACY_MAGIC", "TRAILING", "UNRESOLVABLE",
    "WEIGHTS_ONLY_GLOBALS", "pickle_format", "scan_pickle",
]

MAX_MEMBER_BYTES = 64 << 20  # one pickle member of an archive, decompressed
MAX_ZIP_PICKLES = 64
SNIFF_BYTES = 16 << 10  # what pickle_format parses of one pickle before calling it one
_COMPRESSED_HEAD = 1 << 10  # what is inflated of a compressed member to tell whether it is a pickle
TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PICKLES = 5
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")  # numpy.load takes an empty archive's end record for a zip
_NPY_MAGIC = b"\x93NUMPY"
_TORCH_TAR = ("storages", "tensors", "pickle")
_PICKLE_MEMBERS = (".pkl", ".pickle", ".pyd")  # names tar-based datasets unpickle
_STORAGE_BYTES = {
    "Double": 8, "Float": 4, "Half": 2, "BFloat16": 2, "Long": 8, "Int": 4, "Short": 2, "Char": 1, "Byte": 1,
    "Bool": 1, "ComplexDouble": 16, "ComplexFloat": 8, "QInt32": 4, "QInt8": 1, "QUInt8": 1, "QUInt4x2": 1,
    "QUInt2x4": 1,
}

TRAILING = "has data after the end of its pickle, which another loader may read"
UNCHECKABLE = "PyTorch tar checkpoint member is not laid out as torch writes it, so it cannot be checked"
ENCRYPTED = "zip member is encrypted, so it cannot be checked"
_DECRYPT_HINT = "push it unencrypted"


def _read_at(f: BinaryIO, offset: int, n: int) -> bytes:
    f.seek(offset)
    return f.read(n)


def _is_magic(value: object) -> bool:
    return type(value) is int and value == TORCH_LEGACY_MAGIC


def _sniff(f: BinaryIO, start: int, end: int, size: int, *, top: bool) -> str | None:
    """Whether the data at ``start`` (``size`` bytes, of which ``f`` holds up to ``end``) is a pickle, parsing
    at most SNIFF_BYTES: it runs code before failing, is refused for crafted framing, is one whole pickle, or
    is a valid pickle that far."""
    w = walk(f, start, end, Budget(SNIFF_BYTES, sniff=True))
    # Framing and other refusals are this walker's strictness, not a loader's failure: it goes on reading.
    if w.acted or (w.error is not None and w.error[0] != INVALID):
        return "pickle"
    if w.error is None:
        if _is_magic(w.value):
            return "legacy PyTorch checkpoint"
        f.seek(start)
        head = f.read(2)
        # Text and tensor data can hold a short pickle ("N." opens a note); a file is taken for one only
        # when the pickle is all of it, or when the file opens with a protocol 2+ header.
        if w.end - start == size or (top and head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")):
            return "pickle"
        return None
    return "pickle" if w.exhausted or (w.eof and end - start < size) else None


def _content(f: BinaryIO, start: int, end: int, size: int, named: bool) -> str | None:
    """'npy', 'pickle' or None for a member's content (``f`` holds up to ``end``, of ``size`` bytes)."""
    if _read_at(f, start, len(_NPY_MAGIC)) == _NPY_MAGIC:
        return "npy"
    if named or _sniff(f, start, end, size, top=False):
        return "pickle"
    return None


def _zip_head(f: BinaryIO, member: Member) -> tuple[BinaryIO, int, int]:
    """Where a member's first bytes can be walked: in place when stored, else a decompressed head."""
    if member.method == STORED:
        return f, member.start, member.start + member.csize
    # Non-pickles fail within bytes; a valid head cut short is taken for a pickle and walked in full.
    head = archives.member_data(f, member, _COMPRESSED_HEAD)
    return io.BytesIO(head), 0, len(head)


def _element_size(args: object) -> int | None:
    """The element size of the storage type in a legacy tar ``storages`` record ``(key, location, type)``."""
    if not (isinstance(args, tuple) and len(args) == 3 and isinstance(args[2], Global) and args[2].allowed):
        return None
    name = args[2].name.rpartition(".")[2]
    return _STORAGE_BYTES.get(name.removesuffix("Storage")) if name.endswith("Storage") else None


class _Scanner:
    """State of one scan_pickle call: findings so far and the work budget shared by all pickles."""

    def __init__(self, f: BinaryIO) -> None:
        self.f = f
        self.findings = Findings("pickle problems", counted=False)
        self.budget = Budget()
        self.pickles = 0

    @property
    def full(self) -> bool:
        return self.findings.full

    def add(self, problem: str, hint: str) -> None:
        self.findings.add(problem, hint)

    def walk(self, f: BinaryIO, start: int, end: int, prefix: str, *, strict: bool = True) -> Walk:
        w = walk(f, start, end, self.budget)
        for problem, hint in w.problems.items():
            self.add(prefix + problem, hint)
        # Not strict (the header of a tar read as a pickle): a loader fails where the walk does, unless the
        # walk stopped on a refusal of its own (framing, size), where a loader goes on reading.
        if w.error is not None and (strict or w.error[0] != INVALID):
            self.add(prefix + w.error[0], w.error[1])
        return w

    def raw(self, f: BinaryIO, start: int, end: int, prefix: str, *, strict: bool = True) -> None:
        """One pickle at ``start`` and nothing after it, or torch's legacy five pickles and raw storages."""
        w = self.walk(f, start, end, prefix, strict=strict)
        if w.error is not None:
            return
        if _is_magic(w.value):
            for _ in range(_LEGACY_PICKLES - 1):
                w = self.walk(f, w.end, end, prefix)
                if w.error is not None:
                    return
            return  # raw storage bytes follow; torch reads them as data
        if w.end < end:
            self.add(prefix + TRAILING, CRAFTED_HINT)

    def npy(self, f: BinaryIO, start: int, end: int, prefix: str, *, top: bool) -> None:
        header = archives.npy_header(f, start, end)
        if isinstance(header, str):
            self.add(prefix + header, LARGE_HINT)
        elif header is not None and header.objects:
            self.raw(f, header.data_start, end, prefix)
        elif top:
            self.add(prefix + INVALID, CORRUPT_HINT)  # no pickle in it: it is not what its name says

    def member(self, f: BinaryIO, start: int, end: int, prefix: str, kind: str) -> None:
        self.pickles += 1
        if self.pickles > MAX_ZIP_PICKLES:
            if self.pickles == MAX_ZIP_PICKLES + 1:
                self.add(f"archive has more than {MAX_ZIP_PICKLES} pickles, too many to check", LARGE_HINT)
            return
        if kind == "npy":
            self.npy(f, start, end, prefix, top=False)
        else:
            self.raw(f, start, end, prefix)

    def zip(self, size: int) -> None:
        try:
            members = archives.zip_members(self.f, size)
        except NotZip:
            self.add("not a valid zip archive", CORRUPT_HINT)
            return
        except ZipProblem as problem:
            self.add(str(problem), CRAFTED_HINT)
            return
        for member in members:
            if self.full:
                return
            prefix = shown(member.name) + ": "
            named = member.raw.lower().endswith(b".pkl")
            try:
                head, start, end = _zip_head(self.f, member)
                kind = _content(head, start, end, member.usize, named)
                if kind is None:
                    if member.flags & archives.ENCRYPTED_BIT:
                        self.add(prefix + ENCRYPTED, _DECRYPT_HINT)
                    continue
                if member.method != STORED:
                    data = archives.member_data(self.f, member, MAX_MEMBER_BYTES)
                    if len(data) > MAX_MEMBER_BYTES:
                        self.add(prefix + f"pickle is over {MAX_MEMBER_BYTES >> 20} MiB, too large to check",
                                 LARGE_HINT)
                        continue
                    head, start, end = io.BytesIO(data), 0, len(data)
            except Unreadable:
                if named:
                    self.add(prefix + "cannot be read from the zip archive", CORRUPT_HINT)
                continue
            self.member(head, start, end, prefix, kind)
        self.none_found()

    def none_found(self) -> None:
        # Named as a pickle (or the caller would not ask) yet holding none: say so, as for any other file.
        if not self.pickles and not self.findings.items:
            self.add(INVALID, CORRUPT_HINT)

    def tar(self, size: int) -> None:
        # pickle.load, and torch on a file object without a descriptor, read the header itself as a pickle.
        self.raw(self.f, 0, size, "", strict=False)
        torch: dict[str, TarMember] = {}
        try:
            for member in archives.tar_members(self.f, size):
                if self.full:
                    return
                prefix = shown(member.name) + ": "
                end = member.start + member.size
                if member.name in _TORCH_TAR:
                    if member.name in torch or not member.regular:
                        self.add(prefix + UNCHECKABLE, CRAFTED_HINT)
                    torch[member.name] = member
                elif member.regular and (kind := _content(self.f, member.start, end, member.size,
                                                          member.name.lower().endswith(_PICKLE_MEMBERS))):
                    self.member(self.f, member.start, end, prefix, kind)
        except TarProblem as problem:
            self.add(str(problem), CRAFTED_HINT if problem.crafted else LARGE_HINT if problem.capped else CORRUPT_HINT)
        for name, member in torch.items():
            if member.regular and not self.full:
                self.pickles += 1
                self.torch_tar(name, member)
        self.none_found()

    def compressed(self, size: int, stream: compressed.Stream) -> None:
        self.raw(self.f, 0, size, "", strict=False)  # pickle.load reads the file as it is
        content = compressed.decompress(self.f, size, stream, MAX_MEMBER_BYTES)
        if content.problem is not None:
            self.add(content.problem, CRAFTED_HINT if content.crafted else CORRUPT_HINT)
        if len(content.data) > MAX_MEMBER_BYTES:
            self.add(f"{stream.name} stream holds over {MAX_MEMBER_BYTES >> 20} MiB, too large to check", LARGE_HINT)
        elif content.problem is None or content.data:
            self.raw(io.BytesIO(content.data), 0, len(content.data), "")

    def torch_tar(self, name: str, member: TarMember) -> None:
        """torch's legacy_load: ``pickle`` is one pickle; ``storages`` and ``tensors`` a count, then per item
        a pickle and raw data whose length the pickle (or the data) gives, and for storages a last pickle."""
        f, prefix, pos, end = self.f, f"{name}: ", member.start, member.start + member.size
        if name == "pickle":
            self.raw(f, pos, end, prefix)
            return
        w = self.walk(f, pos, end, prefix)
        count = w.value
        if w.error is not None:
            return
        if type(count) is not int or count < 0:
            self.add(prefix + UNCHECKABLE, CRAFTED_HINT)
            return
        for _ in range(count):
            w = self.walk(f, w.end, end, prefix)
            if w.error is not None:
                return
            pos = w.end
            if name == "storages":
                element = _element_size(w.value)
                numel = int.from_bytes(_read_at(f, pos, 8), "little", signed=True)
                length = 8 + numel * element if element is not None else -1
            else:
                ndim = int.from_bytes(_read_at(f, pos, 4), "little", signed=True)
                length = 4 + 4 + 16 * ndim + 8 if ndim >= 0 else -1
            if length < 8 or pos + length > end:
                self.add(prefix + (UNCHECKABLE if length < 0 else INVALID), CRAFTED_HINT)
                return
            w = w._replace(end=pos + length)
        if name == "storages":
            w = self.walk(f, w.end, end, prefix)  # the storage views
            if w.error is not None:
                return
        if w.end < end:
            self.add(prefix + TRAILING, CRAFTED_HINT)


def scan_pickle(f: BinaryIO) -> list[Finding]:
    """Check every pickle in ``f`` (a seekable binary file) against the allowlist policy.

    Returns one ``Finding`` per disallowed import, call or state change (each reported once, list capped),
    and findings for data no loader reads safely: not a valid pickle, crafted framing or archive layout,
    trailing data, or too large to check. An empty list means the file passes the allowlist policy.
    """
    scanner = _Scanner(f)
    try:
        size = f.seek(0, io.SEEK_END)
        head = _read_at(f, 0, 512)
        # tarfile checks nothing but the first header's checksum: a zip or an array can be a tar as well.
        tar = archives.is_tar(head)
        if tar:
            scanner.tar(size)
        if head[:4] in _ZIP_MAGICS:
            scanner.zip(size)
        elif head[:6] == _NPY_MAGIC:
            scanner.npy(f, 0, size, "", top=True)
        elif stream := compressed.stream_of(head):
            scanner.compressed(size, stream)
        elif not tar:
            scanner.raw(f, 0, size, "")
    except OSError:
        scanner.add("cannot be read", CORRUPT_HINT)
    return scanner.findings.result()


def _zip_format(f: BinaryIO, size: int) -> str | None:
    try:
        members = archives.zip_members(f, size)
    except NotZip:
        return None  # no zip reader opens it, and it starts like no pickle
    except ZipProblem:
        return "ambiguous zip archive"
    found: str | None = None
    for member in members:
        name = member.raw.lower()
        if name.endswith(b"/data.pkl"):
            return "PyTorch zip checkpoint"
        try:
            kind = _content(*_zip_head(f, member), member.usize, name.endswith(b".pkl"))
        except Unreadable:
            continue
        if kind == "pickle":
            found = "zip archive with pickles"
        elif kind == "npy" and found is None:
            stream, start, end = _zip_head(f, member)
            header = archives.npy_header(stream, start, end)
            if isinstance(header, str) or (header is not None and header.objects):
                found = "NumPy archive with object arrays"
    return found


def _tar_format(f: BinaryIO, size: int) -> str | None:
    try:
        for member in archives.tar_members(f, size):
            if member.name in _TORCH_TAR:
                return "PyTorch tar checkpoint"
            end = member.start + member.size
            if member.regular and _content(f, member.start, end, member.size,
                                           member.name.lower().endswith(_PICKLE_MEMBERS)):
                return "tar archive with pickles"
    except TarProblem as problem:
        return "tar archive that cannot be checked" if problem.capped else None
    return None


def _compressed_format(f: BinaryIO, size: int, stream: compressed.Stream) -> str | None:
    content = compressed.decompress(f, size, stream, _COMPRESSED_HEAD)
    data = content.data[:_COMPRESSED_HEAD]
    whole = 1 << 62 if len(content.data) > _COMPRESSED_HEAD else len(data)  # more there, of unknown size
    found = _sniff(io.BytesIO(data), 0, len(data), whole, top=True)
    return f"{stream.name}-compressed {found}" if found else None


def pickle_format(f: BinaryIO, size: int) -> str | None:
    """A short name of the pickle-bearing format ``f`` (``size`` bytes, seekable) is in, or None if it holds
    no pickle a loader would run: "pickle", "legacy PyTorch checkpoint", "PyTorch zip checkpoint", "zip
    archive with pickles", "PyTorch tar checkpoint", "tar archive with pickles", "NumPy object array",
    "NumPy archive with object arrays", "gzip-compressed pickle" (bz2, xz, lzma, zlib), and, failing closed,
    "ambiguous zip archive", "tar archive that cannot be checked". An encrypted member counts by its raw
    bytes, which is how torch's reader, ignoring the flag, reads it.

    Decided by content, whatever the name, reading a small head, the zip directory and member heads, or the
    tar headers. Text files are never taken for pickles: a pickle must run code before failing, be all of
    the file, open with a protocol 2+ header, or stay valid for SNIFF_BYTES.
    """
    try:
        head = _read_at(f, 0, 512)
        if archives.is_tar(head) and (found := _tar_format(f, size)):
            return found
        if head[:4] in _ZIP_MAGICS:
            return _zip_format(f, size)
        if head[:6] == _NPY_MAGIC:
            header = archives.npy_header(f, 0, size)
            return "NumPy object array" if isinstance(header, str) or (header and header.objects) else None
        if stream := compressed.stream_of(head):
            return _compressed_format(f, size, stream)
        return _sniff(f, 0, size, size, top=True)
    except OSError:
        return None
