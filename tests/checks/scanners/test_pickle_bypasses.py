"""Files a loader runs while a linear opcode walk or a lenient archive reader sees nothing wrong.

Each sample is built by a recipe (fixtures/pickle_corpus.py says which reader difference it exploits). Where
the loader is installed, a fresh interpreter loads the file with it and the canary payload writes a marker:
proof that the scanner's finding is about code that really runs.
"""

from __future__ import annotations

import io
import struct
import warnings
import zipfile
from pathlib import Path

import pytest
from fixtures.pickle_corpus import BYPASSES
from fixtures.pickle_recipes import (
    Sample,
    bu,
    exec_call,
    frame,
    glob,
    run_loader,
    state_dict_pickle,
    su,
    torch_zip,
)

from gitea_hf_hook.checks.scanners import Finding
from gitea_hf_hook.checks.scanners.pickles import pickle_format, scan_pickle

FRAMING = "pickle frames do not line up with its opcodes, so loaders would run different opcodes"
CRAFTED = "loaders would read it differently: re-save it with torch.save or pickle"
IMPORT_HINT = "only weights-only imports are allowed: convert to safetensors"
CORRUPT_HINT = "the file looks truncated or corrupt: re-save it, or push it again with Git LFS"
TRAILING = "has data after the end of its pickle, which another loader may read"
EXEC = "pickle imports builtins.exec, which can run code when loaded"

# The exact findings a pusher sees for each bypass.
EXPECTED = {
    "frame-crossing-bare": [Finding(FRAMING, CRAFTED)],
    "frame-crossing-torch-zip": [Finding(f"archive/data.pkl: {FRAMING}", CRAFTED)],
    "frame-crossing-before-state-dict": [Finding(f"archive/data.pkl: {FRAMING}", CRAFTED)],
    "frame-crossing-legacy-object": [Finding(FRAMING, CRAFTED)],
    "frame-inside-frame": [Finding(FRAMING, CRAFTED)],
    "stop-inside-frame-legacy": [Finding(FRAMING, CRAFTED)],
    "second-pickle-non-ascii-string": [Finding(TRAILING, CRAFTED)],
    "second-pickle-invalid-byte-after-payload": [Finding(TRAILING, CRAFTED)],
    "tar-first-member-harmless-pickle": [
        Finding(TRAILING, CRAFTED),
        Finding(f"storages: {EXEC}", IMPORT_HINT),
        Finding("storages: PyTorch tar checkpoint member is not laid out as torch writes it, so it cannot be checked",
                CRAFTED),
        Finding("tensors: not a valid pickle", CORRUPT_HINT),
    ],
    "zip-two-directories": [Finding("zip archive's directory is not where its end record says", CRAFTED)],
    "zip-bytes-before-archive": [Finding("zip archive's directory is not where its end record says", CRAFTED)],
    "zip-pickle-named-txt": [Finding(f"archive/data.txt: {EXEC}", IMPORT_HINT)],
    "zip-pickle-name-upper-case": [Finding(f"archive/DATA.PKL: {EXEC}", IMPORT_HINT)],
    "npz-object-array": [Finding(f"arr_0.npy: {EXEC}", IMPORT_HINT)],
    "class-mutation-build": [
        Finding("pickle changes torch.nn.parameter.Parameter itself, which changes code that runs later", IMPORT_HINT)
    ],
}


def test_every_bypass_has_its_expected_findings() -> None:
    assert sorted(EXPECTED) == sorted(sample.name for sample in BYPASSES)


@pytest.fixture(autouse=True)
def _quiet_zipfile() -> None:
    warnings.filterwarnings("ignore", "Duplicate name", UserWarning)


