"""pickle_format names pickle-bearing files by content and nothing else; benign checkpoints in every layout
torch and NumPy write pass scan_pickle."""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import pickle
import random
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from fixtures.pickle_recipes import (
    MAGIC,
    _tar,
    _zip,
    bu,
    exec_pickle,
    legacy_file,
    run_loader,
    state_dict_pickle,
    tar_checkpoint,
    torch_zip,
)

from gitea_hf_hook.checks.scanners import Finding
from gitea_hf_hook.checks.scanners.archives import is_tar
from gitea_hf_hook.checks.scanners.pickles import pickle_format, scan_pickle

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).parents[3]
CORRUPT_HINT = "the file looks truncated or corrupt: re-save it, or push it again with Git LFS"


def fmt(blob: bytes) -> str | None:
    return pickle_format(io.BytesIO(blob), len(blob))


def scan(blob: bytes) -> list[Finding]:
    return scan_pickle(io.BytesIO(blob))


# --- text and other files are not pickles ---------------------------------------------------------------

TEXTS = {
    "markdown": b"# Model card\n\nN.B. this model is a test.\n\n| a | b |\n|---|---|\n| 1 | 2 |\n",
    "front-matter": b"---\nlicense: mit\ntags:\n- test\n---\n# Title\n",
    "json": json.dumps({"architectures": ["Bert"], "hidden_size": 768}, indent=2).encode(),
    "json-list": b"[1, 2, 3]\n",
    "yaml": b"key: value\nlist:\n  - a\n  - b\n",
    "python": b"import os\n\nclass Foo:\n    pass\n\ndef main():\n    print('hi')\n",
    "python-class-first": b"class Config:\n    size = 3\n",
    "csv": b"city,population\nParis,2100000\nLondon,8900000\n",
    "csv-one-column": b"city\nParis\nLondon\n",
    "note": b"N.B.\n",
    "parenthesised": b"(c) 2024 The Authors\nAll rights reserved\n",
    "empty": b"",
    "newline": b"\n",
    "vocab": b"[PAD]\n[UNK]\n[CLS]\n[SEP]\nthe\nof\n",
    "merges": b"#version: 0.2\n\xc4\xa0 t\nh e\n",
}


@pytest.mark.parametrize("name", TEXTS)
def test_text_files_are_never_pickles(name: str) -> None:
    assert fmt(TEXTS[name]) is None


def test_the_repository_s_own_text_files_are_never_pickles() -> None:
    paths = [p for p in REPO.rglob("*") if p.suffix in (".md", ".py", ".cfg", ".toml", ".json", ".yaml", ".yml")
             and ".venv" not in p.parts and ".git" not in p.parts and p.is_file()]
    assert len(paths) > 50
    assert [p.name for p in paths if fmt(p.read_bytes()) is not None] == []


def test_binary_data_is_not_a_pickle() -> None:
    rng = random.Random(1234)
    blobs = [bytes(rng.getrandbits(8) for _ in range(4096)) for _ in range(300)]
    blobs += [struct.pack("<Q", n) + b'{"a":{"dtype":"F32"}}' for n in (640, 896, 1152, 1408)]  # safetensors
    blobs += [b"\x89PNG\r\n\x1a\n" + bytes(64), b"\x1f\x8b\x08\x00" + bytes(64), b"7z\xbc\xaf'\x1c" + bytes(32)]
    assert [b[:8] for b in blobs if fmt(b) is not None] == []


def test_a_float_tensor_file_is_not_a_pickle() -> None:
    data = np.random.default_rng(7).standard_normal(100_000).astype("<f4").tobytes()
    assert fmt(data) is None


# --- pickles --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", range(6))
def test_pickles_of_every_protocol(protocol: int) -> None:
    assert fmt(pickle.dumps({"a": [1, 2.0, "x"], "b": None}, protocol=protocol)) == "pickle"


def test_a_long_pickle_is_known_from_its_head() -> None:
    blob = pickle.dumps([str(i) for i in range(100_000)], protocol=0)
    assert len(blob) > 100_000 and fmt(blob) == "pickle"


def test_a_protocol_header_with_data_after_the_pickle() -> None:
    assert fmt(pickle.dumps(1, protocol=2) + b"rest") == "pickle"


