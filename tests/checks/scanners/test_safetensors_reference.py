"""check_safetensors against the safetensors library itself: the same verdict on every header.

The hook accepts a file (no findings) exactly when the library loads it. Each header is built from a recipe here,
as JSON text, so that it can hold what ``json.dumps`` never writes: ``-0``, repeated keys, lone surrogate escapes,
numbers at the edge of a double's range, nesting around the reader's depth limit.

One difference is deliberate, and pinned at the end: the hook bounds what a push can make it parse, in bytes and
in arrays and objects, below what the library reads.
"""

from __future__ import annotations

import io
import json
import random
import struct
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import safetensors
from safetensors import safe_open

from gitea_hf_hook.checks.scanners import Finding
from gitea_hf_hook.checks.scanners.json_reader import MAX_DEPTH
from gitea_hf_hook.checks.scanners.safetensors import DTYPE_BITS, MAX_CONTAINERS, MAX_HEADER_SIZE, check_safetensors

RESAVE = "re-save it with safetensors.torch.save_file"
SEED, CASES = 20240601, 5000


class Raw(NamedTuple):
    """JSON text written as is: a number token or a string escape ``json.dumps`` would not produce."""

    text: str


class Obj(NamedTuple):
    """A JSON object as a list of pairs, so that a key can repeat."""

    pairs: list[tuple[Any, Any]]


def emit(value: Any) -> str:
    """JSON text of a recipe value, iteratively: a recipe may nest deeper than Python's recursion limit."""
    out: list[str] = []
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, Raw):
            out.append(item.text)
        elif isinstance(item, Obj):
            parts: list[Any] = [Raw("{")]
            for i, (key, val) in enumerate(item.pairs):
                parts += [Raw("," if i else ""), key, Raw(":"), val]
            stack.extend(reversed([*parts, Raw("}")]))
        elif isinstance(item, list):
            parts = [Raw("[")]
            for i, val in enumerate(item):
                parts += [Raw("," if i else ""), val]
            stack.extend(reversed([*parts, Raw("]")]))
        else:
            out.append(json.dumps(item))  # lone surrogates come out as \udXXX escapes
    return "".join(out)


def nest(levels: int) -> Raw:
    return Raw("[" * levels + "]" * levels)


def entry(dtype: Any, shape: Any, offsets: Any, *extra: tuple[Any, Any]) -> Obj:
    return Obj([("dtype", dtype), ("shape", shape), ("data_offsets", offsets), *extra])


def blob_of(header: Any, data: bytes = b"", pad: str = "") -> bytes:
    text = (header if isinstance(header, str) else emit(header)) + pad
    raw = text.encode("utf-8", "surrogatepass")
    return struct.pack("<Q", len(raw)) + raw + data


def ours(blob: bytes) -> list[Finding]:
    return check_safetensors(io.BytesIO(blob), len(blob))


def reference(blob: bytes, path: Path) -> str | None:
    """None when the library loads the file, both from bytes and from disk, else its error.

    The two entry points share one parser; a file one loads and the other refuses fails the test.
    """
    try:
        safetensors.deserialize(blob)
        from_bytes = None
    except Exception as error:  # noqa: BLE001 - the library's error type is what is being compared
        from_bytes = str(error) or type(error).__name__
    path.write_bytes(blob)
    try:
        with safe_open(str(path), framework="numpy") as f:
            list(f.keys())
            f.metadata()
        from_file = None
    except Exception as error:  # noqa: BLE001
        from_file = str(error) or type(error).__name__
    assert (from_bytes is None) == (from_file is None), (blob[:300], from_bytes, from_file)
    return from_bytes


# ---- generated headers -------------------------------------------------------------------------------------

NAMES = ["w", "layer.0.weight", "b", "\u00e9mbed", "x" * 90, "", "w\n", "\u0000", "\U0001f600",
         "\ud800", "\udc00x", "__metadata\u005f_"]
