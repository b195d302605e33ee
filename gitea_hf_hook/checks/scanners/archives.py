"""Containers that may hold pickles: zip archives, tar archives and NumPy ``.npy`` headers, read as their
loaders read them, with bounded work (end record, central directory, member headers; never member data).

Zip archives are read by two parsers that disagree on malformed input: torch's (miniz) takes the central
directory's offset as written and looks names up case-insensitively; Python's zipfile (numpy's ``.npz``)
derives the directory's start from the end record's position and so tolerates data before the archive,
keeps the last of two same-named members, and refuses some flag bits torch ignores. Rather than model both,
``zip_members`` accepts only a layout both read the same way: one end record, ending the file; the
directory right before it (or its zip64 records); members laid end to end from offset 0 up to the
directory, each local header agreeing with its directory entry (name, flags, method, sizes); unique names,
without case and NUL. Every byte is then accounted for, so no second directory, hidden member or prefix can
hide a pickle, and the caller decides by content which members are pickles, whatever their names.

Tar archives are read with Python's tarfile, the very reader torch's pre-0.4 loader and tar-based datasets
use, through a file wrapper that caps each read so a forged header cannot make it allocate much.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, BinaryIO, NamedTuple

# Every pushed file is sniffed, and few are archives: the readers (zipfile, tarfile, ast, tokenize, struct and
# the decompressors, ~8 ms of imports on a push measured in milliseconds) are imported inside the functions
# that handle a file whose head says it is theirs.

MAX_ZIP_MEMBERS = 100_000
MAX_CD_BYTES = 32 << 20
MAX_TAR_MEMBERS = 100_000
MAX_TAR_READ = 1 << 20  # a tar header or a pax/GNU extended header
MAX_NPY_HEADER = 64 << 10

# struct formats and their sizes
_EOCD, _EOCD_SIZE = "<4s4H2LH", 22
_LOCATOR, _LOCATOR_SIZE = "<4sLQL", 20
_EOCD64, _EOCD64_SIZE = "<4sQ2H2L4Q", 56
_CENTRAL, _CENTRAL_SIZE = "<4s4B4HL2L5H2L", 46
_LOCAL, _LOCAL_SIZE = "<4s2B4HL2L2H", 30
_U32, _U16 = 0xFFFF_FFFF, 0xFFFF
_DESCRIPTOR_BIT, _UTF8_BIT, ENCRYPTED_BIT = 0x08, 0x800, 0x01
STORED, _DEFLATED, _BZIP2, _LZMA = 0, 8, 12, 14  # zipfile's ZIP_* method numbers
_NPY_MAGIC = b"\x93NUMPY"


class ZipProblem(Exception):
    """The archive is not one both zip readers read the same way; the message says why."""


class NotZip(Exception):
    """No end record: no zip reader opens it."""


class Unreadable(Exception):
    """A member's data cannot be decompressed (unknown method, corrupt stream)."""


class Member(NamedTuple):
    name: str  # as zipfile decodes it, for messages only
    raw: bytes
    method: int
    flags: int
    start: int  # offset of the member's data
    csize: int
    usize: int


def _read_at(f: BinaryIO, offset: int, n: int) -> bytes:
    f.seek(offset)
    return f.read(n)


def _unpack(fmt: str, data: bytes) -> tuple[Any, ...]:
    import struct  # struct caches the compiled format

    return struct.unpack(fmt, data)


def _extra(extra: bytes) -> dict[int, bytes]:
    fields: dict[int, bytes] = {}
    while extra:
        if len(extra) < 4:
            raise ZipProblem("zip archive has a corrupt extra field")
        kind, length = _unpack("<HH", extra[:4])
        if length + 4 > len(extra) or kind in fields:
            raise ZipProblem("zip archive has a corrupt extra field")
        fields[kind], extra = extra[4:4 + length], extra[4 + length:]
    return fields


def _zip64(fields: dict[int, bytes], values: list[int], wide: list[bool]) -> list[int]:
    """Replace the 32-bit placeholders flagged in ``wide`` by the zip64 extra field's values, in order."""
    if not any(wide):
        return values
    data = fields.get(0x0001, b"")
    out = list(values)
    for i, flag in enumerate(wide):
        if flag:
            if len(data) < 8:
                raise ZipProblem("zip archive is missing a zip64 size or offset")
            out[i], data = int.from_bytes(data[:8], "little"), data[8:]
    return out


