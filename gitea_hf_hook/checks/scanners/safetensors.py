"""Structural check of a ``.safetensors`` file: header length, JSON header and tensor layout.

Only the 8-byte length prefix and the JSON header are read; tensor data is never touched, so the cost is
bounded by the header size, not by the file size.

A file is accepted exactly when the reference reader (safetensors 0.8: ``read_metadata``, ``Metadata::validate``
and the serde_json parser under them, whose rules ``json_reader`` adds to Python's json) loads it, because a check
that disagrees with that reader either blocks good models or publishes files that will not load;
tests/checks/scanners/test_safetensors_reference.py holds the two side by side. The header is read as serde
does: every copy of a repeated key is parsed but the last one wins, a tensor entry may be a
``[dtype, shape, data_offsets]`` list, a dtype may be ``{"F32": null}``, and shapes are multiplied left to right
with checked 64-bit arithmetic.

One difference is deliberate: this check runs inside a push, for any pusher, and Python's json spends up to
fifty times a header's size in memory on it, so a header over ``MAX_HEADER_SIZE`` (the library allows 100 MB) or
holding more than ``MAX_CONTAINERS`` arrays and objects is refused with a hint to split the model into shards.
"""

from __future__ import annotations

import struct
from math import ceil, copysign, prod
from typing import Any, BinaryIO, NamedTuple, cast

from . import Finding, Findings, shown
from .json_reader import dropped, read_object

# The reference implementation's limit (``MAX_HEADER_SIZE``): past it the file loads nowhere.
LIBRARY_MAX_HEADER_SIZE = 100_000_000
# Ours, lower, to bound memory at push time. A header of 100,000 tensors with real names, shapes and offsets, in
# the library's compact format, is 12 to 13 MiB (125 to 135 bytes a tensor); each shard of a sharded model has a
# header of its own tensors only.
MAX_HEADER_SIZE = 16 * 2**20
# The library writes each tensor as an object holding two lists, in at least 50 bytes: under 2**20 arrays and
# objects in MAX_HEADER_SIZE. Only a hand-made header holds more, and each costs Python's json about 90 bytes.
MAX_CONTAINERS = 2**20

# Element width in *bits*, from ``Dtype::bitsize`` in safetensors/src/tensor.rs; the list is the one
# safetensors 0.8.0 accepts. F4 and F6 are packed sub-byte types: a tensor of them must fill whole bytes.
DTYPE_BITS: dict[str, int] = {
    "BOOL": 8, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6, "U8": 8, "I8": 8,
    "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8, "F8_E4M3FNUZ": 8, "F8_E5M2FNUZ": 8,
    "I16": 16, "U16": 16, "F16": 16, "BF16": 16, "I32": 32, "U32": 32, "F32": 32,
    "C64": 64, "F64": 64, "I64": 64, "U64": 64,
}
_FIELDS = ("dtype", "shape", "data_offsets")
_OFFSETS_RULE = "they must be [begin, end] with 0 <= begin <= end"
_MINUS_ZERO = "-0 is read as a float (write 0)"

_RESAVE = "re-save it with safetensors.torch.save_file"
_TRUNCATED = "the file looks truncated: push it again with Git LFS"
_SHARDS = "split the model into shards with fewer tensors each, e.g. save_pretrained(max_shard_size=...)"
_U64_MAX = 2**64 - 1


def _findings() -> Findings:
    return Findings("safetensors header problems", _RESAVE, counted=False)


def _is_uint(value: Any) -> bool:
    """A JSON number the reference parser reads as ``usize``: a non-negative integer below 2**64."""
    # bool is a subclass of int in Python but not a number in JSON.
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _U64_MAX


def _has_minus_zero(values: Any) -> bool:
    return isinstance(values, list) and any(isinstance(v, float) and v == 0 and copysign(1, v) < 0 for v in values)


class _Entry(NamedTuple):
    """A tensor entry as the reader's parser sees it; a field is None when it does not parse."""

    dtype: str | None
    bits: int | None
    shape: list[int] | None
    offsets: tuple[int, int] | None