@pytest.mark.parametrize("sample", BYPASSES, ids=lambda s: s.name)
def test_the_scanner_refuses_what_the_loader_runs(sample: Sample, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    blob = sample.build(str(marker))
    assert scan_pickle(io.BytesIO(blob)) == EXPECTED[sample.name]
    assert pickle_format(io.BytesIO(blob), len(blob)) is not None
    if sample.loader is not None:
        path = tmp_path / "sample.bin"
        path.write_bytes(blob)
        run_loader(path, sample.loader)
        assert marker.read_text() == "ran"


@pytest.mark.parametrize("loader", ["loads", "bytesio"])
def test_a_frame_crossing_runs_only_when_read_from_a_file(loader: str, tmp_path: Path) -> None:
    # pickle.loads reads the frame straight through, as pickletools does; pickle.load on a BytesIO does not.
    marker = tmp_path / "marker"
    (tmp_path / "f.pkl").write_bytes(next(s for s in BYPASSES if s.name == "frame-crossing-bare").build(str(marker)))
    run_loader(tmp_path / "f.pkl", loader)
    assert marker.exists() is (loader == "bytesio")


def _directory_offset_reader(blob: bytes) -> bytes:
    """Read the first member the way torch's reader does: at the directory offset the end record states."""
    end = blob.rfind(b"PK\x05\x06")
    cd_offset = struct.unpack_from("<L", blob, end + 16)[0]
    header = struct.unpack_from("<L", blob, cd_offset + 42)[0]
    size = struct.unpack_from("<L", blob, cd_offset + 20)[0]
    nlen, elen = struct.unpack_from("<HH", blob, header + 26)
    start = header + 30 + nlen + elen
    return blob[start:start + size]


@pytest.mark.parametrize("name", ["zip-two-directories", "zip-bytes-before-archive"])
def test_the_two_zip_readers_see_different_members(name: str, tmp_path: Path) -> None:
    blob = next(s for s in BYPASSES if s.name == name).build(str(tmp_path / "marker"))
    with zipfile.ZipFile(io.BytesIO(blob)) as archive:
        assert archive.read("archive/data.pkl") == state_dict_pickle()
    assert b"builtins" in _directory_offset_reader(blob)


# --- frames -----------------------------------------------------------------------------------------------


def test_frames_as_pickle_writes_them_pass() -> None:
    import pickle

    value = {"a": [1, 2.5, "x" * 70_000], "b": b"y" * 200_000, "c": list(range(5000))}
    for protocol in (4, 5):
        assert scan_pickle(io.BytesIO(pickle.dumps(value, protocol=protocol))) == []


@pytest.mark.parametrize("blob", [
    b"\x80\x04" + frame(b"N") + b".",  # STOP after the frame: fine
    b"\x80\x04" + frame(b"N.")  # STOP as the frame's last byte: fine
], ids=["after", "last"])
def test_stop_at_a_frame_boundary_passes(blob: bytes) -> None:
    assert scan_pickle(io.BytesIO(blob)) == []


@pytest.mark.parametrize("blob", [
    b"\x80\x04" + frame(b"N.N"),  # STOP before the frame's end
    b"\x80\x04" + frame(b"N" + b"\x95" + struct.pack("<Q", 1)) + b"N.",  # a FRAME inside a frame
    b"\x80\x04" + frame(b"\x8c\x05ab") + b"cde.",  # an argument crossing the frame's end
    b"\x80\x04" + frame(b"Vab") + b"c\n.",  # a line crossing the frame's end
], ids=["stop-inside", "frame-inside", "argument-crosses", "line-crosses"])
def test_frames_that_loaders_read_differently_are_refused(blob: bytes) -> None:
    assert scan_pickle(io.BytesIO(blob)) == [Finding(FRAMING, CRAFTED)]


def test_a_frame_longer_than_the_data_is_invalid() -> None:
    assert scan_pickle(io.BytesIO(b"\x80\x04\x95" + struct.pack("<Q", 100) + b"N.")) == [
        Finding("not a valid pickle", CORRUPT_HINT)
    ]


# --- the stack, the memo and names, as the C unpickler keeps them ---------------------------------------


def problems(blob: bytes) -> list[str]:
    return [finding.problem for finding in scan_pickle(io.BytesIO(blob))]


def test_build_on_an_object_an_allowed_callable_made_passes() -> None:
    # OrderedDict() then BUILD with its __dict__ state: how torch pickles a state dict's _metadata.
    assert problems(b"\x80\x02ccollections\nOrderedDict\n)R}" + bu("_metadata") + b"}sb.") == []


@pytest.mark.parametrize("target, what", [
    (b"]", "pickle sets the state of an object no allowed import made, which can run code when loaded"),
    (b"\x80\x02ctorch\nFloatStorage\n", "pickle changes torch.FloatStorage itself, which changes code that runs later"),
])
def test_build_on_anything_else_is_refused(target: bytes, what: str) -> None:
    assert problems(target + b"}b.") == [what]


def test_items_go_only_into_containers() -> None:
    assert problems(b"\x80\x02ctorch\nSize\n(K\x01e.") == [
        "pickle changes torch.Size itself, which changes code that runs later"
    ]
    assert problems(b"\x80\x02K\x01K\x02K\x03s.") == [
        "pickle adds items to an object that is not a list, dict or set, which can run code when loaded"
    ]


def test_calling_what_was_not_imported_is_refused() -> None:
    # A persistent object (a storage) called through REDUCE.
    assert problems(b"\x80\x02" + bu("x") + b"Q)R.") == [
        "pickle calls an object that is not an allowed import, which can run code when loaded"
    ]


def test_setitem_reaches_below_a_mark_as_c_does() -> None:
    # C's SETITEM takes the dict from under the MARK: {} then MARK, key, value: a valid pickle for C.
    assert problems(b"\x80\x02}(" + bu("k") + bu("v") + b"s0.") == []


def test_python2_renames_apply_only_below_protocol_3() -> None:
    assert problems(b"\x80\x02c__builtin__\nset\n)R.") == []
    assert problems(b"\x80\x03c__builtin__\nset\n)R.") == [
        "pickle imports __builtin__.set, which can run code when loaded"
    ]


def test_dotted_names_never_pass_for_allowed_ones() -> None:
    # From protocol 4 "nn.parameter.Parameter" is an attribute path from torch; the allowlist holds top names.
    assert problems(b"\x80\x04" + glob("torch", "nn.parameter.Parameter", 4) + b".") == [
        "pickle imports torch.nn.parameter.Parameter, which can run code when loaded"
    ]


def test_a_non_ascii_string_is_a_string_of_unknown_text() -> None:
    # STRING decodes as the loader chooses (ASCII, latin1, utf-8): an import named by it cannot be resolved.
    assert problems(b"\x80\x04S'os'\nS'sys\xe9'\n\x93.") == [
        "pickle has an unresolvable import, which can run code when loaded"
    ]


def test_stack_global_of_a_number_fails_in_the_loader_too() -> None:
    assert problems(b"\x80\x04K\x01K\x02\x93.") == ["not a valid pickle"]


def test_a_memo_index_too_long_to_read_is_refused() -> None:
    assert problems(b"N(p" + b" " * 70_000 + b"1\n0g1\n.") == [
        "pickle has a memo index too long to check"
    ]


def test_an_allowed_import_with_a_long_string_passes() -> None:
    assert problems(b"\x80\x04" + su("torch") + su("Size") + b"\x93" + bu("x" * 5000) + b"0(K\x01K\x02t\x85R.") == []


def test_state_dict_written_by_the_pickler_passes_inside_a_frame_crossing_free_zip() -> None:
    assert scan_pickle(io.BytesIO(torch_zip(state_dict_pickle(50)))) == []


def test_exec_payload_recipe_is_caught_in_every_protocol(tmp_path: Path) -> None:
    for protocol in (0, 2, 4):
        blob = (b"\x80" + bytes([protocol]) if protocol >= 2 else b"") + exec_call(str(tmp_path / "m"), protocol) + b"."
        assert problems(blob) == [EXEC]