def _end(f: BinaryIO, size: int) -> tuple[int, int, int]:
    """(entries, directory offset, directory end) from the end records, which must close the file."""
    tail_len = min(size, _EOCD_SIZE + 0xFFFF)
    tail = _read_at(f, size - tail_len, tail_len)
    at = tail.rfind(b"PK\x05\x06")  # both readers take the last one that fits
    if at < 0:
        raise NotZip
    if at + _EOCD_SIZE > len(tail):  # zipfile gives up on a record cut short; torch's reader looks further back
        if tail.rfind(b"PK\x05\x06", 0, len(tail) - _EOCD_SIZE + 1) >= 0:
            raise ZipProblem("zip archive has more than one end record")
        raise NotZip
    _, disk, cd_disk, here, total, cd_size, cd_offset, comment = _unpack(_EOCD, tail[at:at + _EOCD_SIZE])
    pos = size - tail_len + at
    if pos + _EOCD_SIZE + comment != size:
        raise ZipProblem("zip archive has data after its end record")
    locator = _read_at(f, pos - _LOCATOR_SIZE, _LOCATOR_SIZE) if pos >= _LOCATOR_SIZE else b""
    if locator[:4] != b"PK\x06\x07":
        if _U32 in (cd_size, cd_offset) or _U16 in (disk, cd_disk, here, total):
            raise ZipProblem("zip archive is missing its zip64 end record")
        cd_end = pos
    else:
        _, z64_disk, z64_offset, disks = _unpack(_LOCATOR, locator)
        cd_end = pos - _LOCATOR_SIZE - _EOCD64_SIZE
        record = _read_at(f, cd_end, _EOCD64_SIZE) if cd_end >= 0 else b""
        if z64_disk or disks > 1 or z64_offset != cd_end or len(record) != _EOCD64_SIZE:
            raise ZipProblem("zip archive has a misplaced zip64 end record")
        sig, length, _, _, disk, cd_disk, here, total, cd_size, cd_offset = _unpack(_EOCD64, record)
        if sig != b"PK\x06\x06" or length != _EOCD64_SIZE - 12:
            raise ZipProblem("zip archive has a misplaced zip64 end record")
    if disk or cd_disk or here != total:
        raise ZipProblem("zip archive spans several disks")
    # zipfile finds the directory at cd_end - cd_size, torch at cd_offset: they must agree.
    if cd_offset + cd_size != cd_end:
        raise ZipProblem("zip archive's directory is not where its end record says")
    if total > MAX_ZIP_MEMBERS or cd_size > MAX_CD_BYTES:
        raise ZipProblem(f"zip archive has more than {MAX_ZIP_MEMBERS:,} members, too many to check")
    return total, cd_offset, cd_end


def _directory(f: BinaryIO, total: int, cd_offset: int, cd_end: int) -> list[tuple[int, Member, int]]:
    """(local header offset, member, crc) per directory entry."""
    data = _read_at(f, cd_offset, cd_end - cd_offset)
    entries: list[tuple[int, Member, int]] = []
    names: set[bytes] = set()
    at = 0
    for _ in range(total):
        if at + _CENTRAL_SIZE > len(data):
            raise ZipProblem("zip archive's directory is truncated")
        fields = _unpack(_CENTRAL, data[at:at + _CENTRAL_SIZE])
        flags, method, crc, csize, usize, nlen, elen, clen, disk, offset = (
            fields[5], fields[6], fields[9], fields[10], fields[11], fields[12], fields[13], fields[14],
            fields[15], fields[18])
        start = at + _CENTRAL_SIZE
        raw, extra = data[start:start + nlen], data[start + nlen:start + nlen + elen]
        if fields[0] != b"PK\x01\x02" or start + nlen + elen + clen > len(data) or disk not in (0, _U16):
            raise ZipProblem("zip archive's directory is corrupt")
        usize, csize, offset = _zip64(_extra(extra), [usize, csize, offset],
                                      [usize == _U32, csize == _U32, offset == _U32])
        key = raw.lower()  # torch's reader looks names up without case
        if key in names or b"\x00" in raw:
            raise ZipProblem("zip archive has two members with the same name")
        names.add(key)
        name = raw.decode("utf-8" if flags & _UTF8_BIT else "cp437", "replace")
        entries.append((offset, Member(name, raw, method, flags, 0, csize, usize), crc))
        at = start + nlen + elen + clen
    if at != len(data):
        raise ZipProblem("zip archive's directory has data its end record does not count")
    return entries