def _dtype_bits(label: str, dtype: Any, found: Findings) -> tuple[str | None, int | None]:
    """Name and element width of a dtype given as ``"F32"`` or, as serde also reads an enum, ``{"F32": null}``."""
    name = dtype
    if isinstance(dtype, dict) and len(dtype) == 1 and not dropped(dtype):
        ((name, unit),) = dtype.items()
        if unit is not None:
            name = None
    if not isinstance(name, str):
        found.add(f'tensor "{label}" has an invalid dtype: it must be a name such as "F32"')
        return None, None
    bits = DTYPE_BITS.get(name)
    if bits is None:
        found.add(f'tensor "{label}" has unknown dtype "{shown(name)}"')
    return name, bits


def _read_tensor(label: str, info: Any, found: Findings) -> _Entry | None:
    """The parse-time checks of one tensor entry, an object or a ``[dtype, shape, data_offsets]`` list."""
    if isinstance(info, list):
        if len(info) != 3:
            found.add(f'tensor "{label}" is a list of {len(info)} items, not [dtype, shape, data_offsets]')
            return None
        dtype, shape, offsets = info
        name, bits = _dtype_bits(label, dtype, found)
    elif isinstance(info, dict):
        for key, _ in dropped(info):
            if key in _FIELDS:
                found.add(f'tensor "{label}" lists "{key}" more than once')
                return None
        dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
        if "dtype" in info:
            name, bits = _dtype_bits(label, dtype, found)
        else:
            found.add(f'tensor "{label}" has no dtype')
            name, bits = None, None
    else:
        found.add(f'tensor "{label}" is not described by a JSON object')
        return None

    shape_ok = isinstance(shape, list) and all(_is_uint(dim) for dim in shape)
    if not shape_ok:
        why = _MINUS_ZERO if _has_minus_zero(shape) else "it must be a list of non-negative integers"
        found.add(f'tensor "{label}" has an invalid shape: {why}')
    offsets_ok = isinstance(offsets, list) and len(offsets) == 2 and all(_is_uint(v) for v in offsets)
    if not offsets_ok:
        why = _MINUS_ZERO if _has_minus_zero(offsets) else _OFFSETS_RULE
        found.add(f'tensor "{label}" has invalid data_offsets: {why}')
    return _Entry(
        name, bits, cast("list[int]", shape) if shape_ok else None, (offsets[0], offsets[1]) if offsets_ok else None
    )


def _size_in_bits(shape: list[int], bits: int) -> int | None:
    """``Metadata::validate``'s size: the dimensions multiplied in order, None once a product passes u64.

    The order matters: ``[2**40, 2**40, 0]`` overflows before the 0 is reached, ``[0, 2**40, 2**40]`` does not.
    Before the first 0 every product grows, so checking after each block of dimensions is enough; a block's
    product stays small, so even millions of dimensions cost linear time.
    """
    zero = shape.index(0) if 0 in shape else len(shape)
    count = 1
    for start in range(0, zero, 64):
        count *= prod(shape[start:min(start + 64, zero)])
        if count > _U64_MAX:
            return None
    if zero < len(shape):
        return 0
    count *= bits
    return count if count <= _U64_MAX else None


def _check_tensor(name: str, copies: list[Any], found: Findings) -> tuple[int, int] | None:
    """Check one tensor name's entries (a repeated name's earlier ones too: the reader parses them all).

    The last entry is the one loaded; return its ``(begin, end)`` when usable for the layout check.
    """
    label = shown(name)
    entries = [_read_tensor(label, info, found) for info in copies]
    last = entries[-1]
    if last is None or last.offsets is None:
        return None
    begin, end = last.offsets
    if begin > end:
        found.add(f'tensor "{label}" has invalid data_offsets: {_OFFSETS_RULE}')
        return None
    if last.bits is not None and last.shape is not None:
        nbits = _size_in_bits(last.shape, last.bits)
        if nbits is None:
            found.add(f'tensor "{label}" has a shape whose size overflows 64 bits')
        elif nbits % 8:
            found.add(f'tensor "{label}" of dtype {last.dtype} does not fill a whole number of bytes')
        elif end - begin != nbits // 8:
            found.add(f'tensor "{label}" spans {end - begin} bytes but its shape and dtype need {nbits // 8}')
    return begin, end