HUGE = [2**32, 2**40, 2**61, 2**63, 2**64 - 1, 2**64]
# Number tokens at the edges of serde_json's reading: -0 is a float, doubles past the largest one (by its own
# rounding) are "out of range", integers past 64 bits become floats.
NUMBERS = ["-0", "0", "-1", "1.5", "1e400", "-1e400", "1e-400", "1.7976931348623157e308",
           "1.7976931348623158e308", "1.79769313486232e308", "9" * 308, "9" * 309, "-" + "9" * 309,
           "0e99999999999", "1e99999999999", "1e-99999999999", "18446744073709551615", "18446744073709551616",
           "0." + "0" * 330 + "1e330", "1" + "0" * 330 + "e-330"]
STRINGS = [Raw('"ok"'), Raw('"\\ud800"'), Raw('"\\udc00"'), Raw('"\\ud83d\\ude00"'), Raw('"\\ude00\\ud83d"'),
           Raw('"\\\\ud800"'), Raw('"\\ud800\\u0041"'), Raw('"tab\\t"')]


class Gen(random.Random):
    """The case generator's dice: ``odd(p)`` is a mutation, scaled by the case's noise so that some cases are clean."""

    noise = 1.0

    def odd(self, p: float) -> bool:
        return self.random() < p * self.noise


def rand_value(g: Gen, depth: int) -> Any:
    """An extra JSON value placed at ``depth``: sometimes nested right around the reader's limit."""
    roll = g.random()
    if roll < 0.25:
        return Raw(g.choice(NUMBERS))
    if roll < 0.45:
        return g.choice(STRINGS)
    if roll < 0.6:
        return nest(MAX_DEPTH - depth + g.randint(-2, 2))
    if roll < 0.7:
        key = g.choice(["k", "k", "dtype"])
        return Obj([(key, rand_value(g, depth + 1)), (key, rand_value(g, depth + 1))])
    if roll < 0.8:
        return [rand_value(g, depth + 1) for _ in range(g.randint(0, 2))]
    return g.choice([None, True, 3, "s"])


def rand_dim(g: Gen) -> Any:
    if g.odd(0.1):
        return g.choice(HUGE)
    if g.odd(0.05):
        return Raw(g.choice(["-0", "-1", "1.0", "true", "1e400", "null", '"2"']))
    return g.choice([0, 1, 1, 2, 3, 4, 5, 7])


def rand_dtype(g: Gen) -> tuple[Any, int | None]:
    if g.odd(0.05):
        name = g.choice(["U8", "F4", "BF16"])
        return Obj([(name, None)]), DTYPE_BITS[name]  # serde reads an enum from a one-key map too
    if g.odd(0.1):
        return g.choice([Raw('"U\\u0038"'), "F128", "u8", "", None, 5, ["U8"], Obj([("U8", 0)]),
                         Obj([("U8", None), ("U8", None)]), Obj([])]), None
    name = g.choice(list(DTYPE_BITS))
    return name, DTYPE_BITS[name]


def byte_size(shape: list[Any], bits: int | None) -> int | None:
    """The size the library derives, or None when it would refuse the shape (or the dtype is unknown)."""
    if bits is None or not all(isinstance(d, int) for d in shape):
        return None
    count = 1
    for dim in shape:
        count *= dim
        if count >= 2**64:
            return None
    return None if count * bits >= 2**64 or count * bits % 8 else count * bits // 8


class Tensor(NamedTuple):
    name: Any
    dtype: Any
    shape: Any
    nbytes: int


def rand_tensor(g: Gen, index: int) -> Tensor:
    dtype, bits = rand_dtype(g)
    shape: Any = [rand_dim(g) for _ in range(g.choice([0, 1, 1, 2, 2, 3]))]
    if g.odd(0.03):
        shape = g.choice([None, "4", Obj([]), Raw("-0")])
    nbytes = byte_size(shape, bits) if isinstance(shape, list) else None
    if nbytes is None or nbytes > 64:
        nbytes = g.randint(0, 8)
    elif g.odd(0.05):
        nbytes += g.choice([-1, 1]) if nbytes else 1
    name = g.choice(NAMES) if g.odd(0.3) else f"t{g.randint(0, 9) if g.odd(0.1) else index}"
    return Tensor(name, dtype, shape, nbytes)


