"""Compressed pickles: what joblib.load and pandas.read_pickle unpickle after decompressing a gzip, bz2, xz,
LZMA or zlib stream (``model.pkl.gz``, ``model.joblib`` saved with ``compress=``).

Only one whole stream is accepted: readers disagree on what follows it (gzip's reader takes another member,
joblib's and pandas' readers differ on trailing garbage), so anything after the stream's end is a problem.
Output is capped per call, so a bomb costs no more than the limit asked for.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, BinaryIO, NamedTuple

# A decompressor with decompress(data, max_length), eof and unused_data, and the error its module raises on
# corrupt data. Each module is imported when a file opens with its magic, not for every file sniffed.
Factory = Callable[[], tuple[Any, type[Exception]]]


class Stream(NamedTuple):
    name: str  # for messages
    factory: Factory


def _zlib(wbits: int) -> Factory:
    def factory() -> tuple[Any, type[Exception]]:
        import zlib

        return zlib.decompressobj(wbits), zlib.error
    return factory


def _bz2() -> tuple[Any, type[Exception]]:
    import bz2

    return bz2.BZ2Decompressor(), OSError  # "Invalid data stream"


def _lzma(alone: bool) -> Factory:
    def factory() -> tuple[Any, type[Exception]]:
        import lzma

        return lzma.LZMADecompressor(lzma.FORMAT_ALONE if alone else lzma.FORMAT_XZ), lzma.LZMAError
    return factory


# joblib detects these prefixes; a zlib header must also pass its own check (a multiple of 31).
_STREAMS = (
    (b"\x1f\x8b", Stream("gzip", _zlib(31))),
    (b"BZh", Stream("bz2", _bz2)),
    (b"\xfd7zXZ\x00", Stream("xz", _lzma(alone=False))),
    (b"\x5d\x00\x00", Stream("lzma", _lzma(alone=True))),
)


def stream_of(head: bytes) -> Stream | None:
    """The compression ``head`` opens with, if any."""
    for magic, stream in _STREAMS:
        if head.startswith(magic):
            return stream
    if len(head) >= 2 and head[0] == 0x78 and (head[0] << 8 | head[1]) % 31 == 0:
        return Stream("zlib", _zlib(15))
    return None


class Content(NamedTuple):
    data: bytes  # up to the limit asked for, and one byte more when there is more
    ended: bool  # the stream's end was reached
    problem: str | None  # corrupt part way, or data after the stream's end
    crafted: bool  # the problem is data after the end, which some readers go on to read


def decompress(f: BinaryIO, size: int, stream: Stream, limit: int) -> Content:
    """What the stream at the start of ``f`` holds, as far as ``limit``; what a reader was served before a
    problem is returned too, since a loader may already have run it."""
    decompressor, corrupt = stream.factory()
    f.seek(0)
    out, left, pending = bytearray(), size, b""
    try:
        while len(out) <= limit and not decompressor.eof:
            if not pending and getattr(decompressor, "needs_input", True) is False:
                out += decompressor.decompress(b"", limit + 1 - len(out))
                continue
            if not pending:
                if left <= 0:
                    break
                pending = f.read(min(64 << 10, left))
                left -= len(pending)
                if not pending:
                    break
            out += decompressor.decompress(pending, limit + 1 - len(out))
            # zlib hands back what it did not take; bz2 and lzma keep it, and take b"" to go on.
            pending = getattr(decompressor, "unconsumed_tail", b"")
    except (corrupt, OSError, EOFError, ValueError):
        return Content(bytes(out[:limit + 1]), False, f"{stream.name} stream is corrupt", False)
    if decompressor.eof and (decompressor.unused_data or left > 0):
        return Content(bytes(out[:limit + 1]), True,
                       f"{stream.name} stream has data after its end, which some readers read on", True)
    return Content(bytes(out[:limit + 1]), bool(decompressor.eof), None, False)
