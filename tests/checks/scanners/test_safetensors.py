"""check_safetensors on hand-built files: one valid layout and one file per kind of breakage.

Then the bounds that keep a hostile header's cost at push time small: its size, the arrays and objects in it,
and the peak memory of the worst headers within both, measured in a child process.
"""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
from collections.abc import Callable, Iterator
from itertools import islice
from pathlib import Path
from typing import Any

import pytest

from gitea_hf_hook.checks.scanners import MAX_FINDINGS, Finding
from gitea_hf_hook.checks.scanners.safetensors import MAX_CONTAINERS, MAX_HEADER_SIZE, check_safetensors
from tests.support.jobs import ROOT

RESAVE = "re-save it with safetensors.torch.save_file"
TRUNCATED = "the file looks truncated: push it again with Git LFS"
SHARDS = "split the model into shards with fewer tensors each, e.g. save_pretrained(max_shard_size=...)"
MIB = 2**20


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


def test_shape_overflowing_64_bits() -> None:
    # The reader multiplies the dimensions with checked 64-bit arithmetic: this is its reason for refusing.
    header = {"w": {"dtype": "U8", "shape": [2**40, 2**40, 2**40], "data_offsets": [0, 4]}}
    assert problems(raw_file(encode_header(header), bytes(4))) == ['tensor "w" has a shape whose size overflows 64 bits']


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
    assert problems(raw_file(encode_header({"w": 5}))) == ['tensor "w" is not described by a JSON object']


def test_tensor_entry_as_a_list() -> None:
    # The reader also takes a tensor entry as [dtype, shape, data_offsets], as serde reads any struct.
    assert check(raw_file(encode_header({"w": ["U8", [1], [0, 1]]}), b"x")) == []
    assert problems(raw_file(encode_header({"w": [1, 2]}))) == [
        'tensor "w" is a list of 2 items, not [dtype, shape, data_offsets]'
    ]


def test_metadata_must_map_strings_to_strings() -> None:
    blob = build({"w": ("U8", [1], 1)}, metadata={"epochs": 3})  # type: ignore[dict-item]
    assert problems(blob) == ["safetensors __metadata__ must map strings to strings"]


def test_duplicate_tensor_name_loads_the_last_copy() -> None:
    # The reader keeps the last copy of a repeated tensor name, as Python's json does, so the file loads.
    first = '{"dtype": "U8", "shape": [2], "data_offsets": [0, 2]}'
    last = '{"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}'
    assert check(raw_file(f'{{"w": {first}, "w": {last}}}'.encode(), b"x")) == []
    assert problems(raw_file(f'{{"w": {last}, "w": {first}}}'.encode(), b"x")) == [
        "file is 1 bytes shorter than its safetensors header says"
    ]


def test_duplicate_metadata_or_tensor_field() -> None:
    # These the reader refuses: serde's derived structs reject a field given twice.
    header = b'{"__metadata__": {}, "__metadata__": {}}'
    assert problems(raw_file(header)) == ['safetensors header lists "__metadata__" more than once']
    header = b'{"w": {"dtype": "U8", "shape": [1], "shape": [1], "data_offsets": [0, 1]}}'
    assert problems(raw_file(header, b"x")) == ['tensor "w" lists "shape" more than once']


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


# ---- bounds at push time ----------------------------------------------------------------------------------


def test_header_over_this_servers_limit_is_never_read() -> None:
    # The library reads headers up to 100 MB, which can cost Python's json gigabytes: this server stops at 16 MiB.
    length = 40 * MIB
    only_the_length = io.BytesIO(struct.pack("<Q", length))
    assert check_safetensors(only_the_length, 8 + length) == [
        Finding("safetensors header is 40.0 MiB, over the 16 MiB this server reads", SHARDS)
    ]


def test_header_just_over_the_limit_does_not_read_as_the_limit() -> None:
    length = MAX_HEADER_SIZE + 1
    assert check_safetensors(io.BytesIO(struct.pack("<Q", length)), 8 + length) == [
        Finding("safetensors header is 16.1 MiB, over the 16 MiB this server reads", SHARDS)
    ]


def test_header_at_the_limit_is_read() -> None:
    assert check(raw_file(b"{}".ljust(MAX_HEADER_SIZE))) == []


def test_oversized_header_past_the_end_of_the_file_is_a_truncation() -> None:
    # The library's own refusals come first, as it makes them: this file is broken wherever it is loaded.
    assert check(struct.pack("<Q", 40 * MIB) + b"{}") == [
        Finding("safetensors header length 41943040 runs past the end of the 10-byte file", TRUNCATED)
    ]


def with_empty_lists(count: int) -> bytes:
    """A valid tensor whose entry holds ``count`` empty lists in a field the reader skips: 5 + count containers."""
    lists = b"[]," * count
    return raw_file(b'{"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"x":[' + lists[:-1] + b"]}}", b"x")


def test_arrays_and_objects_up_to_the_bound_are_read() -> None:
    assert check(with_empty_lists(MAX_CONTAINERS - 5)) == []


def test_arrays_and_objects_past_the_bound_are_refused() -> None:
    # 3 bytes of header cost Python's json 64 bytes of memory; the library never writes a header this dense.
    assert check(with_empty_lists(MAX_CONTAINERS - 4)) == [
        Finding("safetensors header holds 1048577 arrays and objects, over the 1048576 this server reads", SHARDS)
    ]


