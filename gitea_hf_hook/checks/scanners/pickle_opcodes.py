"""The opcodes of the C unpickler (Modules/_pickle.c, 3.11), one function each, over ``pickle_walk.Walker``.

Each reads its argument as the matching ``load_*`` function does and changes the shadow stack, marks and
memo as it changes the real ones (see ``pickle_walk`` for what is defended and why). ``walk`` is the entry.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable
from typing import BinaryIO

from .pickle_walk import (
    BUILDS_OTHER,
    CRAFTED_HINT,
    DICT,
    EXTENSION,
    FRAMING,
    INVALID,
    LARGE_HINT,
    LIST,
    MAX_MEMO,
    MAYBE_STR,
    OTHER,
    PERSISTENT,
    SET,
    SOME_STR,
    UNKNOWN,
    UNRESOLVABLE,
    Budget,
    Global,
    Made,
    Stop,
    Walk,
    Walker,
    invalid,
    keep,
)


def _text_int(digits: bytes) -> object:
    """A text integer's value where C and Python agree on it (plain decimal, up to 41 digits, no leading zero),
    else just a number."""
    body = digits[1:] if digits[:1] == b"-" else digits
    plain = body.isdigit() and len(body) <= 41 and (body == b"0" or body[:1] != b"0")
    return int(digits) if plain else OTHER


def _memo_index(line: bytes) -> int:
    # C's PyLong_FromString(s, NULL, 10) and Python's int() accept the same text: spaces, underscores.
    if not line.endswith(b"\n"):
        raise Stop("pickle has a memo index too long to check", CRAFTED_HINT)
    try:
        return int(line, 10)
    except ValueError:
        raise invalid() from None


def _string(w: Walker, data: bytes | None) -> object:
    """A STRING-family value: a str only when ASCII, since its decoding is the loader's choice."""
    if data is None:
        return SOME_STR
    return keep(data.decode("ascii")) if data.isascii() else SOME_STR


def _unicode(w: Walker, data: bytes | None) -> object:
    if data is None:
        return SOME_STR
    try:
        return keep(data.decode("utf-8", "surrogatepass"))
    except UnicodeDecodeError:
        raise invalid() from None


def _op_string(w: Walker) -> None:
    line = w.readline()
    if not line.endswith(b"\n"):
        w.push(SOME_STR)
        return
    s = line[:-1]
    if len(s) < 2 or s[0] != s[-1] or s[:1] not in (b"'", b'"'):
        raise invalid()
    try:
        data = codecs.escape_decode(s[1:-1])[0]
    except ValueError:
        raise invalid() from None
    w.push(_string(w, data))


def _op_unicode(w: Walker) -> None:
    line = w.readline()
    if not line.endswith(b"\n"):
        w.push(SOME_STR)
        return
    try:
        w.push(keep(codecs.raw_unicode_escape_decode(line[:-1])[0]))
    except UnicodeDecodeError:
        raise invalid() from None


def _op_int(w: Walker) -> None:
    digits = w.text()
    # C's load_int: a two-character "00"/"01" style argument is a bool, not an int.
    w.push(OTHER if len(digits) == 2 and digits[1:] in (b"0", b"1") else _text_int(digits))


def _op_long(w: Walker) -> None:
    digits = w.text()
    w.push(_text_int(digits[:-1] if digits.endswith(b"L") else digits))


def _op_long_n(w: Walker, width: int) -> None:
    n = w.uint(1) if width == 1 else w.sint(4)
    if n < 0:
        raise invalid()
    data = w.value(n)
    w.push(OTHER if data is None or n > 64 else int.from_bytes(data, "little", signed=True))


def _op_counted_tuple(w: Walker, n: int) -> None:
    if len(w.stack) < n:
        raise invalid()
    w.push(w.poptuple(len(w.stack) - n))


def _op_dict(w: Walker) -> None:
    i = w.marker()
    if (len(w.stack) - i) % 2:
        raise invalid()
    del w.stack[i:]
    w.push(DICT)


def _op_pop(w: Walker) -> None:
    if w.marks and w.marks[-1] == len(w.stack):
        w.marks.pop()  # C's POP discards a MARK when one is on top
    else:
        w.pop()


def _op_dup(w: Walker) -> None:
    if len(w.stack) <= w.fence:
        raise invalid()
    w.push(w.stack[-1])