def rand_offsets(g: Gen, begin: int, end: int) -> Any:
    if not g.odd(0.15):
        return [begin, end]
    return g.choice([[end, begin], [begin, end + 1], [begin + 1, end], [Raw("-0"), end], [begin, Raw("-0")],
                     [begin], [begin, end, end], [float(begin), end], Obj([]), [begin, 2**64]])


def rand_entry(g: Gen, tensor: Tensor, offsets: Any) -> Any:
    fields = [("dtype", tensor.dtype), ("shape", tensor.shape), ("data_offsets", offsets)]
    if g.odd(0.08):
        return [value for _, value in fields][: g.choice([3, 3, 3, 2])] + ([0] if g.odd(0.2) else [])
    g.shuffle(fields)
    if g.odd(0.04):
        fields.pop()
    if g.odd(0.3):
        fields.append((g.choice(["extra", "x", "__metadata__"]), rand_value(g, 3)))
    if g.odd(0.05):
        fields.append(g.choice(fields))
    return Obj(fields)


def rand_metadata(g: Gen) -> list[tuple[Any, Any]]:
    roll = g.random()
    if roll < 0.5:
        return []
    if roll < 0.6:
        return [("__metadata__", None)]
    pairs: list[tuple[Any, Any]] = [("format", "pt")]
    if g.odd(0.3):
        pairs.append(("format", g.choice(["np", "np", 1, None])))
    if g.odd(0.2):
        pairs.append((g.choice(STRINGS), g.choice(STRINGS)))
    if g.odd(0.1):
        pairs.append(("deep", nest(g.randint(1, 3))))
    meta: list[tuple[Any, Any]] = [("__metadata__", Obj(pairs))]
    if g.odd(0.05):
        meta.append(("__metadata__", g.choice([None, Obj([])])))
    if g.odd(0.03):
        meta = [("__metadata__", g.choice([[], "x", 1, [["a", "b"]]]))]
    return meta


def rand_case(g: Gen) -> bytes:
    g.noise = g.choice([0.0, 0.3, 1.0, 2.0])
    tensors = [rand_tensor(g, i) for i in range(g.choice([0, 1, 1, 2, 2, 3, 4]))]
    layout = list(range(len(tensors)))
    g.shuffle(layout)  # data order differs from header order
    spans: dict[int, tuple[int, int]] = {}
    position = 0
    for i in layout:
        spans[i] = (position, position + tensors[i].nbytes)
        position += tensors[i].nbytes
    pairs = [(t.name, rand_entry(g, t, rand_offsets(g, *spans[i]))) for i, t in enumerate(tensors)]
    meta = rand_metadata(g)
    pairs[g.randint(0, len(pairs)) if meta else 0:0] = meta
    if pairs and g.odd(0.05):
        pairs.append((pairs[g.randrange(len(pairs))][0], g.choice([None, 3, nest(2), Obj([])])))
    data_size = position + (g.choice([-1, 1, 4]) if position and g.odd(0.05) else 0)
    header = emit(Obj(pairs))
    if g.odd(0.1):
        header = g.choice([" ", "\n", "\t\r ", "\ufeff", "x"]) + header
    pad = g.choice(["\x00", " x"]) if g.odd(0.05) else g.choice(["", " " * g.randint(1, 7), "\n"])
    return blob_of(header, bytes(max(data_size, 0)), pad)


def test_generated_headers_get_the_library_verdict(tmp_path: Path) -> None:
    g = Gen(SEED)
    path = tmp_path / "case.safetensors"
    disagreements = []
    accepted = 0
    for _ in range(CASES):
        blob = rand_case(g)
        found, refused = ours(blob), reference(blob, path)
        accepted += refused is None
        if (found == []) != (refused is None):
            disagreements.append(f"{blob[8:400]!r}\n  ours: {found}\n  library: {refused}")
    assert not disagreements, f"{len(disagreements)} of {CASES} disagree:\n" + "\n".join(disagreements[:20])
    # The generator must keep exercising both sides of the verdict, or the comparison proves little.
    assert CASES // 5 < accepted < CASES * 4 // 5, accepted


# ---- hand-made table: one row per way the two readers once disagreed ---------------------------------------

U8 = entry("U8", [1], [0, 1])


def one(info: Any) -> Obj:
    return Obj([("w", info)])


