"""check_safetensors on hand-built files: one valid layout and one file per kind of breakage."""

from __future__ import annotations

import io
import json
import struct
from pathlib import Path
from typing import Any

from gitea_hf_hook.checks.scanners import MAX_FINDINGS, Finding
from gitea_hf_hook.checks.scanners.safetensors import check_safetensors

RESAVE = "re-save it with safetensors.torch.save_file"
TRUNCATED = "the file looks truncated: push it again with Git LFS"


def raw_file(header: bytes, data: bytes = b"") -> bytes:
    """8-byte little-endian header length, the header bytes, then the data section."""
    return struct.pack("<Q", len(header)) + header + data


def encode_header(header: Any) -> bytes:
    """JSON header padded with spaces to a multiple of 8, as safetensors writes it."""
    text = json.dumps(header).encode()
    return text + b" " * (-len(text) % 8)


def build(tensors: dict[str, tuple[str, list[int], int]], metadata: dict[str, str] | None = None) -> bytes:
    """A well-formed file: tensors laid out back to back in order; values are (dtype, shape, nbytes)."""
    header: dict[str, Any] = {"__metadata__": metadata} if metadata is not None else {}
    offset = 0
    for name, (dtype, shape, nbytes) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    return raw_file(encode_header(header), bytes(range(256)) * (offset // 256) + bytes(offset % 256))


def check(blob: bytes) -> list[Finding]:
    return check_safetensors(io.BytesIO(blob), len(blob))


def problems(blob: bytes) -> list[str]:
    return [finding.problem for finding in check(blob)]


VALID = {
    "embed.weight": ("BF16", [4, 3], 24),
    "proj.weight": ("F32", [2, 2], 16),
    "steps": ("I64", [], 8),
    "mask": ("BOOL", [5], 5),
    "phase": ("C64", [1], 8),
    "packed": ("F4", [6], 3),  # two 4-bit elements per byte
    "mx6": ("F6_E2M3", [4], 3),  # four 6-bit elements fill three bytes
    "scale": ("F8_E8M0", [2], 2),
    "amd_fp8": ("F8_E4M3FNUZ", [3], 3),
    "empty": ("F16", [0, 7], 0),
}


def test_valid_file_with_several_dtypes_passes() -> None:
    assert check(build(VALID, metadata={"format": "pt"})) == []


def test_valid_real_file_on_disk_passes(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    path.write_bytes(build(VALID))
    with path.open("rb") as f:
        assert check_safetensors(f, path.stat().st_size) == []


def test_tensor_data_is_never_read() -> None:
    # The data section of a 1 TB file is absent from the buffer: only the header may be read.
    size, header_length = 10**12, 128
    data_length = size - 8 - header_length
    entry = {"dtype": "U8", "shape": [data_length], "data_offsets": [0, data_length]}
    header = json.dumps({"big": entry}).encode().ljust(header_length)
    assert check_safetensors(io.BytesIO(raw_file(header)), size) == []


def test_unordered_header_entries_are_sorted_by_offset() -> None:
    header = {
        "b": {"dtype": "U8", "shape": [4], "data_offsets": [4, 8]},
        "a": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]},
    }
    assert check(raw_file(encode_header(header), bytes(8))) == []


def test_too_short() -> None:
    assert check(b"\x01\x00\x00") == [Finding("file is too short to be safetensors (3 bytes)", TRUNCATED)]


def test_huge_header_length() -> None:
    blob = struct.pack("<Q", 2**63) + b"{}"
    assert check(blob) == [
        Finding(f"safetensors header length {2**63} exceeds the 100000000-byte limit", RESAVE)
    ]


def test_header_length_beyond_file() -> None:
    blob = struct.pack("<Q", 64) + b'{"a": 1}'
    assert check(blob) == [
        Finding("safetensors header length 64 runs past the end of the 16-byte file", TRUNCATED)
    ]


def test_truncated_data() -> None:
    blob = build(VALID)[:-5]
    assert check(blob) == [Finding("file is 5 bytes shorter than its safetensors header says", TRUNCATED)]


def test_bytes_after_last_tensor() -> None:
    assert problems(build(VALID) + b"junk") == ["4 unexpected bytes after the last tensor"]


def test_header_not_json() -> None:
    assert check(raw_file(b"{not json}      ")) == [Finding("safetensors header is not valid JSON", RESAVE)]


def test_header_not_utf8() -> None:
    assert problems(raw_file(b'{"\xff": 1}')) == ["safetensors header is not valid UTF-8"]


def test_header_not_an_object() -> None:
    assert problems(raw_file(encode_header([1, 2]))) == ["safetensors header is not a JSON object"]


def test_nan_is_not_json() -> None:
    header = b'{"a": {"dtype": "U8", "shape": [NaN], "data_offsets": [0, 0]}}'
    assert problems(raw_file(header)) == ["safetensors header is not valid JSON"]


def test_unknown_dtype() -> None:
    blob = build({"w": ("F128", [2], 32)})
    assert check(blob) == [Finding('tensor "w" has unknown dtype "F128"', RESAVE)]


def test_missing_dtype() -> None:
    header = {"w": {"shape": [1], "data_offsets": [0, 1]}}
    assert problems(raw_file(encode_header(header), b"x")) == ['tensor "w" has no dtype']


def test_gap_between_tensors() -> None:
    header = {
        "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
        "b": {"dtype": "F32", "shape": [2], "data_offsets": [12, 20]},
    }
    assert problems(raw_file(encode_header(header), bytes(20))) == ['4 unused bytes before tensor "b"']


def test_data_not_starting_at_zero() -> None:
    header = {"a": {"dtype": "U8", "shape": [2], "data_offsets": [2, 4]}}
    assert problems(raw_file(encode_header(header), bytes(4))) == ['2 unused bytes before tensor "a"']


def test_overlapping_tensors() -> None:
    header = {
        "a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
        "b": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]},
    }
    assert problems(raw_file(encode_header(header), bytes(16))) == ['tensor "b" overlaps another tensor']


