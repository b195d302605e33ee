"""Pickle scanner for the "allowlist" policy: a pickle passes only if every import it makes is one that
``torch.load(weights_only=True)`` accepts.

The file is never unpickled. Opcodes are walked with ``pickletools.genops`` while a shadow stack and memo
track which values are literal strings, so that protocol-4 ``STACK_GLOBAL`` imports resolve exactly; an
import whose name cannot be known for certain is reported rather than guessed (fail closed).

Handled containers: a plain pickle, several pickles back to back (the legacy ``torch.save`` format), and
zip-wrapped torch checkpoints, whose ``*.pkl`` members are scanned. Reads, opcode counts and the shadow
state are all bounded so a hostile file costs little time and memory.
"""

from __future__ import annotations

import _compat_pickle
import io
import pickletools
import struct
import zipfile
import zlib
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from . import MAX_FINDINGS, PICKLE_SUFFIXES, Finding, Findings, shown

__all__ = ["PICKLE_SUFFIXES", "scan_pickle"]

# The globals torch.load(weights_only=True) accepts without user additions: the keys of
# torch._weights_only_unpickler._get_allowed_globals() in torch 2.13.0, dumped from that release and sorted.
WEIGHTS_ONLY_GLOBALS: frozenset[str] = frozenset({
    "_codecs.encode", "builtins.bytearray", "builtins.complex", "builtins.set", "collections.Counter",
    "collections.OrderedDict", "torch.BFloat16Storage", "torch.BFloat16Tensor", "torch.BoolStorage",
    "torch.BoolTensor", "torch.ByteStorage", "torch.ByteTensor", "torch.CharStorage", "torch.CharTensor",
    "torch.ComplexDoubleStorage", "torch.ComplexFloatStorage", "torch.DoubleStorage", "torch.DoubleTensor",
    "torch.FloatStorage", "torch.FloatTensor", "torch.HalfStorage", "torch.HalfTensor", "torch.IntStorage",
    "torch.IntTensor", "torch.LongStorage", "torch.LongTensor", "torch.QInt32Storage", "torch.QInt8Storage",
    "torch.QUInt2x4Storage", "torch.QUInt4x2Storage", "torch.QUInt8Storage", "torch.ShortStorage",
    "torch.ShortTensor", "torch.Size", "torch.Tensor", "torch._tensor._rebuild_from_type_v2",
    "torch._utils._rebuild_device_tensor_from_cpu_tensor", "torch._utils._rebuild_device_tensor_from_numpy",
    "torch._utils._rebuild_meta_tensor_no_storage", "torch._utils._rebuild_nested_tensor",
    "torch._utils._rebuild_parameter", "torch._utils._rebuild_parameter_with_state",
    "torch._utils._rebuild_qtensor", "torch._utils._rebuild_sparse_tensor", "torch._utils._rebuild_tensor",
    "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_tensor_v3",
    "torch._utils._rebuild_wrapper_subclass", "torch.bfloat16", "torch.bits16", "torch.bits1x8",
    "torch.bits2x4", "torch.bits4x2", "torch.bits8", "torch.bool", "torch.complex128", "torch.complex32",
    "torch.complex64", "torch.cuda.BFloat16Storage", "torch.cuda.BFloat16Tensor", "torch.cuda.BoolStorage",
    "torch.cuda.BoolTensor", "torch.cuda.ByteStorage", "torch.cuda.ByteTensor", "torch.cuda.CharStorage",
    "torch.cuda.CharTensor", "torch.cuda.ComplexDoubleStorage", "torch.cuda.ComplexFloatStorage",
    "torch.cuda.DoubleStorage", "torch.cuda.DoubleTensor", "torch.cuda.FloatStorage",
    "torch.cuda.FloatTensor", "torch.cuda.HalfStorage", "torch.cuda.HalfTensor", "torch.cuda.IntStorage",
    "torch.cuda.IntTensor", "torch.cuda.LongStorage", "torch.cuda.LongTensor", "torch.cuda.ShortStorage",
    "torch.cuda.ShortTensor", "torch.cuda.sparse.BFloat16Tensor", "torch.cuda.sparse.ByteTensor",
    "torch.cuda.sparse.CharTensor", "torch.cuda.sparse.DoubleTensor", "torch.cuda.sparse.FloatTensor",
    "torch.cuda.sparse.HalfTensor", "torch.cuda.sparse.IntTensor", "torch.cuda.sparse.LongTensor",
    "torch.cuda.sparse.ShortTensor", "torch.device", "torch.float16", "torch.float32",
    "torch.float4_e2m1fn_x2", "torch.float64", "torch.float8_e4m3fn", "torch.float8_e4m3fnuz",
    "torch.float8_e5m2", "torch.float8_e5m2fnuz", "torch.float8_e8m0fnu", "torch.int1", "torch.int16",
    "torch.int2", "torch.int3", "torch.int32", "torch.int4", "torch.int5", "torch.int6", "torch.int64",
    "torch.int7", "torch.int8", "torch.nn.parameter.Parameter", "torch.per_channel_affine",
    "torch.per_channel_affine_float_qparams", "torch.per_channel_symmetric", "torch.per_tensor_affine",
    "torch.per_tensor_symmetric", "torch.qint32", "torch.qint8", "torch.quint2x4", "torch.quint4x2",
    "torch.quint8", "torch.serialization._get_layout", "torch.sparse.BFloat16Tensor",
    "torch.sparse.ByteTensor", "torch.sparse.CharTensor", "torch.sparse.DoubleTensor",
    "torch.sparse.FloatTensor", "torch.sparse.HalfTensor", "torch.sparse.IntTensor",
    "torch.sparse.LongTensor", "torch.sparse.ShortTensor", "torch.storage.TypedStorage",
    "torch.storage.UntypedStorage", "torch.uint1", "torch.uint16", "torch.uint2", "torch.uint3",
    "torch.uint32", "torch.uint4", "torch.uint5", "torch.uint6", "torch.uint64", "torch.uint7", "torch.uint8",
})