def test_brackets_inside_strings_are_not_counted() -> None:
    # An escaped quote and an escaped backslash ahead of them: neither ends the string.
    value = '\\"' + "{[" * MAX_CONTAINERS
    blob = build({"w": ("U8", [1], 1)}, metadata={"note": value})
    assert check(blob) == []


def moe_tensors(count: int) -> Iterator[tuple[str, str, list[int]]]:
    """Tensors of a mixture-of-experts checkpoint: fp8 expert weights, each with its fp32 block scales."""
    layer = expert = 0
    made = 0
    while True:
        for proj, shape in (("gate_proj", [2048, 7168]), ("up_proj", [2048, 7168]), ("down_proj", [7168, 2048])):
            for suffix, dtype, dims in (("weight", "F8_E4M3", shape), ("weight_scale_inv", "F32",
                                                                        [shape[0] // 128, shape[1] // 128])):
                if made == count:
                    return
                yield f"model.layers.{layer}.mlp.experts.{expert}.{proj}.{suffix}", dtype, dims
                made += 1
        expert = (expert + 1) % 256
        if expert == 0:
            layer += 1


def test_a_realistic_100k_tensor_header_is_read() -> None:
    # Written as the library writes it: compact JSON, padded to 8 bytes. 12.7 MiB, 133 bytes a tensor: within the
    # bound, if not by far; each shard of a sharded checkpoint has a header of its own tensors only.
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, dtype, shape in moe_tensors(100_000):
        nbytes = shape[0] * shape[1] * (1 if dtype == "F8_E4M3" else 4)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    assert 12.5 * MIB < len(text) < 13 * MIB
    # 730 GB of tensors: only the header is given, as only the header is read.
    assert check_safetensors(io.BytesIO(raw_file(text)), 8 + len(text) + offset) == []


def nested_lists(count: int) -> bytes:
    """``count`` arrays as chains 125 deep (inside the header's object and one list: the depth limit), comma-joined.

    Two bytes an array, each holding one: the most memory per byte Python's json can be made to spend.
    """
    chain = b"[" * 125 + b"]" * 125
    whole, rest = divmod(count, 125)
    return b",".join([chain] * whole + ([b"[" * rest + b"]" * rest] if rest else []))


def distinct_keys(size: int) -> bytes:
    """Members ``"ĀĀ":0`` with distinct two-letter keys, at most ``size`` bytes: each key is a string of its own."""
    letters = [chr(c).encode() for c in range(0x100, 0x800)]  # two bytes each: every member is 8, and a comma
    members = (size + 1) // 9
    rows = (b",".join(b'"' + first + second + b'":0' for second in letters) for first in letters)
    return b",".join(islice(rows, members // len(letters) + 1))[:9 * members - 1]


def lists_filling_the_header() -> tuple[bytes, str]:
    # Without the container bound, 859 MiB at 16 MiB of header, and 5.3 GiB at the library's 100 MB.
    lists = nested_lists((MAX_HEADER_SIZE - 8) // 251 * 125)
    arrays = 2 + lists.count(b"[")
    problem = f"safetensors header holds {arrays} arrays and objects, over the 1048576 this server reads"
    return b'{"x":[' + lists + b"]}", problem


def lists_and_keys_within_both_bounds() -> tuple[bytes, str]:
    # The most arrays the bound lets through, the rest of the header in distinct keys: 568 MiB with Python 3.11.
    lists = nested_lists(MAX_CONTAINERS - 3)
    head = b'{"x":[' + lists + b'],"y":{'
    keys = distinct_keys(MAX_HEADER_SIZE - len(head) - 2)
    chains = lists.count(b",") + 1
    return head + keys + b"}}", f'tensor "x" is a list of {chains} items, not [dtype, shape, data_offsets]'


# Peak RSS of the whole child process, interpreter included, for any header within the bounds. The worst
# measured is 568 MiB; without the container bound one recipe costs 859 MiB, and with the library's 100 MB size
# bound the other costs over 1 GiB (the old worst, 5.3 GiB): each fails here.
PEAK_RSS_BOUND = 768 * MIB
MEASURE = """
import os, resource, sys
from gitea_hf_hook.checks.scanners.safetensors import check_safetensors
with open(sys.argv[1], "rb") as f:
    found = check_safetensors(f, os.fstat(f.fileno()).st_size)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
print(found[0].problem if found else "")
"""


@pytest.mark.parametrize("recipe", [lists_filling_the_header, lists_and_keys_within_both_bounds])
def test_hostile_header_peak_memory_is_bounded(recipe: Callable[[], tuple[bytes, str]], tmp_path: Path) -> None:
    header, first_problem = recipe()
    assert len(header) <= MAX_HEADER_SIZE
    path = tmp_path / "model.safetensors"
    path.write_bytes(raw_file(header))
    del header
    # The file is read as the hook reads an LFS object: from disk, in a process of its own.
    result = subprocess.run([sys.executable, "-c", MEASURE, str(path)], cwd=ROOT, capture_output=True, text=True,
                            check=True)
    peak, problem = result.stdout.splitlines()
    assert int(peak) < PEAK_RSS_BOUND, f"peak RSS {int(peak) / MIB:.0f} MiB"
    assert problem == first_problem