def _descriptor_fits(gap: bytes, crc: int, csize: int, usize: int) -> bool:
    if gap[:4] == b"PK\x07\x08":
        gap = gap[4:]
    if len(gap) == 12:
        return _unpack("<3L", gap) == (crc, csize, usize)
    return len(gap) == 20 and _unpack("<LQQ", gap) == (crc, csize, usize)


def zip_members(f: BinaryIO, size: int) -> list[Member]:
    """The members of the zip archive ``f``, in file order; raises NotZip or ZipProblem."""
    total, cd_offset, cd_end = _end(f, size)
    entries = sorted(_directory(f, total, cd_offset, cd_end), key=lambda entry: entry[0])
    members: list[Member] = []
    expected = 0  # members must be laid end to end from the first byte
    for i, (offset, member, crc) in enumerate(entries):
        if offset != expected:
            raise ZipProblem("zip archive has data before or between its members")
        header = _read_at(f, offset, _LOCAL_SIZE)
        if len(header) != _LOCAL_SIZE:
            raise ZipProblem("zip archive's member headers are truncated")
        sig, _, _, flags, method, _, _, lcrc, lcsize, lusize, nlen, elen = _unpack(_LOCAL, header)
        rest = f.read(nlen + elen)
        if sig != b"PK\x03\x04" or len(rest) != nlen + elen:
            raise ZipProblem("zip archive's member headers are corrupt")
        if rest[:nlen] != member.raw or flags != member.flags or method != member.method:
            raise ZipProblem("zip member headers differ from the archive's directory")
        if not flags & _DESCRIPTOR_BIT:
            lusize, lcsize = _zip64(_extra(rest[nlen:]), [lusize, lcsize], [lusize == _U32, lcsize == _U32])
            if (lcrc, lcsize, lusize) != (crc, member.csize, member.usize):
                raise ZipProblem("zip member headers differ from the archive's directory")
        if method == STORED and member.csize != member.usize:
            raise ZipProblem("zip member headers differ from the archive's directory")
        start = offset + _LOCAL_SIZE + nlen + elen
        end = start + member.csize
        following = entries[i + 1][0] if i + 1 < len(entries) else cd_offset
        if flags & _DESCRIPTOR_BIT:
            gap = _read_at(f, end, following - end) if 0 <= following - end <= 24 else b""
            if not _descriptor_fits(gap, crc, member.csize, member.usize):
                raise ZipProblem("zip archive has data before or between its members")
            end = following
        members.append(member._replace(start=start))
        expected = end
    if expected != cd_offset:
        raise ZipProblem("zip archive has data before or between its members")
    return members


