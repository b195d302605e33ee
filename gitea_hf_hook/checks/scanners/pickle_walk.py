"""Walk one pickle's opcodes the way CPython's C unpickler (Modules/_pickle.c, 3.11) reads them, never unpickling.

A shadow of the unpickler's state is kept: the object stack and, apart from it, the mark stack with the same
"fence" rules as ``Pdata``; the memo; the protocol (which decides the Python 2 renames); and the frame being
read. Shadow values are the literal strings and small ints the pickle holds, tuples of shadow values, the
globals it imports (``Global``), the objects allowed callables return (``Made``), and kinds for the rest.

Loader differences defended, and how:

- Frames. ``load_frame`` reads a FRAME's declared length into the C unpickler's buffer and rewinds; what
  happens at the frame's end depends on the file object. Reading from a file without ``peek`` (BytesIO, as
  torch reads ``data.pkl``; unbuffered files, as torch reads tar members), an opcode whose argument or line
  does not fit in what is left of the frame makes ``_Unpickler_ReadImpl`` / ``_Unpickler_Readline`` read afresh
  from the file and silently drop the rest of the frame, while ``pickle.loads`` and peek-able files read on
  straight and the Python unpickler raises. A FRAME inside an unfinished frame is a no-op in C when it fits,
  a skip when it does not, an error in Python. And a STOP before a frame's end leaves the file positioned
  after the STOP or after the frame, depending on the buffer, so the next pickle of a legacy torch file starts
  at a loader-dependent offset. So framing is enforced as ``pickle`` writes it and the Python unpickler
  demands it: every opcode lies wholly inside a frame or wholly outside any, a FRAME starts only where the
  previous frame ended, a frame lies within the data, and a STOP inside a frame is its last byte. Under those
  rules all readers see the same opcodes; anything else is reported (``FRAMING``).
- Marks. C keeps marks apart from the object stack: APPENDS, SETITEM(S) and ADDITEMS may reach objects below
  the last mark where the Python unpickler (a stack of stacks) raises. The shadow copies C exactly, so the
  objects it reasons about are the ones C touches; where Python raises, nothing more runs there.
- Argument decoding is C's, not pickletools': STRING undoes escapes and yields str only when ASCII (its
  encoding is the loader's choice), GLOBAL names are UTF-8 and INST names ASCII, Python 2 names are renamed
  only below protocol 3, dotted names are never taken for allowed ones, and memo indices parse as C parses
  them. An undecodable argument ends the walk where it ends the load, and is reported: nothing is skipped
  over, and no pickle after it is taken for data (``pickles`` refuses what follows a pickle).
- Imports, calls and mutations follow ``torch.load(weights_only=True)``: only ``WEIGHTS_ONLY_GLOBALS`` may be
  imported, only they may be called (REDUCE, NEWOBJ, NEWOBJ_EX, OBJ, INST), BUILD applies only to objects
  they returned (never to an imported class, whose attributes would change code that runs later), and items
  are added only to lists, dicts, sets or such objects.

The opcodes themselves are in ``pickle_opcodes``.

Values longer than ``MAX_SHORT`` are skipped unread (no name that long is allowed), so memory stays small
and a sniffing walk, which reads at most ``Budget.reads`` bytes, can cross large values to what follows.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import BinaryIO, NamedTuple

from . import shown

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
MAX_PICKLE_BYTES = 256 << 20  # pickle data read (not skipped) from one file
MAX_STACK = 100_000  # real pickles stay shallow: pickle batches list/dict items by 1000
MAX_MEMO = 1_000_000
MAX_SHORT = 1024  # longer strings and bytes are skipped unread: no allowed name is that long
MAX_LINE = 64 << 10  # text arguments kept; a longer memo index is refused rather than guessed
_KEEP_LIMIT = 100  # longer strings cannot be an allowed name; keep a prefix to name them
_CHUNK = 64 << 10

IMPORT_HINT = "only weights-only imports are allowed: convert to safetensors"
CORRUPT_HINT = "the file looks truncated or corrupt: re-save it, or push it again with Git LFS"
LARGE_HINT = "convert the weights to safetensors"
CRAFTED_HINT = "loaders would read it differently: re-save it with torch.save or pickle"
INVALID = "not a valid pickle"
UNRESOLVABLE = "pickle has an unresolvable import, which can run code when loaded"
EXTENSION = "pickle imports through the copyreg extension registry, which can run code when loaded"
CALLS_OTHER = "pickle calls an object that is not an allowed import, which can run code when loaded"
BUILDS_OTHER = "pickle sets the state of an object no allowed import made, which can run code when loaded"
MUTATES = "pickle adds items to an object that is not a list, dict or set, which can run code when loaded"
FRAMING = "pickle frames do not line up with its opcodes, so loaders would run different opcodes"


class Global(NamedTuple):
    """What GLOBAL, STACK_GLOBAL or INST imported: the name the unpickler resolves, and whether it is allowed."""

    name: str
    allowed: bool
    plain: bool  # every part is an identifier: a real module could be imported under it


class Made(NamedTuple):
    """The object an allowed callable returned."""

    name: str


class Kind:
    """A shadow value known only by kind."""

    __slots__ = ("what",)

    def __init__(self, what: str) -> None:
        self.what = what

    def __repr__(self) -> str:
        return f"<{self.what}>"


LIST, DICT, SET = Kind("list"), Kind("dict"), Kind("set")
OTHER = Kind("value")  # None, numbers, bytes, frozensets: certainly not a str
SOME_STR = Kind("str")  # a str whose text is not known (non-ASCII STRING, or too long to keep)
PERSISTENT = Kind("persistent object")
UNKNOWN = Kind("unknown")  # the result of something already reported
MAYBE_STR = (SOME_STR, PERSISTENT, UNKNOWN)


class Budget:
    """Work shared by the walks of one file: opcodes, and bytes read; ``reads`` stops a sniffing walk early."""

    def __init__(self, reads: int = MAX_PICKLE_BYTES, *, sniff: bool = False) -> None:
        self.opcodes = 0
        self.reads = reads
        self.sniff = sniff
        self.chunk = 512 if sniff else _CHUNK  # a sniffing walk reads little more than it parses


class Walk(NamedTuple):
    """One pickle walked: problems (text -> hint, in order), why it stopped early, and what it left."""

    problems: dict[str, str]
    error: tuple[str, str] | None  # None when a STOP was reached cleanly
    eof: bool  # the error is running out of data (or, sniffing, of budget: see ``exhausted``)
    exhausted: bool  # a sniffing walk used up its read budget: the data is a valid pickle so far
    acted: bool  # something imported was called, built or added to: a failing pickle may still have run code
    value: object  # the object STOP returns
    end: int  # offset after the STOP, or where the walk stopped


class Stop(Exception):
    """Why a walk ends before a clean STOP."""

    def __init__(self, problem: str, hint: str = CORRUPT_HINT, *, eof: bool = False, exhausted: bool = False):
        super().__init__(problem)
        self.problem, self.hint, self.eof, self.exhausted = problem, hint, eof, exhausted


def invalid() -> Stop:
    return Stop(INVALID)


def _plain(module: str, name: str) -> bool:
    return all(part.isidentifier() and part.isascii() for part in (*module.split("."), *name.split(".")))


def keep(text: str) -> str:
    # A shortened string stays longer than any allowed name, so it can never be mistaken for one.
    return text if len(text) <= _KEEP_LIMIT else text[:_KEEP_LIMIT] + "..."


class Walker:
    """The unpickler's state while one pickle is walked, and the reading of its bytes."""

    def __init__(self, f: BinaryIO, start: int, end: int, budget: Budget) -> None:
        f.seek(start)
        self.f, self.base, self.end, self.budget = f, start, end, budget
        self.buf, self.i = b"", 0  # invariant: the file is positioned at base + len(buf)
        self.stack: list[object] = []
        self.marks: list[int] = []
        self.memo: dict[int, object] = {}
        self.proto = 0
        self.frame_end: int | None = None
        self.problems: dict[str, str] = {}
        self.acted = False

    # --- reading -------------------------------------------------------------------------------------

    @property
    def pos(self) -> int:
        return self.base + self.i

    def _spend(self, n: int) -> None:
        self.budget.reads -= n
        if self.budget.reads < 0:
            if self.budget.sniff:
                raise Stop(INVALID, eof=True, exhausted=True)
            raise Stop(f"pickle data is over {MAX_PICKLE_BYTES >> 20} MiB, too large to check", LARGE_HINT)

    def _refill(self, n: int) -> None:
        pos = self.pos
        rest = self.buf[self.i:]
        want = min(max(n, self.budget.chunk), self.end - pos) - len(rest)
        if pos + n > self.end or want < 0:
            raise Stop(INVALID, eof=True)
        self._spend(want)
        more = self.f.read(want)
        self.buf, self.base, self.i = rest + more, pos, 0
        if len(self.buf) < n:
            raise Stop(INVALID, eof=True)

    def byte(self) -> int:
        if self.i >= len(self.buf):
            self._refill(1)
        c = self.buf[self.i]
        self.i += 1
        return c

    def read(self, n: int) -> bytes:
        if self.i + n > len(self.buf):
            self._refill(n)
        data = self.buf[self.i:self.i + n]
        self.i += n
        return data

    def uint(self, n: int) -> int:
        return int.from_bytes(self.read(n), "little")

    def sint(self, n: int) -> int:
        return int.from_bytes(self.read(n), "little", signed=True)

    def value(self, n: int) -> bytes | None:
        """The next n bytes, or None when n > MAX_SHORT: those are skipped without being read."""
        if n <= MAX_SHORT:
            return self.read(n)
        target = self.pos + n
        if target > self.end:
            raise Stop(INVALID, eof=True)
        if self.i + n <= len(self.buf):
            self.i += n
        else:
            self.f.seek(target)
            self.buf, self.base, self.i = b"", target, 0
        return None

    def readline(self) -> bytes:
        """The next line with its newline; a longer line than MAX_LINE comes back cut, without its newline."""
        j = self.buf.find(b"\n", self.i)
        if j >= 0 and j - self.i < MAX_LINE:
            line = self.buf[self.i:j + 1]
            self.i = j + 1
            return line
        kept = self.buf[self.i:self.i + MAX_LINE]
        if j >= 0:
            self.i = j + 1
            return kept
        while True:
            self.base += len(self.buf)
            self.buf, self.i = b"", 0
            want = min(self.budget.chunk, self.end - self.base)
            if want <= 0:
                raise Stop(INVALID, eof=True)
            self._spend(want)
            chunk = self.f.read(want)
            if not chunk:
                raise Stop(INVALID, eof=True)
            self.buf = chunk
            j = chunk.find(b"\n")
            if len(kept) < MAX_LINE:
                kept += chunk[:MAX_LINE - len(kept) if j < 0 else min(j + 1, MAX_LINE - len(kept))]
            if j >= 0:
                self.i = j + 1
                return kept

    def text(self) -> bytes:
        """A text argument without its newline (C rejects an empty one); a cut line comes back cut."""
        line = self.readline()
        if len(line) < 2:
            raise invalid()
        return line[:-1] if line.endswith(b"\n") else line

    # --- the stack, as Pdata ---------------------------------------------------------------------------

    @property
    def fence(self) -> int:
        return self.marks[-1] if self.marks else 0

    def push(self, value: object) -> None:
        self.stack.append(value)

    def pop(self) -> object:
        if len(self.stack) <= self.fence:
            raise invalid()
        return self.stack.pop()

    def poptuple(self, start: int) -> tuple[object, ...]:
        if start < self.fence or start > len(self.stack):
            raise invalid()
        items = tuple(self.stack[start:])
        del self.stack[start:]
        return items

    def marker(self) -> int:
        if not self.marks:
            raise invalid()
        return self.marks.pop()

    def note(self, problem: str, hint: str = IMPORT_HINT) -> None:
        if len(self.problems) <= 20:  # the findings list is cut at 20 anyway
            self.problems.setdefault(problem, hint)

    # --- imports, calls and mutations ------------------------------------------------------------------

    def resolve(self, module: str, name: str) -> Global:
        import _compat_pickle  # only pickles import anything: not loaded for the text files sniffed

        if self.proto < 3 and (module, name) in _compat_pickle.NAME_MAPPING:  # as find_class with fix_imports
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif self.proto < 3 and module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
        full = f"{module}.{name}"
        # From protocol 4 a dotted name is an attribute path; an allowed object is never reached that way.
        allowed = full in WEIGHTS_ONLY_GLOBALS and "." not in name
        if not allowed:
            self.note(f"pickle imports {shown(keep(full))}, which can run code when loaded")
        return Global(full, allowed, _plain(module, name))

    def global_line(self, encoding: str) -> str:
        line = self.readline()
        if len(line) < 2:
            raise invalid()
        if not line.endswith(b"\n"):  # cut: far too long for an allowed name, whatever it decodes to
            return keep(line.decode(encoding, "replace"))
        try:
            return keep(line[:-1].decode(encoding))
        except UnicodeDecodeError:
            raise invalid() from None

    def touch(self, target: object, problem: str) -> None:
        """Something will be done to ``target`` (built, added to): note it unless it is allowed."""
        if isinstance(target, Global):
            self.acted = self.acted or target.plain
            if target.allowed:
                self.note(f"pickle changes {shown(target.name)} itself, which changes code that runs later")
        elif target is not UNKNOWN:
            self.note(problem)

    def call(self, func: object) -> None:
        if isinstance(func, Global):
            self.acted = self.acted or func.plain
            self.push(Made(func.name) if func.allowed else UNKNOWN)
            return
        if func is not UNKNOWN:
            self.note(CALLS_OTHER)
        self.push(UNKNOWN)

    def add_items(self, x: int, kind: Kind, *, pairs: bool = False) -> None:
        """do_append / do_setitems / load_additems: add stack[x:] to stack[x - 1] (C checks no fence there)."""
        n = len(self.stack)
        if x > n or x <= 0:
            raise invalid()
        if n == x:
            return
        if pairs and (n - x) % 2:
            raise invalid()
        target = self.stack[x - 1]
        if target is not kind and not isinstance(target, Made):
            self.touch(target, MUTATES)
        del self.stack[x:]

    # --- the loop --------------------------------------------------------------------------------------

    def run(self, handlers: Mapping[int, Callable[[Walker], object]]) -> object:
        budget = self.budget
        while True:
            budget.opcodes += 1
            if budget.opcodes > MAX_OPCODES:
                raise Stop(f"pickle has more than {MAX_OPCODES:,} opcodes, too many to check", LARGE_HINT)
            code = self.byte()
            if code == 0x2E:  # STOP
                if self.frame_end is not None and self.pos != self.frame_end:
                    raise Stop(FRAMING, CRAFTED_HINT)
                return self.pop()
            handler = handlers.get(code)
            if handler is None:
                raise invalid()
            handler(self)
            if self.frame_end is not None and self.pos >= self.frame_end:
                if self.pos > self.frame_end:
                    raise Stop(FRAMING, CRAFTED_HINT)
                self.frame_end = None
            if len(self.stack) > MAX_STACK or len(self.marks) > MAX_STACK:
                raise Stop(f"pickle stack grows past {MAX_STACK:,} items, too deep to check", LARGE_HINT)