def test_a_broken_pickle_that_already_called_something() -> None:
    assert fmt(b"cos\nsystem\n(S'true'\ntR\xff") == "pickle"


def test_legacy_torch_file() -> None:
    assert fmt(legacy_file()) == "legacy PyTorch checkpoint"
    assert fmt((FIXTURES / "torch_state_dict_legacy.bin").read_bytes()) == "legacy PyTorch checkpoint"


def test_zip_checkpoints() -> None:
    assert fmt((FIXTURES / "torch_state_dict_zip.pt").read_bytes()) == "PyTorch zip checkpoint"
    assert fmt(torch_zip(state_dict_pickle())) == "PyTorch zip checkpoint"
    assert fmt(_zip([("model/weights.bin", exec_pickle("x", 2))])) == "zip archive with pickles"
    assert fmt(_zip([("a.txt", b"hello"), ("b.json", b"{}")])) is None
    assert fmt(_zip([])) is None


def test_tar_checkpoints() -> None:
    assert fmt(tar_checkpoint()) == "PyTorch tar checkpoint"
    assert fmt(_tar([("000.cls", b"3"), ("000.pyd", pickle.dumps(3))])) == "tar archive with pickles"
    assert fmt(_tar([("000.cls", b"3"), ("000.jpg", b"\xff\xd8\xff" + bytes(100))])) is None


def _saved(tmp_path: Path, save: str, **arrays: object) -> bytes:
    path = tmp_path / ("a.npy" if save == "save" else "a.npz")
    if save == "save":
        np.save(path, arrays["a"], allow_pickle=True)
    else:
        getattr(np, save)(path, **arrays)
    return path.read_bytes()


def test_numpy_files(tmp_path: Path) -> None:
    objects = np.array([{"a": 1}, None], dtype=object)
    numbers = np.arange(10, dtype="<f4")
    structured = np.zeros(2, dtype=[("a", "<i4"), ("b", "O")])
    assert fmt(_saved(tmp_path, "save", a=objects)) == "NumPy object array"
    assert fmt(_saved(tmp_path, "save", a=structured)) == "NumPy object array"
    assert fmt(_saved(tmp_path, "save", a=numbers)) is None
    assert fmt(_saved(tmp_path, "savez", a=numbers, b=objects)) == "NumPy archive with object arrays"
    assert fmt(_saved(tmp_path, "savez_compressed", a=objects)) == "NumPy archive with object arrays"
    assert fmt(_saved(tmp_path, "savez", a=numbers)) is None


def test_numpy_object_arrays_are_refused_for_their_numpy_imports(tmp_path: Path) -> None:
    found = scan(_saved(tmp_path, "save", a=np.array([1, "x"], dtype=object)))
    assert found and all(f.problem.startswith("pickle imports numpy.") for f in found)


def test_a_numeric_npy_under_a_pickle_name_is_not_a_pickle(tmp_path: Path) -> None:
    assert scan(_saved(tmp_path, "save", a=np.arange(3))) == [Finding("not a valid pickle", CORRUPT_HINT)]


def test_a_file_of_no_known_format() -> None:
    assert scan(b"\x89PNG\r\n\x1a\n") == [Finding("not a valid pickle", CORRUPT_HINT)]


# --- benign checkpoints pass ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["torch_state_dict_zip.pt", "torch_state_dict_legacy.bin"])
def test_real_torch_checkpoints_pass(name: str) -> None:
    assert scan((FIXTURES / name).read_bytes()) == []


@pytest.mark.parametrize("tensors", [1, 40, 300])
def test_state_dicts_written_by_the_pickler_pass(tensors: int) -> None:
    blob = state_dict_pickle(tensors)
    assert scan(blob) == []
    assert scan(torch_zip(blob, tensors=tensors)) == []
    assert scan(legacy_file(tensors=tensors)) == []