def member_data(f: BinaryIO, member: Member, limit: int) -> bytes:
    """Up to ``limit`` + 1 bytes of the member's content, decompressed (one more tells it is over the limit).

    Output is capped per call (zlib, bz2) or input is fed in small pieces (LZMA, whose zipfile decompressor
    takes no cap), so a bomb costs no more than ``limit``."""
    if member.method == STORED:
        return _read_at(f, member.start, min(member.csize, limit + 1))
    if member.method not in (_DEFLATED, _BZIP2, _LZMA):
        raise Unreadable
    f.seek(member.start)
    left, out, pending = member.csize, bytearray(), b""
    errors: tuple[type[Exception], ...] = (OSError, EOFError, ValueError)  # what bz2 raises on corrupt data
    try:
        if member.method == _DEFLATED:
            import zlib

            inflate, errors = zlib.decompressobj(-15), (*errors, zlib.error)
        elif member.method == _BZIP2:
            import bz2

            unbzip = bz2.BZ2Decompressor()
        else:
            import lzma
            import struct
            import zipfile  # its LZMADecompressor reads the properties header zip puts before the stream

            errors = (*errors, lzma.LZMAError, struct.error)  # struct: a properties header cut short
            unlzma = zipfile.LZMADecompressor()  # type: ignore[attr-defined]
        while len(out) <= limit:
            room = limit + 1 - len(out)
            if member.method == _BZIP2 and not unbzip.needs_input:
                out += unbzip.decompress(b"", room)  # what it holds from the last piece
                continue
            if not pending:
                pending = f.read(min(64 << 10, left))
                left -= len(pending)
                if not pending:
                    break
            if member.method == _DEFLATED:
                out += inflate.decompress(pending, room)
                pending = inflate.unconsumed_tail
                done = inflate.eof
            elif member.method == _BZIP2:
                out += unbzip.decompress(pending, room)
                pending, done = b"", unbzip.eof
            else:
                out += unlzma.decompress(pending[:1024])
                pending, done = pending[1024:], unlzma.eof
            if done:
                break
    except errors as exc:
        raise Unreadable from exc
    return bytes(out[:limit + 1])


# --- tar ------------------------------------------------------------------------------------------------


class TarProblem(Exception):
    """The archive could not be listed; ``capped``: a bound stopped it where tarfile itself would go on."""

    def __init__(self, problem: str, *, capped: bool = False, crafted: bool = False) -> None:
        super().__init__(problem)
        self.capped, self.crafted = capped or crafted, crafted


class TarMember(NamedTuple):
    name: str
    regular: bool  # a plain file whose data lies at ``start`` (not a link, device or sparse file)
    start: int
    size: int


class _Capped:
    """A file for tarfile that refuses single reads over MAX_TAR_READ (a forged pax header size)."""

    def __init__(self, f: BinaryIO) -> None:
        self._f = f

    def read(self, n: int = -1) -> bytes:
        if n < 0 or n > MAX_TAR_READ:
            raise TarProblem("tar archive has an extended header too large to check", capped=True)
        return self._f.read(n)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._f.seek(offset, whence)

    def tell(self) -> int:
        return self._f.tell()


_TAR_BLOCK = 512
_HIGH_BYTES = bytes(range(0x80, 0x100))


def _checksum_holds(block: bytes) -> bool:
    """tarfile's own first test of a header (``nti`` of the checksum field against ``calc_chksums``), done
    here so that tarfile is imported only for a file that passes it; rejects nothing tarfile accepts."""
    if len(block) != _TAR_BLOCK or not block.strip(b"\x00"):
        return False
    field = block[148:156]
    if field[0] in (0o200, 0o377):  # base-256
        stored = int.from_bytes(field[1:], "big")
        if field[0] == 0o377:
            stored -= 256 ** 7
    else:
        try:
            text = field.split(b"\x00", 1)[0].decode("ascii")
            stored = int(text.strip() or "0", 8)
        except ValueError:
            return False
    rest = block[:148] + block[156:]
    unsigned = 256 + sum(rest)  # the checksum field counts as eight spaces
    high = len(rest) - len(rest.translate(None, _HIGH_BYTES))
    return stored in (unsigned, unsigned - 256 * high)  # tarfile accepts the signed sum too


def is_tar(head: bytes) -> bool:
    """Whether tarfile would open a file starting with ``head``: its first header's checksum holds."""
    if not _checksum_holds(head[:_TAR_BLOCK]):
        return False
    import tarfile

    try:
        tarfile.TarInfo.frombuf(head[:tarfile.BLOCKSIZE], "utf-8", "surrogateescape")
    except (tarfile.TarError, ValueError, OverflowError):
        return False
    return True


def _zeros_after(f: BinaryIO, offset: int, size: int) -> bool:
    """Whether nothing but the zero padding tar writers add (records of 10 KiB) follows ``offset``."""
    if size - offset > 2 * 10240:
        return False
    f.seek(offset)
    return not f.read(size - offset).strip(b"\x00")