MAX_OPCODES = 2_000_000  # a state dict needs ~25 opcodes per tensor: room for ~80,000 tensors
MAX_VALUE_BYTES = 32 << 20  # one string or bytes value read into memory
MAX_PICKLE_BYTES = 256 << 20  # all pickle data read from one file
MAX_MEMBER_BYTES = 64 << 20  # one *.pkl member of a zip, decompressed
MAX_ZIP_PICKLES = 64
MAX_STACK = 100_000  # real pickles stay shallow: pickle batches list/dict items by 1000
MAX_MEMO = 1_000_000

_ZIP_MAGIC = b"PK\x03\x04"
# torch's legacy (pre-1.6) format starts with a pickle of this number, then exactly four more pickles
# (protocol version, sys info, the object, storage keys) followed by raw storage bytes.
_TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_TORCH_LEGACY_PICKLES = 5

_IMPORT_HINT = "only weights-only imports are allowed: convert to safetensors"
_CORRUPT_HINT = "the file looks truncated or corrupt: re-save it, or push it again with Git LFS"
_LARGE_HINT = "convert the weights to safetensors"
INVALID = "not a valid pickle"
UNRESOLVABLE = "pickle has an unresolvable import, which can run code when loaded"
EXTENSION = "pickle imports through the copyreg extension registry, which can run code when loaded"

_KEEP_LIMIT = 100  # longer strings cannot be an allowed name; keep a prefix to name them

_MARK = object()  # shadow of a MARK on the stack
_ANY = object()  # any value that is not a literal string

_STRING_OPS = frozenset(
    {"STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8"}
)
_INT_OPS = frozenset({"INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4"})
_PUT_OPS = frozenset({"PUT", "BINPUT", "LONG_BINPUT"})
_GET_OPS = frozenset({"GET", "BINGET", "LONG_BINGET"})
_EXT_OPS = frozenset({"EXT1", "EXT2", "EXT4"})
# pickletools raises these on malformed input (UnicodeDecodeError is a ValueError).
_PARSE_ERRORS = (ValueError, struct.error, OverflowError, EOFError)
# zipfile raises a spread of types on corrupt, encrypted or exotic archives.
_ZIP_ERRORS = (
    zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, NotImplementedError, RuntimeError,
    EOFError, OSError, ValueError, struct.error,
)


