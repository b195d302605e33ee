"""Structural check of a ``.safetensors`` file: header length, JSON header and tensor layout.

Only the 8-byte length prefix and the JSON header are read; tensor data is never touched, so the cost is
bounded by the header size (at most 100 MB by the format's own limit), not by the file size.

The rules mirror the reference implementation (``safetensors/src/tensor.rs``: ``read_metadata`` and
``Metadata::validate``) so that a file accepted here also loads with ``safetensors.safe_open``. One rule
is stricter: a key repeated in the header is refused, because JSON parsers disagree on which copy wins.
"""

from __future__ import annotations

import json
import struct
from typing import Any, BinaryIO, cast

from . import Finding, Findings, shown

# Same limit as the reference implementation (``MAX_HEADER_SIZE``).
MAX_HEADER_SIZE = 100_000_000

# Element width in *bits*, from ``Dtype::bitsize`` in safetensors/src/tensor.rs; the list is the one
# safetensors 0.8.0 accepts. F4 and F6 are packed sub-byte types: a tensor of them must fill whole bytes.
DTYPE_BITS: dict[str, int] = {
    "BOOL": 8,
    "F4": 4,
    "F6_E2M3": 6,
    "F6_E3M2": 6,
    "U8": 8,
    "I8": 8,
    "F8_E5M2": 8,
    "F8_E4M3": 8,
    "F8_E8M0": 8,
    "F8_E4M3FNUZ": 8,
    "F8_E5M2FNUZ": 8,
    "I16": 16,
    "U16": 16,
    "F16": 16,
    "BF16": 16,
    "I32": 32,
    "U32": 32,
    "F32": 32,
    "C64": 64,
    "F64": 64,
    "I64": 64,
    "U64": 64,
}

# Hostile headers can hold millions of broken entries; nobody reads past the first few.

_RESAVE = "re-save it with safetensors.torch.save_file"
_TRUNCATED = "the file looks truncated: push it again with Git LFS"


def _findings() -> Findings:
    return Findings("safetensors header problems", _RESAVE, counted=False)


def _is_uint(value: Any) -> bool:
    """A JSON number the reference parser reads as ``usize``: a non-negative integer below 2**64."""
    # bool is a subclass of int in Python but not a number in JSON.
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**64


def _pairs_hook(found: Findings) -> Any:
    """JSON object hook that reports duplicate keys: parsers disagree on which duplicate wins."""

    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, value in pairs:
            if key in result:
                found.add(f'safetensors header lists "{shown(key)}" more than once')
            result[key] = value
        return result

    return hook


def _reject_constant(name: str) -> Any:
    # NaN/Infinity are Python extensions to JSON; the Rust parser rejects them.
    raise ValueError(f"non-standard JSON constant {name}")


def _parse_header(raw: bytes, found: Findings) -> dict[str, Any] | None:
    """Decode and parse the header, or record why it cannot be and return None."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        found.add("safetensors header is not valid UTF-8")
        return None
    try:
        header = json.loads(text, object_pairs_hook=_pairs_hook(found), parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        found.add("safetensors header is not valid JSON")
        return None
    if not isinstance(header, dict):
        found.add("safetensors header is not a JSON object")
        return None
    return header


def _element_count(shape: list[int], limit: int) -> int | None:
    """Product of ``shape``, or None once it passes ``limit``.

    A hostile header can list millions of huge dimensions; the exact product would have millions of
    digits and take quadratic time, while anything past the file size is already wrong.
    """
    if 0 in shape:
        return 0
    count = 1
    for dim in shape:
        count *= dim
        if count > limit:
            return None
    return count


def _check_tensor(name: str, info: Any, limit: int, found: Findings) -> tuple[int, int] | None:
    """Check one tensor entry; return its (begin, end) offsets when they are usable for the layout check.

    ``limit`` bounds the element count worth computing exactly (more elements than bits in the file).
    """
    label = shown(name)
    if not isinstance(info, dict):
        found.add(f'tensor "{label}" is not described by a JSON object')
        return None
    dtype = info.get("dtype")
    shape = info.get("shape")
    offsets = info.get("data_offsets")

    bits = DTYPE_BITS.get(dtype) if isinstance(dtype, str) else None
    if dtype is None:
        found.add(f'tensor "{label}" has no dtype')
    elif bits is None:
        found.add(f'tensor "{label}" has unknown dtype "{shown(dtype)}"')
    shape_ok = isinstance(shape, list) and all(_is_uint(dim) for dim in shape)
    if not shape_ok:
        found.add(f'tensor "{label}" has an invalid shape: it must be a list of non-negative integers')
    offsets_ok = (
        isinstance(offsets, list)
        and len(offsets) == 2
        and _is_uint(offsets[0])
        and _is_uint(offsets[1])
        and offsets[0] <= offsets[1]
    )
    if not offsets_ok:
        found.add(f'tensor "{label}" has invalid data_offsets: they must be [begin, end] with 0 <= begin <= end')
        return None

    begin, end = cast("list[int]", offsets)  # offsets_ok says so
    if bits is not None and shape_ok:
        count = _element_count(cast("list[int]", shape), limit)
        if count is None:
            found.add(f'tensor "{label}" has a shape larger than the whole file')
        elif count * bits % 8:
            found.add(f'tensor "{label}" of dtype {dtype} does not fill a whole number of bytes')
        elif end - begin != count * bits // 8:
            found.add(
                f'tensor "{label}" spans {end - begin} bytes but its shape and dtype need {count * bits // 8}'
            )
    return begin, end


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
    if length > MAX_HEADER_SIZE:
        # Never read it: the length is attacker-controlled and may be anything up to 2**64 - 1.
        found.add(f"safetensors header length {length} exceeds the {MAX_HEADER_SIZE}-byte limit")
        return found.result()
    if 8 + length > size:
        found.add(
            f"safetensors header length {length} runs past the end of the {size}-byte file", _TRUNCATED
        )
        return found.result()
    raw = f.read(length)
    if len(raw) < length:
        found.add("file ends inside the safetensors header", _TRUNCATED)
        return found.result()

    header = _parse_header(raw, found)
    if header is None:
        return found.result()

    spans: list[tuple[int, int, str]] = []
    complete = True
    for name, info in header.items():
        if found.full:
            return found.result()
        if name == "__metadata__":
            # Optional free-form metadata: a map of strings to strings (null is accepted as absent).
            if info is not None and not (
                isinstance(info, dict) and all(isinstance(v, str) for v in info.values())
            ):
                found.add("safetensors __metadata__ must map strings to strings")
            continue
        offsets = _check_tensor(name, info, 8 * size, found)
        if offsets is None:
            complete = False
        else:
            spans.append((offsets[0], offsets[1], name))
    # With some offsets unreadable the layout would show gaps that are only echoes of that problem.
    if complete:
        _check_layout(spans, size - 8 - length, found)
    return found.result()