def test_shape_and_offsets_disagree() -> None:
    header = {"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 8]}}
    assert check(raw_file(encode_header(header), bytes(8))) == [
        Finding('tensor "w" spans 8 bytes but its shape and dtype need 16', RESAVE)
    ]


def test_sub_byte_tensor_must_fill_whole_bytes() -> None:
    header = {"w": {"dtype": "F4", "shape": [3], "data_offsets": [0, 2]}}
    assert problems(raw_file(encode_header(header), bytes(2))) == [
        'tensor "w" of dtype F4 does not fill a whole number of bytes'
    ]


def test_shape_larger_than_file() -> None:
    header = {"w": {"dtype": "U8", "shape": [2**40, 2**40, 2**40], "data_offsets": [0, 4]}}
    assert problems(raw_file(encode_header(header), bytes(4))) == ['tensor "w" has a shape larger than the whole file']


def test_invalid_shape() -> None:
    for shape in ([-1], [True], [1.0], "4", None):
        header = {"w": {"dtype": "U8", "shape": shape, "data_offsets": [0, 1]}}
        assert problems(raw_file(encode_header(header), b"x")) == [
            'tensor "w" has an invalid shape: it must be a list of non-negative integers'
        ], shape


def test_invalid_offsets() -> None:
    for offsets in ([4, 0], [0], [0, 1, 2], [-1, 0], [0, 2**64], None):
        header = {"w": {"dtype": "U8", "shape": [1], "data_offsets": offsets}}
        assert problems(raw_file(encode_header(header), b"x")) == [
            'tensor "w" has invalid data_offsets: they must be [begin, end] with 0 <= begin <= end'
        ], offsets


def test_tensor_entry_not_an_object() -> None:
    assert problems(raw_file(encode_header({"w": [1, 2]}))) == ['tensor "w" is not described by a JSON object']


def test_metadata_must_map_strings_to_strings() -> None:
    blob = build({"w": ("U8", [1], 1)}, metadata={"epochs": 3})  # type: ignore[dict-item]
    assert problems(blob) == ["safetensors __metadata__ must map strings to strings"]


def test_duplicate_tensor_name() -> None:
    entry = '{"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}'
    header = f'{{"w": {entry}, "w": {entry}}}'.encode()
    assert problems(raw_file(header, b"x")) == ['safetensors header lists "w" more than once']


def test_hostile_names_are_escaped_and_capped() -> None:
    name = "w\n\x1b[31mERROR\u202e" + "x" * 200
    blob = build({name: ("F999", [1], 1)})
    (finding,) = check(blob)
    assert finding.problem == (
        'tensor "w\\n\\x1b[31mERROR\\u202e' + "x" * 58 + '..." has unknown dtype "F999"'
    )


def test_findings_are_capped() -> None:
    blob = build({f"t{i}": ("F999", [1], 1) for i in range(50)})
    found = check(blob)
    assert len(found) == MAX_FINDINGS + 1
    assert found[0] == Finding('tensor "t0" has unknown dtype "F999"', RESAVE)
    assert found[-1] == Finding("more safetensors header problems not listed", RESAVE)