def _op_get(w: Walker, index: int) -> None:
    if index not in w.memo:
        raise invalid()
    w.push(w.memo[index])


def _op_put(w: Walker, index: int) -> None:
    if index < 0 or len(w.stack) <= w.fence:
        raise invalid()
    w.memo[index] = w.stack[-1]
    if len(w.memo) > MAX_MEMO:
        raise Stop(f"pickle memo has more than {MAX_MEMO:,} entries, too many to check", LARGE_HINT)


def _op_global(w: Walker) -> None:
    module = w.global_line("utf-8")
    w.push(w.resolve(module, w.global_line("utf-8")))


def _op_stack_global(w: Walker) -> None:
    name, module = w.pop(), w.pop()
    if isinstance(name, str) and isinstance(module, str):
        w.push(w.resolve(module, name))
    elif all(isinstance(v, (str, Made)) or v in MAYBE_STR or (isinstance(v, Global) and not v.allowed)
             for v in (name, module)):
        w.note(UNRESOLVABLE)  # only literal strings are certain; a computed one could name anything
        w.push(Global("", False, True))
    else:
        raise invalid()  # C: "STACK_GLOBAL requires str"


def _op_inst(w: Walker) -> None:
    i = w.marker()
    module = w.global_line("ascii")
    found = w.resolve(module, w.global_line("ascii"))
    w.poptuple(i)
    w.call(found)


def _op_obj(w: Walker) -> None:
    i = w.marker()
    if len(w.stack) - i < 1:
        raise invalid()
    w.poptuple(i + 1)
    w.call(w.pop())


def _op_reduce(w: Walker, popped: int) -> None:
    for _ in range(popped):
        w.pop()
    w.call(w.pop())


def _op_build(w: Walker) -> None:
    if len(w.stack) - 2 < w.fence:
        raise invalid()
    w.pop()
    if not isinstance(w.stack[-1], Made):
        w.touch(w.stack[-1], BUILDS_OTHER)


def _op_persid(w: Walker) -> None:
    if not w.readline().isascii():  # C decodes the id as ASCII; an empty one is allowed
        raise invalid()
    w.push(PERSISTENT)  # torch's persistent_load: a storage


def _op_ext(w: Walker, width: int) -> None:
    code = w.sint(width) if width == 4 else w.uint(width)
    if code <= 0:
        raise invalid()
    w.note(EXTENSION)
    w.push(UNKNOWN)


def _op_proto(w: Walker) -> None:
    w.proto = w.byte()
    if w.proto > 5:
        raise invalid()


def _op_frame(w: Walker) -> None:
    if w.frame_end is not None:
        raise Stop(FRAMING, CRAFTED_HINT)
    length = w.uint(8)
    if w.pos + length > w.end:
        raise Stop(INVALID, eof=True)  # C fails reading the frame, before running any of it
    w.frame_end = w.pos + length if length else None


def _op_readonly_buffer(w: Walker) -> None:
    if len(w.stack) <= w.fence:
        raise invalid()


def _no_buffers(w: Walker) -> None:
    raise invalid()  # NEXT_BUFFER: no loader here passes out-of-band buffers


def _push_after(w: Walker, _consumed: object, value: object = OTHER) -> None:
    """Push ``value`` once the argument (read, popped or skipped) has been consumed."""
    w.push(value)