def w(*args: Any) -> Obj:
    """A header with one tensor "w"."""
    return one(entry(*args))


def deep_extra(levels: int) -> Obj:
    # The header's object is level 1 and the tensor's level 2, so the extra value's innermost list is 2 + levels.
    return one(entry("U8", [1], [0, 1], ("x", nest(levels))))


class Row(NamedTuple):
    why: str
    header: Any
    data: bytes
    problems: list[str]  # our exact lines; [] = the library loads it too


TABLE = [
    # Shape products: the library multiplies left to right with checked u64 arithmetic.
    Row("zero first: no overflow", w("U8", [0, 2**40, 2**40], [0, 0]), b"", []),
    Row("zero last: overflows first", w("U8", [2**40, 2**40, 0], [0, 0]), b"",
        ['tensor "w" has a shape whose size overflows 64 bits']),
    Row("element count fits, bits do not", w("U8", [2**64 - 1], [0, 1]), b"x",
        ['tensor "w" has a shape whose size overflows 64 bits']),
    # serde_json reads -0 as a float: no usize, but fine where any value goes.
    Row("-0 in shape", w("U8", [Raw("-0")], [0, 0]), b"",
        ['tensor "w" has an invalid shape: -0 is read as a float (write 0)']),
    Row("-0 in offsets", w("U8", [0], [Raw("-0"), 0]), b"",
        ['tensor "w" has invalid data_offsets: -0 is read as a float (write 0)']),
    Row("-0 in an extra field", w("U8", [1], [0, 1], ("x", Raw("-0"))), b"x", []),
    # Lone surrogate escapes: Python keeps them, serde_json refuses them anywhere.
    Row("lone surrogate in a tensor name", Obj([(Raw('"\\ud800"'), U8)]), b"x",
        ["safetensors header has a lone UTF-16 surrogate escape in a string"]),
    Row("lone surrogate in metadata", Obj([("__metadata__", Obj([("k", Raw('"\\udc00"'))])), ("w", U8)]), b"x",
        ["safetensors header has a lone UTF-16 surrogate escape in a string"]),
    Row("reversed pair in an extra field", w("U8", [1], [0, 1], ("x", [Raw('"\\ude00\\ud83d"')])), b"x",
        ["safetensors header has a lone UTF-16 surrogate escape in a string"]),
    Row("a real pair", w("U8", [1], [0, 1], ("x", Raw('"\\ud83d\\ude00"'))), b"x", []),
    Row("an escaped backslash, not an escape", w("U8", [1], [0, 1], ("x", Raw('"\\\\ud800"'))), b"x", []),
    # Nesting: serde_json stops at 128 levels, Python's json at its recursion limit.
    Row("127 levels", deep_extra(MAX_DEPTH - 2), b"x", []),
    Row("128 levels", deep_extra(MAX_DEPTH - 1), b"x", ["safetensors header nests more than 127 levels deep"]),
    Row("500 levels: Python's json reads it", deep_extra(500), b"x",
        ["safetensors header nests more than 127 levels deep"]),
    Row("past Python's recursion limit", deep_extra(5000), b"x",
        ["safetensors header nests more than 127 levels deep"]),
    # Numbers past a double: Python reads inf or a big int, serde_json refuses, with its own rounding.
    Row("1e400", w("U8", [1], [0, 1], ("x", Raw("1e400"))), b"x",
        ["safetensors header has a number too large for a 64-bit float"]),
    Row("the largest double", w("U8", [1], [0, 1], ("x", Raw("1.7976931348623157e308"))), b"x", []),
    Row("rounds to the largest double, not for serde_json",
        w("U8", [1], [0, 1], ("x", Raw("1.7976931348623158e308"))), b"x",
        ["safetensors header has a number too large for a 64-bit float"]),
    Row("a 309-digit integer", w("U8", [1], [0, 1], ("x", Raw("9" * 309))), b"x",
        ["safetensors header has a number too large for a 64-bit float"]),
    Row("a 308-digit integer", w("U8", [1], [0, 1], ("x", Raw("9" * 308))), b"x", []),
    # Repeated keys: the last copy wins, but every copy is parsed and type-checked.
    Row("repeated tensor name", Obj([("w", entry("U8", [2], [0, 2])), ("w", U8)]), b"x", []),
    Row("repeated tensor name, bad first copy", Obj([("w", entry("F128", [1], [0, 1])), ("w", U8)]), b"x",
        ['tensor "w" has unknown dtype "F128"']),
    Row("repeated metadata key", Obj([("__metadata__", Obj([("k", "a"), ("k", "b")])), ("w", U8)]), b"x", []),
    Row("repeated metadata key, first not a string", Obj([("__metadata__", Obj([("k", 1), ("k", "b")]))]), b"",
        ["safetensors __metadata__ must map strings to strings"]),
    Row("repeated extra key", w("U8", [1], [0, 1], ("x", 1), ("x", Obj([("y", 1), ("y", 2)]))), b"x", []),
    Row("repeated __metadata__", Obj([("__metadata__", None), ("__metadata__", None)]), b"",
        ['safetensors header lists "__metadata__" more than once']),
    Row("repeated tensor field", Obj([("w", entry("U8", [1], [0, 1], ("dtype", "U8")))]), b"x",
        ['tensor "w" lists "dtype" more than once']),
    # serde reads a struct from a sequence and an enum from a one-key map.
    Row("entry as [dtype, shape, offsets]", Obj([("w", ["U8", [1], [0, 1]])]), b"x", []),
    Row("entry as a two-item list", Obj([("w", ["U8", [1]])]), b"x",
        ['tensor "w" is a list of 2 items, not [dtype, shape, data_offsets]']),
    Row('dtype as {"U8": null}', w(Obj([("U8", None)]), [1], [0, 1]), b"x", []),
    Row('dtype as {"U8": 0}', w(Obj([("U8", 0)]), [1], [0, 1]), b"x",
        ['tensor "w" has an invalid dtype: it must be a name such as "F32"']),
    # Same verdict all along, kept so that it stays so.
    Row("leading whitespace", "\n {}", b"", []),
    Row("escaped field name", Obj([("w", Obj([(Raw('"dt\\u0079pe"'), "U8"), ("shape", [1]),
                                              ("data_offsets", [0, 1])]))]), b"x", []),
]


