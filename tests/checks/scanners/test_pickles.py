"""scan_pickle on hand-built hostile pickles and on real torch checkpoints.

The fixtures under ``fixtures/`` were written by torch 2.13.0 (CPU wheel) so that these tests need no
torch::

    class Tiny(nn.Module):  # Linear(4, 3), BatchNorm1d(3), Embedding(5, 2) in float16
        ...
    torch.save(Tiny().state_dict(), "torch_state_dict_zip.pt")
    torch.save(Tiny().state_dict(), "torch_state_dict_legacy.bin", _use_new_zipfile_serialization=False)
    torch.save(nn.Sequential(nn.Linear(2, 2)), "torch_full_module_zip.pt")

The first two load with ``torch.load(weights_only=True)``; the third is refused by it.
"""

from __future__ import annotations

import collections
import io
import operator
import pickle
import struct
import zipfile
from pathlib import Path

import pytest

from gitea_hf_hook.checks.scanners import MAX_FINDINGS, Finding
from gitea_hf_hook.checks.scanners.pickles import (
    PICKLE_SUFFIXES,
    WEIGHTS_ONLY_GLOBALS,
    scan_pickle,
)

FIXTURES = Path(__file__).parent / "fixtures"
IMPORT_HINT = "only weights-only imports are allowed: convert to safetensors"
CORRUPT_HINT = "the file looks truncated or corrupt: re-save it, or push it again with Git LFS"
OS_SYSTEM = "pickle imports os.system, which can run code when loaded"
UNRESOLVABLE = "pickle has an unresolvable import, which can run code when loaded"


def scan(blob: bytes) -> list[Finding]:
    return scan_pickle(io.BytesIO(blob))


def problems(blob: bytes) -> list[str]:
    return [finding.problem for finding in scan(blob)]


def unicode(text: str) -> bytes:
    """BINUNICODE opcode pushing ``text``."""
    data = text.encode()
    return b"X" + struct.pack("<I", len(data)) + data


def short_unicode(text: str) -> bytes:
    """SHORT_BINUNICODE opcode (protocol 4) pushing ``text``."""
    data = text.encode()
    return b"\x8c" + bytes([len(data)]) + data