def _stack_effect(op: pickletools.OpcodeInfo) -> tuple[bool, int, int]:
    """(pops to a mark?, items popped below the mark or in total, items pushed) from pickletools' metadata."""
    before = op.stack_before
    if pickletools.markobject in before:
        return True, before.index(pickletools.markobject), len(op.stack_after)
    return False, len(before), len(op.stack_after)


_EFFECTS = {op.name: _stack_effect(op) for op in pickletools.opcodes}


def _keep(text: str) -> str:
    # A shortened string stays longer than any allowed name, so it can never be mistaken for one.
    return text if len(text) <= _KEEP_LIMIT else text[:_KEEP_LIMIT] + "..."


def _resolve(module: str, name: str) -> str:
    """Full dotted name the unpickler imports, after the Python 2 renames torch and pickle apply."""
    if (module, name) in _compat_pickle.NAME_MAPPING:
        module, name = _compat_pickle.NAME_MAPPING[(module, name)]
    elif module in _compat_pickle.IMPORT_MAPPING:
        module = _compat_pickle.IMPORT_MAPPING[module]
    return f"{module}.{name}"


class _TooLarge(Exception):
    """The data exceeds a scanning bound; ``problem`` says which."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem


class _Invalid(Exception):
    """The opcodes parse but could not be unpickled (stack underflow, unknown memo key, bad protocol)."""


class _Reader:
    """File wrapper handed to pickletools: caps each read and the total, and can peek one byte.

    pickletools reads a value's whole declared length at once, and file objects allocate the requested
    size up front, so an unchecked length field would let a tiny file claim gigabytes.
    """

    def __init__(self, raw: BinaryIO, pending: bytes = b"", budget: int = MAX_PICKLE_BYTES) -> None:
        self._raw = raw
        self._pending = pending
        self._budget = budget
        self._pos = 0

    def _take(self, data: bytes) -> bytes:
        self._pos += len(data)
        return data

    def read(self, n: int = -1) -> bytes:
        if n < 0 or n > MAX_VALUE_BYTES:
            raise _TooLarge(f"pickle holds a value over {MAX_VALUE_BYTES >> 20} MiB, too large to check")
        if self._pos + n > self._budget:
            raise _TooLarge(f"pickle data is over {self._budget >> 20} MiB, too large to check")
        head, self._pending = self._pending[:n], self._pending[n:]
        return self._take(head + self._raw.read(n - len(head)) if n > len(head) else head)

    def readline(self) -> bytes:
        if self._pending:
            cut = self._pending.find(b"\n") + 1 or len(self._pending)
            head, self._pending = self._pending[:cut], self._pending[cut:]
            if head.endswith(b"\n"):
                return self._take(head)
        else:
            head = b""
        line = head + self._raw.readline(MAX_VALUE_BYTES + 1 - len(head))
        if len(line) > MAX_VALUE_BYTES:
            raise _TooLarge(f"pickle holds a value over {MAX_VALUE_BYTES >> 20} MiB, too large to check")
        if self._pos + len(line) > self._budget:
            raise _TooLarge(f"pickle data is over {self._budget >> 20} MiB, too large to check")
        return self._take(line)

    def tell(self) -> int:
        return self._pos

    def peek(self) -> bytes:
        """The next byte without consuming it (b"" at end of file)."""
        if not self._pending:
            self._pending = self._raw.read(1)
        return self._pending[:1]


@dataclass
class _Pickle:
    """What one pickle in the stream revealed."""

    problems: dict[str, str] = field(default_factory=dict)  # problem -> hint, in order of appearance
    error: tuple[str, str] | None = None  # why scanning stopped early, as (problem, hint)
    lone_int: int | None = None  # the value, when the pickle is nothing but one integer


class _Scanner:
    """State of one scan_pickle call: findings so far and the opcode budget shared by all pickles."""

    def __init__(self) -> None:
        self.findings = Findings("pickle problems", counted=False)
        self.opcodes = 0

    @property
    def full(self) -> bool:
        return self.findings.full

    def add(self, problem: str, hint: str) -> None:
        self.findings.add(problem, hint)

    def commit(self, prefix: str, result: _Pickle) -> None:
        for problem, hint in result.problems.items():
            self.add(prefix + problem, hint)
        if result.error is not None:
            self.add(prefix + result.error[0], result.error[1])

    def scan_one(self, reader: _Reader) -> _Pickle:
        """Walk one pickle up to its STOP opcode, recording every import that is not allowed."""
        result = _Pickle()
        stack: list[object] = []
        memo: dict[int, object] = {}
        ints: list[int] = []
        only_ints = True

        def pop() -> object:
            # Items above the last MARK are all an opcode may touch, as in pickle's own metastack.
            if not stack or stack[-1] is _MARK:
                raise _Invalid
            return stack.pop()

        def note(problem: str, hint: str = _IMPORT_HINT) -> None:
            # Past the cap the list is cut anyway; stop growing it but keep walking to judge validity.
            if len(result.problems) <= MAX_FINDINGS:
                result.problems.setdefault(problem, hint)

        def check(module: str, name: str) -> None:
            full = _resolve(module, name)
            if full not in WEIGHTS_ONLY_GLOBALS:
                note(f"pickle imports {shown(full)}, which can run code when loaded")

        try:
            # genops reads any object with read, readline and tell; its arguments are typed by opcode.
            for op, value, offset in pickletools.genops(reader):  # type: ignore[arg-type]
                arg: Any = value
                pos = offset or 0
                self.opcodes += 1
                if self.opcodes > MAX_OPCODES:
                    raise _TooLarge(f"pickle has more than {MAX_OPCODES:,} opcodes, too many to check")
                name = op.name
                if name in _INT_OPS:
                    ints.append(arg)
                elif name not in ("PROTO", "FRAME", "STOP"):
                    only_ints = False

                if name in ("GLOBAL", "INST"):
                    module, _, attr = arg.partition(" ")
                    # pickletools undoes backslash escapes, pickle does not: if the raw line was longer
                    # than what we were given, the names pickle would import are not the ones we see.
                    if reader.tell() - pos - 1 != len(arg) + 1:
                        note(UNRESOLVABLE)
                    else:
                        check(module, attr)
                elif name in _EXT_OPS:
                    note(EXTENSION)
                elif name == "PROTO" and arg > 5:
                    raise _Invalid

                if name in _STRING_OPS:
                    stack.append(_keep(arg))
                elif name == "STACK_GLOBAL":
                    # Module and name are whatever the stack holds; only literal strings are certain.
                    attr, module = pop(), pop()
                    if isinstance(module, str) and isinstance(attr, str):
                        check(module, attr)
                    else:
                        note(UNRESOLVABLE)
                    stack.append(_ANY)
                elif name in _GET_OPS:
                    if arg not in memo:
                        raise _Invalid
                    stack.append(memo[arg])
                elif name in _PUT_OPS or name == "MEMOIZE":
                    value = pop()
                    stack.append(value)
                    memo[len(memo) if name == "MEMOIZE" else arg] = value
                    if len(memo) > MAX_MEMO:
                        raise _TooLarge(f"pickle memo has more than {MAX_MEMO:,} entries, too many to check")
                elif name == "DUP":
                    value = pop()
                    stack += (value, value)
                elif name == "MARK":
                    stack.append(_MARK)
                elif name == "POP" and stack and stack[-1] is _MARK:
                    stack.pop()  # pickle's POP discards a MARK when one is on top
                else:
                    to_mark, popped, pushed = _EFFECTS[name]
                    if to_mark:
                        while stack and stack[-1] is not _MARK:
                            stack.pop()
                        if not stack:
                            raise _Invalid
                        stack.pop()
                    for _ in range(popped):
                        pop()
                    stack.extend([_ANY] * pushed)
                if len(stack) > MAX_STACK:
                    raise _TooLarge(f"pickle stack grows past {MAX_STACK:,} items, too deep to check")
        except _TooLarge as exc:
            result.error = (exc.problem, _LARGE_HINT)
        except (_Invalid, *_PARSE_ERRORS):
            result.error = (INVALID, _CORRUPT_HINT)
        if only_ints and len(ints) == 1:
            result.lone_int = ints[0]
        return result

    def scan_stream(self, raw: BinaryIO, prefix: str = "", pending: bytes = b"", single: bool = False) -> None:
        """Scan consecutive pickles from ``raw`` (after ``pending``, bytes already read from it).

        The first pickle must parse; later ones are scanned while the data still parses as pickle.
        """
        reader = _Reader(raw, pending)
        first = self.scan_one(reader)
        self.commit(prefix, first)
        if first.error is not None or single:
            return
        legacy = first.lone_int == _TORCH_LEGACY_MAGIC
        count = 1
        while not self.full and not (legacy and count == _TORCH_LEGACY_PICKLES):
            head = reader.peek()
            if not head:
                if legacy:  # torch.load would fail, but only after running the pickles before
                    self.add(prefix + INVALID, _CORRUPT_HINT)
                return
            # The legacy torch pickles must all be there; elsewhere, trailing data is only taken for a
            # pickle when it starts like one (PROTO), so raw bytes after a pickle do not raise alarms.
            strict = legacy or head == b"\x80"
            result = self.scan_one(reader)
            count += 1
            if result.error is None or strict:
                self.commit(prefix, result)
            if result.error is not None:
                return

    def scan_zip(self, f: BinaryIO) -> None:
        """Scan every ``*.pkl`` member of a zip archive (torch.save's default format since 1.6)."""
        try:
            with zipfile.ZipFile(f) as archive:
                members = [m for m in archive.infolist() if m.filename.endswith(".pkl") and not m.is_dir()]
                if len(members) > MAX_ZIP_PICKLES:
                    too_many = f"zip archive has more than {MAX_ZIP_PICKLES} pickles, too many to check"
                    self.add(too_many, _LARGE_HINT)
                    members = members[:MAX_ZIP_PICKLES]
                for info in members:
                    prefix = shown(info.filename) + ": "
                    try:
                        with archive.open(info) as member:
                            data = member.read(MAX_MEMBER_BYTES + 1)
                    except _ZIP_ERRORS:
                        self.add(prefix + "cannot be read from the zip archive", _CORRUPT_HINT)
                        continue
                    if len(data) > MAX_MEMBER_BYTES:
                        too_large = f"pickle is over {MAX_MEMBER_BYTES >> 20} MiB, too large to check"
                        self.add(prefix + too_large, _LARGE_HINT)
                        continue
                    # torch loads exactly one pickle from each member; trailing bytes are never read.
                    self.scan_stream(io.BytesIO(data), prefix, single=True)
                    if self.full:
                        return
        except _ZIP_ERRORS:
            self.add("not a valid zip archive", _CORRUPT_HINT)


def scan_pickle(f: BinaryIO) -> list[Finding]:
    """Check that every import in the pickle file ``f`` is one ``torch.load(weights_only=True)`` accepts.

    ``f`` is a binary file positioned at 0; zip-wrapped torch checkpoints need it seekable. Returns one
    ``Finding`` per disallowed import (each reported once, list capped), and findings for data that is
    not a valid pickle or is too large to check. An empty list means the file passes the allowlist policy.
    """
    scanner = _Scanner()
    head = f.read(len(_ZIP_MAGIC))
    if head == _ZIP_MAGIC:
        f.seek(0)
        scanner.scan_zip(f)
    else:
        scanner.scan_stream(f, pending=head)
    return scanner.findings.result()