def test_zip_checkpoint_variants_pass() -> None:
    data = state_dict_pickle(5)
    deflated = io.BytesIO()
    with zipfile.ZipFile(deflated, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("archive/data.pkl", data)
    zip64 = io.BytesIO()
    with zipfile.ZipFile(zip64, "w") as archive, archive.open("archive/data.pkl", "w", force_zip64=True) as member:
        member.write(data)

    class Unseekable(io.RawIOBase):  # zipfile writes data descriptors to a stream it cannot seek back in
        def __init__(self) -> None:
            self.out = bytearray()

        def writable(self) -> bool:
            return True

        def write(self, b: bytes) -> int:  # type: ignore[override]
            self.out += b
            return len(b)

    stream = Unseekable()
    with zipfile.ZipFile(stream, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("archive/data.pkl", data)
        archive.writestr("archive/version", "3\n")
    commented = io.BytesIO(torch_zip(data))
    with zipfile.ZipFile(commented, "a") as archive:
        archive.comment = b"saved by a test"
    for blob in (deflated.getvalue(), zip64.getvalue(), bytes(stream.out), commented.getvalue()):
        assert scan(blob) == [], blob[:40]


def test_tar_checkpoint_passes() -> None:
    assert scan(tar_checkpoint()) == []


def test_pickle_members_of_a_tar_dataset_are_scanned() -> None:
    assert [f.problem for f in scan(_tar([("000.pyd", exec_pickle("x", 2)), ("000.cls", b"3")]))] == [
        "000.pyd: pickle imports builtins.exec, which can run code when loaded"
    ]


def test_legacy_file_with_a_missing_pickle_is_invalid() -> None:
    head = b"".join(pickle.dumps(v, protocol=2) for v in (MAGIC, 1001, {}))
    assert scan(head) == [Finding("not a valid pickle", CORRUPT_HINT)]


# --- bounded work ----------------------------------------------------------------------------------------


def test_a_tar_with_a_forged_extended_header_size() -> None:
    blob = bytearray(_tar([("x" * 120, exec_pickle("x", 2))]))
    assert blob[156:157] == b"x"  # a long name: tarfile wrote a pax header first
    blob[124:136] = b"%011o\x00" % ((1 << 33) - 1)  # which now claims 8 GiB
    blob[148:156] = b" " * 8
    blob[148:156] = b"%06o\x00 " % sum(blob[:512])
    assert scan(bytes(blob)) == [
        Finding("tar archive has an extended header too large to check", "convert the weights to safetensors")
    ]
    assert fmt(bytes(blob)) == "tar archive that cannot be checked"


def test_pickle_format_reads_little_of_a_large_pickle() -> None:
    class Counting(io.BytesIO):
        read_bytes = 0

        def read(self, n: int | None = -1) -> bytes:
            data = super().read(n)
            Counting.read_bytes += len(data)
            return data

    blob = pickle.dumps([bu("x" * 10) * 3 for _ in range(200_000)], protocol=0)
    f = Counting(blob)
    assert pickle_format(f, len(blob)) == "pickle"
    assert Counting.read_bytes < 64 << 10


def test_a_tar_with_members_after_its_end_is_refused() -> None:
    # tarfile stops at the end blocks; a reader with ignore_zeros (or of concatenated archives) goes on.
    blob = _tar([("a.txt", b"hello")]) + _tar([("b.pyd", exec_pickle("x", 2))])
    assert scan(blob) == [Finding("tar archive has data after its end, which some readers read on",
                                  "loaders would read it differently: re-save it with torch.save or pickle")]
    assert fmt(blob) == "tar archive that cannot be checked"


def test_an_archive_without_pickles_under_a_pickle_name_is_not_a_pickle() -> None:
    assert scan(_zip([("a.txt", b"hello")])) == [Finding("not a valid pickle", CORRUPT_HINT)]
    assert scan(_tar([("a.txt", b"hello")])) == [Finding("not a valid pickle", CORRUPT_HINT)]


@pytest.mark.parametrize("method", [zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA])
def test_compressed_members_are_scanned_and_bombs_capped(method: int) -> None:
    assert [f.problem for f in scan(_zip([("w/model", exec_pickle("x", 2))], method))] == [
        "w/model: pickle imports builtins.exec, which can run code when loaded"
    ]
    bomb = _zip([("w/data.pkl", b"\x80\x02(" + b"N" * (70 << 20) + b"t.")], method)
    assert len(bomb) < 2 << 20
    assert scan(bomb) == [
        Finding("w/data.pkl: pickle is over 64 MiB, too large to check", "convert the weights to safetensors")
    ]
    assert fmt(bomb) == "PyTorch zip checkpoint"


# --- compressed pickles (joblib, pandas) ------------------------------------------------------------------

COMPRESSORS = {
    "gzip": (gzip.compress, "gzip"),
    "bz2": (bz2.compress, "bz2"),
    "xz": (lzma.compress, "lzma"),
    "lzma": (lambda data: lzma.compress(data, format=lzma.FORMAT_ALONE), "lzma"),
    "zlib": (zlib.compress, "zlib"),
}


@pytest.mark.parametrize("name", COMPRESSORS)
def test_compressed_pickles_are_scanned(name: str, tmp_path: Path) -> None:
    compress, loader = COMPRESSORS[name]
    marker = tmp_path / "marker"
    blob = compress(exec_pickle(str(marker), 4))
    assert fmt(blob) == f"{name}-compressed pickle"
    assert scan(blob) == [Finding("pickle imports builtins.exec, which can run code when loaded",
                                  "only weights-only imports are allowed: convert to safetensors")]
    (tmp_path / "model.pkl.x").write_bytes(blob)
    run_loader(tmp_path / "model.pkl.x", loader)
    assert marker.read_text() == "ran"
    benign = compress(pickle.dumps({"weights": list(range(5000))}, protocol=4))
    assert fmt(benign) == f"{name}-compressed pickle" and scan(benign) == []


@pytest.mark.parametrize("name", COMPRESSORS)
def test_data_after_a_compressed_stream_is_refused(name: str) -> None:
    blob = COMPRESSORS[name][0](exec_pickle("x", 2)) + b"more"
    assert scan(blob) == [
        Finding(f"{name} stream has data after its end, which some readers read on",
                "loaders would read it differently: re-save it with torch.save or pickle"),
        Finding("pickle imports builtins.exec, which can run code when loaded",
                "only weights-only imports are allowed: convert to safetensors"),
    ]


def test_compressed_text_is_not_a_pickle() -> None:
    assert fmt(gzip.compress(TEXTS["markdown"] * 50)) is None
    assert fmt(b"x" + TEXTS["markdown"]) is None  # no zlib header


def test_a_compressed_bomb_is_not_inflated_past_the_cap() -> None:
    bomb = gzip.compress(b"\x80\x02(" + b"N" * (70 << 20) + b"t.")
    assert scan(bomb) == [
        Finding("gzip stream holds over 64 MiB, too large to check", "convert the weights to safetensors")
    ]


def test_an_end_record_holding_its_own_signature_is_ambiguous() -> None:
    # The signature inside the record's last bytes (its comment here) is the last one: zipfile stops there,
    # torch's reader looks further back and finds the real record.
    blob = bytearray(_zip([("archive/data.pkl", exec_pickle("x", 2))]))
    blob[-2:] = struct.pack("<H", 4)
    blob += b"PK\x05\x06"
    assert scan(bytes(blob)) == [Finding("zip archive has more than one end record",
                                         "loaders would read it differently: re-save it with torch.save or pickle")]
    assert fmt(bytes(blob)) == "ambiguous zip archive"


def test_a_file_opening_like_a_zip_is_read_as_a_tar_too() -> None:
    # The first tar header's name holds a zip local header: torch's zip check and numpy look at those four
    # bytes, tarfile only at the header's checksum, and reads on to a pickle member.
    tar = _tar([("PK\x03\x04", b""), ("b.pyd", exec_pickle("x", 2))])
    assert tar.startswith(b"PK\x03\x04") and is_tar(tar[:512])
    assert [f.problem for f in scan(tar)] == [
        "b.pyd: pickle imports builtins.exec, which can run code when loaded", "not a valid zip archive"
    ]
    assert fmt(tar) == "tar archive with pickles"


def test_an_encrypted_member_is_read_as_torch_reads_it() -> None:
    # torch's reader ignores the encryption flag: raw bytes that are a pickle are scanned as one, others
    # cannot be checked.
    from fixtures.pickle_recipes import set_flag

    assert [f.problem for f in scan(set_flag(_zip([("w/model", exec_pickle("x", 2))]), 0x1))] == [
        "w/model: pickle imports builtins.exec, which can run code when loaded"
    ]
    sealed = set_flag(_zip([("w/notes", b"\x8a\x13ciphertext")]), 0x1)
    assert scan(sealed) == [Finding("w/notes: zip member is encrypted, so it cannot be checked", "push it unencrypted")]
    assert fmt(sealed) is None