_HANDLERS: dict[int, Callable[[Walker], object]] = {
    ord("("): lambda w: w.marks.append(len(w.stack)),
    ord("0"): _op_pop,
    ord("1"): lambda w: w.stack.__delitem__(slice(w.marker(), None)),
    ord("2"): _op_dup,
    ord("F"): lambda w: _push_after(w, w.text()),
    ord("I"): _op_int,
    ord("J"): lambda w: w.push(w.sint(4)),
    ord("K"): lambda w: w.push(w.uint(1)),
    ord("L"): _op_long,
    ord("M"): lambda w: w.push(w.uint(2)),
    ord("N"): lambda w: w.push(OTHER),
    ord("P"): _op_persid,
    ord("Q"): lambda w: _push_after(w, w.pop(), PERSISTENT),
    ord("R"): lambda w: _op_reduce(w, 1),
    ord("S"): _op_string,
    ord("T"): lambda w: w.push(_string(w, w.value(_nonneg(w.sint(4))))),
    ord("U"): lambda w: w.push(_string(w, w.value(w.uint(1)))),
    ord("V"): _op_unicode,
    ord("X"): lambda w: w.push(_unicode(w, w.value(w.uint(4)))),
    ord("a"): lambda w: w.add_items(_above_fence(w, len(w.stack) - 1), LIST),
    ord("b"): _op_build,
    ord("c"): _op_global,
    ord("d"): _op_dict,
    ord("}"): lambda w: w.push(DICT),
    ord("e"): lambda w: w.add_items(_at_or_above_fence(w, w.marker()), LIST),
    ord("g"): lambda w: _op_get(w, _memo_index(w.readline())),
    ord("h"): lambda w: _op_get(w, w.uint(1)),
    ord("i"): _op_inst,
    ord("j"): lambda w: _op_get(w, w.uint(4)),
    ord("l"): lambda w: _push_after(w, w.poptuple(w.marker()), LIST),
    ord("]"): lambda w: w.push(LIST),
    ord("o"): _op_obj,
    ord("p"): lambda w: _op_put(w, _memo_index(w.readline())),
    ord("q"): lambda w: _op_put(w, w.uint(1)),
    ord("r"): lambda w: _op_put(w, w.uint(4)),
    ord("s"): lambda w: w.add_items(len(w.stack) - 2, DICT, pairs=True),
    ord("t"): lambda w: w.push(w.poptuple(w.marker())),
    ord(")"): lambda w: w.push(()),
    ord("u"): lambda w: w.add_items(w.marker(), DICT, pairs=True),
    ord("G"): lambda w: _push_after(w, w.read(8)),
    0x80: _op_proto,
    0x81: lambda w: _op_reduce(w, 1),  # NEWOBJ: cls.__new__(cls, *args)
    0x82: lambda w: _op_ext(w, 1),
    0x83: lambda w: _op_ext(w, 2),
    0x84: lambda w: _op_ext(w, 4),
    0x85: lambda w: _op_counted_tuple(w, 1),
    0x86: lambda w: _op_counted_tuple(w, 2),
    0x87: lambda w: _op_counted_tuple(w, 3),
    0x88: lambda w: w.push(OTHER),
    0x89: lambda w: w.push(OTHER),
    0x8A: lambda w: _op_long_n(w, 1),
    0x8B: lambda w: _op_long_n(w, 4),
    ord("B"): lambda w: _push_after(w, w.value(w.uint(4))),
    ord("C"): lambda w: _push_after(w, w.value(w.uint(1))),
    0x8C: lambda w: w.push(_unicode(w, w.value(w.uint(1)))),
    0x8D: lambda w: w.push(_unicode(w, w.value(w.uint(8)))),
    0x8E: lambda w: _push_after(w, w.value(w.uint(8))),
    0x8F: lambda w: w.push(SET),
    0x90: lambda w: w.add_items(w.marker(), SET),
    0x91: lambda w: _push_after(w, w.poptuple(w.marker())),
    0x92: lambda w: _op_reduce(w, 2),  # NEWOBJ_EX: kwargs and args, then the class
    0x93: _op_stack_global,
    0x94: lambda w: _op_put(w, len(w.memo)),  # MEMOIZE: C's memo_len is the number of entries
    0x95: _op_frame,
    0x96: lambda w: _push_after(w, w.value(w.uint(8))),
    0x97: _no_buffers,
    0x98: _op_readonly_buffer,
}


def _nonneg(n: int) -> int:
    if n < 0:
        raise invalid()
    return n


def _above_fence(w: Walker, x: int) -> int:
    if x <= w.fence:  # load_append: Py_SIZE - 1 <= fence is an underflow
        raise invalid()
    return x


def _at_or_above_fence(w: Walker, x: int) -> int:
    if x < w.fence:  # Pdata_poplist refuses to pop below the fence
        raise invalid()
    return x


def walk(f: BinaryIO, start: int, end: int, budget: Budget) -> Walk:
    """Walk the pickle at ``start`` of ``f`` (whose data ends at ``end``) up to its STOP. Never raises on bad
    data: every failure is the ``error`` of the result; ``OSError`` from ``f`` passes through."""
    w = Walker(f, start, end, budget)
    try:
        value = w.run(_HANDLERS)
    except Stop as stop:
        return Walk(w.problems, (stop.problem, stop.hint), stop.eof, stop.exhausted, w.acted, UNKNOWN, w.pos)
    return Walk(w.problems, None, False, False, w.acted, value, w.pos)