@pytest.mark.parametrize(("header", "data", "problems"), [pytest.param(*row[1:], id=row.why) for row in TABLE])
def test_table_verdicts_and_messages(header: Any, data: bytes, problems: list[str], tmp_path: Path) -> None:
    blob = blob_of(header, data)
    refused = reference(blob, tmp_path / "case.safetensors")
    assert (refused is None) == (problems == []), refused
    assert ours(blob) == [Finding(problem, RESAVE) for problem in problems]


# ---- the one deliberate difference: what a push may make the hook parse ------------------------------------
# The library reads a header of up to 100 MB, with any number of arrays and objects in it. The hook parses it
# inside a push, for any pusher, with Python's json, which spends up to fifty times a header's size in memory;
# so it refuses a header past 16 MiB or 2**20 arrays and objects, with a hint to shard the model. The library
# loads both files below. No generated case above comes near either bound.

SHARDS = "split the model into shards with fewer tensors each, e.g. save_pretrained(max_shard_size=...)"

DIFFERENCES = [
    Row("a header over 16 MiB", emit(one(U8)) + " " * MAX_HEADER_SIZE, b"x",
        ["safetensors header is 16.1 MiB, over the 16 MiB this server reads"]),
    # The header, the tensor's entry, its shape and offsets, and the skipped field "x" are five more.
    Row("over 2**20 arrays and objects", w("U8", [1], [0, 1], ("x", Raw(f"[{'[],' * (MAX_CONTAINERS - 5)}[]]"))), b"x",
        ["safetensors header holds 1048577 arrays and objects, over the 1048576 this server reads"]),
]


@pytest.mark.parametrize(("header", "data", "problems"), [pytest.param(*row[1:], id=row.why) for row in DIFFERENCES])
def test_documented_differences(header: Any, data: bytes, problems: list[str], tmp_path: Path) -> None:
    blob = blob_of(header, data)
    assert reference(blob, tmp_path / "case.safetensors") is None
    assert ours(blob) == [Finding(problem, SHARDS) for problem in problems]