def _check_metadata(copies: list[Any], found: Findings) -> None:
    if len(copies) > 1:
        found.add('safetensors header lists "__metadata__" more than once')
        return
    info = copies[0]
    # Optional free-form metadata: a map of strings to strings (null is accepted as absent).
    if info is None:
        return
    values = [*info.values(), *(value for _, value in dropped(info))] if isinstance(info, dict) else [0]
    if not all(isinstance(v, str) for v in values):
        found.add("safetensors __metadata__ must map strings to strings")


def _check_layout(spans: list[tuple[int, int, str]], data_size: int, found: Findings) -> None:
    """Tensors must tile the data section exactly: sorted by offset, no gap, no overlap, nothing after."""
    spans.sort()
    position = 0
    for begin, end, name in spans:
        if begin > position:
            found.add(f'{begin - position} unused bytes before tensor "{shown(name)}"')
        elif begin < position:
            found.add(f'tensor "{shown(name)}" overlaps another tensor')
        position = max(position, end)
    if position > data_size:
        found.add(
            f"file is {position - data_size} bytes shorter than its safetensors header says",
            _TRUNCATED,
        )
    elif position < data_size:
        found.add(f"{data_size - position} unexpected bytes after the last tensor")


def check_safetensors(f: BinaryIO, size: int) -> list[Finding]:
    """Check that ``f`` (``size`` bytes, positioned at 0) is a well-formed safetensors file.

    Reads the 8-byte little-endian header length and the JSON header only. Returns one ``Finding``
    per distinct problem (capped), or an empty list when the file would load.
    """
    found = _findings()
    if size < 8:
        found.add(f"file is too short to be safetensors ({size} bytes)", _TRUNCATED)
        return found.result()
    prefix = f.read(8)
    if len(prefix) < 8:
        found.add("file is too short to be safetensors", _TRUNCATED)
        return found.result()
    (length,) = struct.unpack("<Q", prefix)
    # The library's own refusals first, in its order; the length is attacker-controlled, up to 2**64 - 1.
    if length > LIBRARY_MAX_HEADER_SIZE:
        found.add(f"safetensors header length {length} exceeds the {LIBRARY_MAX_HEADER_SIZE}-byte limit")
        return found.result()
    if 8 + length > size:
        found.add(
            f"safetensors header length {length} runs past the end of the {size}-byte file", _TRUNCATED
        )
        return found.result()
    if length > MAX_HEADER_SIZE:
        # Rounded up, so that a header just over the limit does not read as the limit itself.
        found.add(f"safetensors header is {ceil(length * 10 / 2**20) / 10:.1f} MiB, over the "
                  f"{MAX_HEADER_SIZE // 2**20} MiB this server reads", _SHARDS)
        return found.result()
    raw = f.read(length)
    if len(raw) < length:
        found.add("file ends inside the safetensors header", _TRUNCATED)
        return found.result()

    parsed = read_object(raw, MAX_CONTAINERS)
    header = parsed.value
    if header is None:
        found.add(f"safetensors header {parsed.problem}", _SHARDS if parsed.limit else None)
        return found.result()

    earlier: dict[str, list[Any]] = {}
    for name, info in dropped(header):
        earlier.setdefault(name, []).append(info)
    spans: list[tuple[int, int, str]] = []
    complete = True
    for name, info in header.items():
        if found.full:
            return found.result()
        copies = [*earlier.get(name, ()), info]
        if name == "__metadata__":
            _check_metadata(copies, found)
            continue
        offsets = _check_tensor(name, copies, found)
        if offsets is None:
            complete = False
        else:
            spans.append((offsets[0], offsets[1], name))
    # With some offsets unreadable the layout would show gaps that are only echoes of that problem.
    if complete:
        _check_layout(spans, size - 8 - length, found)
    return found.result()