def tar_members(f: BinaryIO, size: int) -> Iterator[TarMember]:
    """The members tarfile lists, in order; raises TarProblem where it stops being safe to go on."""
    import struct
    import tarfile

    f.seek(0)
    try:
        with tarfile.open(fileobj=_Capped(f), mode="r:") as tar:  # type: ignore[call-overload]
            for count in range(MAX_TAR_MEMBERS + 1):
                info = tar.next()
                tar.members.clear()  # tarfile keeps every member; only the current one matters here
                if info is None:
                    # tarfile stops at the first zero or invalid block; with ignore_zeros a reader goes on.
                    if not _zeros_after(f, tar.offset, size):
                        raise TarProblem("tar archive has data after its end, which some readers read on",
                                         crafted=True)
                    return
                if count == MAX_TAR_MEMBERS:
                    raise TarProblem(f"tar archive has more than {MAX_TAR_MEMBERS:,} members, too many to check",
                                     capped=True)
                yield TarMember(info.name, info.isreg() and not info.issparse(), info.offset_data, info.size)
    except (tarfile.TarError, EOFError, OSError, ValueError, OverflowError, UnicodeError, struct.error) as exc:
        raise TarProblem("not a valid tar archive") from exc


# --- NumPy ------------------------------------------------------------------------------------------------


class NpyHeader(NamedTuple):
    objects: bool  # the array holds Python objects: a pickle follows the header
    data_start: int


# Type strings np.save writes for arrays without objects; anything else is taken to hold them.
# Compiled (and cached) by re on the first array read, not on import.
_PLAIN_DTYPE = r"[<>|=]?(?:[biufcSUVa?]\d*|[mM]8?(?:\[\d*[a-zA-Z]+\])?)"


def _has_objects(descr: object) -> bool:
    pending, seen = [descr], 0
    while pending:
        seen += 1
        item = pending.pop()
        if isinstance(item, str):
            if not re.fullmatch(_PLAIN_DTYPE, item):
                return True
        elif isinstance(item, tuple) and len(item) >= 2:  # a subarray: (dtype, shape)
            pending.append(item[0])
        elif isinstance(item, list) and seen < 10_000:  # fields: (name, dtype[, shape])
            for field in item:
                if not isinstance(field, tuple) or len(field) not in (2, 3):
                    return True
                pending.append(field[1])
        else:
            return True
    return False


def _filter_header(text: str) -> str:
    """numpy's own clean-up of Python 2 headers: drop the L of long integers."""
    import io
    import tokenize

    tokens: list[tokenize.TokenInfo] = []
    after_number = False
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        if not (after_number and token.type == tokenize.NAME and token.string == "L"):
            tokens.append(token)
        after_number = token.type == tokenize.NUMBER
    return tokenize.untokenize(tokens)


def npy_header(f: BinaryIO, start: int, end: int) -> NpyHeader | str | None:
    """The header of the ``.npy`` data at ``start``, parsed as numpy.load parses it: None where numpy fails
    before reading any pickle, a problem where the header cannot be checked."""
    head = _read_at(f, start, 12)
    if head[:6] != _NPY_MAGIC or len(head) < 12 or (head[6], head[7]) not in ((1, 0), (2, 0), (3, 0)):
        return None
    import ast
    import tokenize

    version = head[6]
    offset = 10 if version == 1 else 12
    length = int.from_bytes(head[8:offset], "little")
    if length > MAX_NPY_HEADER:
        return "NumPy header is too large to check"
    data_start = start + offset + length
    raw = _read_at(f, start + offset, length)
    if len(raw) != length or data_start > end:
        return None
    try:
        text = raw.decode("utf-8" if version == 3 else "latin1")
        try:
            header = ast.literal_eval(text)
        except SyntaxError:
            if version == 3:
                return None
            header = ast.literal_eval(_filter_header(text))
    except (SyntaxError, ValueError, TypeError, MemoryError, RecursionError, tokenize.TokenError):
        return None
    if not isinstance(header, dict) or header.keys() != {"descr", "fortran_order", "shape"}:
        return None
    shape, fortran = header["shape"], header["fortran_order"]
    if not isinstance(shape, tuple) or not all(isinstance(n, int) for n in shape) or not isinstance(fortran, bool):
        return None
    return NpyHeader(_has_objects(header["descr"]), data_start)