def torch_zip(data_pkl: bytes, name: str = "archive/data.pkl") -> bytes:
    """A zip laid out like torch.save's: data.pkl plus the side files torch writes."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr(name, data_pkl)
        archive.writestr("archive/byteorder", "little")
        archive.writestr("archive/data/0", bytes(16))
        archive.writestr("archive/version", "3\n")
    return buf.getvalue()


def rebuild_tensor(key: str, numel: int) -> bytes:
    """Protocol-2 opcodes for torch._utils._rebuild_tensor_v2(storage, 0, (numel,), (1,), False, OrderedDict())."""
    return (
        b"ctorch._utils\n_rebuild_tensor_v2\n"
        b"((" + unicode("storage") + b"ctorch\nFloatStorage\n" + unicode(key) + unicode("cpu")
        + b"K" + bytes([numel]) + b"tQ"  # persistent id tuple -> BINPERSID
        + b"K\x00K" + bytes([numel]) + b"\x85K\x01\x85\x89ccollections\nOrderedDict\n)Rt"
        + b"R"
    )


def state_dict_pickle() -> bytes:
    """OrderedDict of two tensors, as torch.save writes it with protocol 2."""
    return (
        b"\x80\x02ccollections\nOrderedDict\nq\x00)Rq\x01("
        + unicode("weight") + rebuild_tensor("0", 4)
        + unicode("bias") + rebuild_tensor("1", 2)
        + b"u."
    )


# --- accepted -----------------------------------------------------------------------------------------


def test_suffixes() -> None:
    assert PICKLE_SUFFIXES == (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".joblib")


def test_allowlist_mirrors_torch() -> None:
    assert len(WEIGHTS_ONLY_GLOBALS) == 144
    assert {"torch._utils._rebuild_tensor_v2", "collections.OrderedDict", "torch.FloatStorage"} <= WEIGHTS_ONLY_GLOBALS
    assert not any(name.startswith(("os.", "posix.", "subprocess.", "builtins.eval")) for name in WEIGHTS_ONLY_GLOBALS)


@pytest.mark.parametrize("name", ["torch_state_dict_zip.pt", "torch_state_dict_legacy.bin"])
def test_torch_state_dict_fixtures_pass(name: str) -> None:
    with (FIXTURES / name).open("rb") as f:
        assert scan_pickle(f) == []


def test_hand_built_state_dict_passes() -> None:
    assert scan(state_dict_pickle()) == []


def test_hand_built_state_dict_in_zip_passes() -> None:
    assert scan(torch_zip(state_dict_pickle())) == []


@pytest.mark.parametrize("protocol", range(6))
def test_allowed_imports_pass_in_every_protocol(protocol: int) -> None:
    value = {"od": collections.OrderedDict(a=[1, 2.5, "x"]), "set": {1, 2}, "c": 1 + 2j, "b": bytearray(b"\x00\x01")}
    assert scan(pickle.dumps(value, protocol=protocol)) == []


def test_python2_module_names_are_renamed() -> None:
    # torch.save from Python 2 wrote __builtin__.set; both torch and pickle read it as builtins.set.
    assert scan(b"\x80\x02c__builtin__\nset\n]\x85R.") == []


TRAILING = "has data after the end of its pickle, which another loader may read"
CRAFTED_HINT = "loaders would read it differently: re-save it with torch.save or pickle"


def test_plain_pickle_followed_by_raw_bytes_is_refused() -> None:
    # pickle.load stops at the STOP; a reader of consecutive pickles (torch's legacy loader) goes on.
    assert scan(pickle.dumps([1, 2], protocol=2) + b"\x00\x01 raw tensor bytes \xff") == [
        Finding(TRAILING, CRAFTED_HINT)
    ]


# --- refused ------------------------------------------------------------------------------------------


def test_global_os_system() -> None:
    assert scan(b"cos\nsystem\n(S'echo hi'\ntR.") == [Finding(OS_SYSTEM, IMPORT_HINT)]


def test_builtins_eval_through_reduce() -> None:
    assert problems(b"\x80\x02cbuiltins\neval\nX\x03\x00\x00\x001+1\x85R.") == [
        "pickle imports builtins.eval, which can run code when loaded"
    ]


def test_python2_builtin_eval_is_renamed_and_refused() -> None:
    assert problems(b"c__builtin__\neval\n(S'1'\ntR.") == ["pickle imports builtins.eval, which can run code when loaded"]


def test_stack_global_with_short_binunicode() -> None:
    blob = b"\x80\x04" + short_unicode("os") + short_unicode("system") + b"\x93" + short_unicode("echo hi") + b"\x85R."
    assert scan(blob) == [Finding(OS_SYSTEM, IMPORT_HINT)]


def test_stack_global_through_memo() -> None:
    # Both strings go to the memo (BINPUT, MEMOIZE, LONG_BINPUT) and come back with BINGET/LONG_BINGET.
    blob = (
        b"\x80\x04" + short_unicode("os") + b"q\x05" + short_unicode("system") + b"\x94r\x07\x00\x00\x00"
        + b"0" + b"0"  # POP both: only the memo still holds them
        + b"h\x05j\x07\x00\x00\x00\x93N\x85R."
    )
    assert scan(blob) == [Finding(OS_SYSTEM, IMPORT_HINT)]


def test_stack_global_through_memoize_and_dup() -> None:
    blob = b"\x80\x04" + short_unicode("subprocess") + b"\x94" + short_unicode("run") + b"\x930h\x002\x93."
    assert problems(blob) == [
        "pickle imports subprocess.run, which can run code when loaded",
        "pickle imports subprocess.subprocess, which can run code when loaded",
    ]


def test_stack_global_with_computed_name_is_unresolvable() -> None:
    # _codecs.encode("bf", "rot13") returns "os" at load time; the scanner cannot know that.
    blob = (
        b"\x80\x04" + short_unicode("_codecs") + short_unicode("encode") + b"\x93"
        + short_unicode("bf") + short_unicode("rot13") + b"\x86R" + short_unicode("system") + b"\x93."
    )
    assert scan(blob) == [Finding(UNRESOLVABLE, IMPORT_HINT)]


def test_stack_global_without_operands_is_invalid() -> None:
    assert problems(b"\x80\x04(" + short_unicode("os") + b"\x93.") == ["not a valid pickle"]


def test_global_names_are_taken_as_written() -> None:
    # pickletools would show "os"; the unpickler looks for a module literally named "o\x73".
    assert problems(b"co\\x73\nsystem\n.") == ["pickle imports o\\\\x73.system, which can run code when loaded"]


def test_inst() -> None:
    assert problems(b"(S'echo hi'\nios\nsystem\n.") == [OS_SYSTEM]


def test_ext1() -> None:
    assert scan(b"\x80\x02\x82\x01.") == [
        Finding("pickle imports through the copyreg extension registry, which can run code when loaded", IMPORT_HINT)
    ]


@pytest.mark.parametrize("protocol", range(6))
def test_disallowed_class_in_every_protocol(protocol: int) -> None:
    assert problems(pickle.dumps(operator.attrgetter, protocol=protocol)) == [
        "pickle imports operator.attrgetter, which can run code when loaded"
    ]


def test_each_import_reported_once() -> None:
    assert problems(b"(cos\nsystem\ncos\nsystem\ncbuiltins\nexec\nl.") == [
        OS_SYSTEM,
        "pickle imports builtins.exec, which can run code when loaded",
    ]


def test_findings_are_capped() -> None:
    blob = b"(" + b"".join(b"cmod%d\nf\n" % i for i in range(40)) + b"l."
    found = scan(blob)
    assert len(found) == MAX_FINDINGS + 1
    assert found[0].problem == "pickle imports mod0.f, which can run code when loaded"
    assert found[-1] == Finding("more pickle problems not listed", "fix the ones above first")


def test_hostile_names_are_escaped() -> None:
    blob = b"\x80\x04" + short_unicode("os\n\x1b[2J") + short_unicode("x" * 200) + b"\x93."
    (finding,) = scan(blob)
    assert finding.problem == "pickle imports os\\n\\x1b[2J." + "x" * 68 + "..., which can run code when loaded"


def test_torch_full_module_fixture_is_refused() -> None:
    with (FIXTURES / "torch_full_module_zip.pt").open("rb") as f:
        assert [finding.problem for finding in scan_pickle(f)] == [
            "torch_full_module_zip/data.pkl: pickle imports torch.nn.modules.container.Sequential, which can run code when loaded",
            "torch_full_module_zip/data.pkl: pickle imports torch.nn.modules.linear.Linear, which can run code when loaded",
        ]


def test_eval_inside_torch_zip() -> None:
    blob = torch_zip(b"\x80\x02cbuiltins\neval\nX\x03\x00\x00\x001+1\x85R.")
    assert scan(blob) == [
        Finding("archive/data.pkl: pickle imports builtins.eval, which can run code when loaded", IMPORT_HINT)
    ]


def test_a_pkl_member_besides_data_pkl_in_a_zip_is_scanned_too() -> None:
    buf = io.BytesIO(torch_zip(state_dict_pickle()))
    with zipfile.ZipFile(buf, "a", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("archive/constants.pkl", b"cos\nsystem\n.")
    assert problems(buf.getvalue()) == [f"archive/constants.pkl: {OS_SYSTEM}"]


def test_pop_of_a_mark_keeps_the_stack_in_step() -> None:
    # POP with a MARK on top discards the MARK, so the strings below are STACK_GLOBAL's operands.
    blob = b"\x80\x04" + short_unicode("os") + short_unicode("system") + b"(0\x93."
    assert problems(blob) == [OS_SYSTEM]


def test_data_after_the_pickle_is_refused_whatever_it_holds() -> None:
    assert problems(pickle.dumps(1, protocol=2) + b"cos\nsystem\n") == [TRAILING]
    assert problems(pickle.dumps(1, protocol=2) + b"\x80\x02cos\nsystem\n.") == [TRAILING]


def test_legacy_torch_file_with_malicious_object_pickle() -> None:
    # Magic number, protocol version, sys info, the object, storage keys, then raw storage bytes.
    pickles = [0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}]
    head = b"".join(pickle.dumps(value, protocol=2) for value in pickles)
    storage = struct.pack("<q", 99) + b"c\n" * 200  # raw bytes that would parse as GLOBAL opcodes
    blob = head + b"\x80\x02cos\nsystem\n." + pickle.dumps(["0"], protocol=2) + storage
    assert problems(blob) == [OS_SYSTEM]


def test_legacy_torch_file_stops_after_five_pickles() -> None:
    pickles = [0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}, {}, []]
    head = b"".join(pickle.dumps(value, protocol=2) for value in pickles)
    assert problems(head + b"\x80\x02cos\nsystem\n.") == []


# --- not a pickle or too large ------------------------------------------------------------------------


def test_empty_file() -> None:
    assert scan(b"") == [Finding("not a valid pickle", CORRUPT_HINT)]


def test_garbage() -> None:
    assert problems(b"\xde\xad\xbe\xef") == ["not a valid pickle"]


def test_truncated_pickle_still_reports_its_imports() -> None:
    # Unpickling runs os.system before it notices the missing STOP, so both are reported.
    assert problems(b"cos\nsystem\n(S'echo hi'\ntR") == [OS_SYSTEM, "not a valid pickle"]


def test_truncated_legacy_torch_file() -> None:
    legacy = (FIXTURES / "torch_state_dict_legacy.bin").read_bytes()
    assert problems(legacy[:120]) == ["not a valid pickle"]


def test_truncated_zip() -> None:
    blob = (FIXTURES / "torch_state_dict_zip.pt").read_bytes()
    assert scan(blob[:1000]) == [Finding("not a valid zip archive", CORRUPT_HINT)]


def test_unknown_protocol() -> None:
    assert problems(b"\x80\x09N.") == ["not a valid pickle"]


def test_huge_declared_length_is_not_read() -> None:
    # The length runs past the end of the data: the unpickler fails there, and nothing is allocated for it.
    assert scan(b"\x8d" + struct.pack("<Q", 2**40) + b"abc") == [Finding("not a valid pickle", CORRUPT_HINT)]


def test_long_values_are_skipped_not_read() -> None:
    blob = b"\x80\x04\x8e" + struct.pack("<Q", 40 << 20) + bytes(40 << 20) + b"0N."
    assert scan(blob) == []


def test_deep_stack_is_refused() -> None:
    assert problems(b"(" + b"N" * 200_000 + b"l.") == ["pickle stack grows past 100,000 items, too deep to check"]
