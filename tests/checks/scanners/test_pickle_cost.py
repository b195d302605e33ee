"""pickle_format runs on every pushed file, so sniffing an ordinary one must stay cheap: the archive readers and
decompressors are imported only for a file whose head says it is theirs, and only a bounded head is read.

Import cost is checked through what a fresh interpreter, started as the hook starts it (``-I -S``, the package
folder named), has in ``sys.modules`` after sniffing: unlike timing, that is deterministic.
"""

from __future__ import annotations

import gzip
import io
import json
import pickle
import random
import struct
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

from gitea_hf_hook.checks.scanners.archives import is_tar
from gitea_hf_hook.checks.scanners.pickles import pickle_format

REPO = Path(__file__).parents[3]
# What a plain file must not cost: the readers of the formats it is not in, and what they drag in.
READERS = ("_compat_pickle", "ast", "bz2", "fnmatch", "lzma", "pathlib", "pickletools", "shutil", "struct", "tarfile",
           "tokenize", "urllib.parse", "zipfile", "zlib")

# The child sniffs the file named on its command line and prints what it found and which readers that loaded.
_CHILD = f"""
import json, sys
sys.path[:0] = [{str(REPO)!r}]
from gitea_hf_hook.checks.scanners.pickles import pickle_format
with open(sys.argv[1], "rb") as f:
    found = pickle_format(f, f.seek(0, 2))
print(json.dumps([found, sorted(m for m in {READERS!r} if m in sys.modules)]))
"""


def sniff_fresh(path: Path) -> tuple[str | None, list[str]]:
    """pickle_format on ``path`` in a fresh interpreter started as the hook starts it, and the readers loaded;
    ``-X importtime`` lists every module imported, which must agree with ``sys.modules``."""
    child = subprocess.run([sys.executable, "-I", "-S", "-X", "importtime", "-c", _CHILD, str(path)],
                           capture_output=True, text=True, check=True)
    found, loaded = json.loads(child.stdout)
    imported = {line.rpartition("|")[2].strip() for line in child.stderr.splitlines()
                if line.startswith("import time:")}
    assert sorted(imported.intersection(READERS)) == loaded, child.stderr
    return found, loaded


def _safetensors() -> bytes:
    header = json.dumps({"weight": {"dtype": "F32", "shape": [4, 4], "data_offsets": [0, 64]},
                         "__metadata__": {"format": "pt"}}).encode()
    return struct.pack("<Q", len(header)) + header + bytes(64)


ORDINARY = {
    "README.md": b"---\nlicense: mit\n---\n# A model\n\nN.B. trained on public data (see below).\n" * 3,
    "config.json": json.dumps({"architectures": ["Bert"], "hidden_size": 768}, indent=2).encode(),
    "model.safetensors": _safetensors(),
    "train.py": b"import os\n\n\ndef main() -> None:\n    print(os.getcwd())\n" * 200,
    "data.csv": b"".join(b"%d,%d,label%d\n" % (i, i * 7, i % 5) for i in range(2000)),
    "weights.raw": random.Random(7).randbytes(64 << 10),
}


@pytest.mark.parametrize("name", ORDINARY)
def test_sniffing_an_ordinary_file_imports_no_reader(name: str, tmp_path: Path) -> None:
    path = tmp_path / name
    path.write_bytes(ORDINARY[name])
    assert sniff_fresh(path) == (None, [])


def test_a_zip_checkpoint_is_still_recognised(tmp_path: Path) -> None:
    path = tmp_path / "pytorch_model.bin"
    with zipfile.ZipFile(path, "w") as archive:  # stored, as torch.save writes it
        archive.writestr("archive/data.pkl", pickle.dumps({"step": 1}, protocol=2))
        archive.writestr("archive/version", "3\n")
    found, loaded = sniff_fresh(path)
    assert found == "PyTorch zip checkpoint"
    assert "zipfile" not in loaded  # the zip layout is read by hand, never through zipfile


def test_a_compressed_npz_loads_only_its_own_decompressor(tmp_path: Path) -> None:
    path = tmp_path / "arrays.npz"
    np.savez_compressed(path, a=np.array([{"k": 1}], dtype=object))
    found, loaded = sniff_fresh(path)
    assert found == "NumPy archive with object arrays"
    assert "zlib" in loaded and "ast" in loaded and "bz2" not in loaded and "lzma" not in loaded


def test_a_tar_checkpoint_is_still_recognised(tmp_path: Path) -> None:
    path = tmp_path / "model.tar"
    with tarfile.open(path, "w") as archive:
        data = pickle.dumps({"step": 1}, protocol=2)
        info = tarfile.TarInfo("pickle")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    found, loaded = sniff_fresh(path)
    assert found == "PyTorch tar checkpoint"
    assert "tarfile" in loaded


def test_a_gzipped_pickle_is_still_recognised(tmp_path: Path) -> None:
    path = tmp_path / "model.pkl.gz"
    path.write_bytes(gzip.compress(pickle.dumps({"step": 1}, protocol=4)))
    found, loaded = sniff_fresh(path)
    assert found == "gzip-compressed pickle"
    assert "zlib" in loaded and "lzma" not in loaded


def test_an_object_npy_is_still_recognised(tmp_path: Path) -> None:
    path = tmp_path / "x.npy"
    np.save(path, np.array([{"k": 1}], dtype=object), allow_pickle=True)
    found, loaded = sniff_fresh(path)
    assert found == "NumPy object array"
    assert "ast" in loaded


class _Counting(io.FileIO):
    """A real file on disk, counting the bytes read from it."""

    read_bytes = 0

    def read(self, n: int | None = -1) -> bytes:
        data = super().read(n)
        self.read_bytes += len(data)
        return data


@pytest.mark.parametrize("kind", ["csv", "json", "random"])
def test_sniffing_a_large_ordinary_file_reads_only_its_head(kind: str, tmp_path: Path) -> None:
    rng = random.Random(3)
    path = tmp_path / "big"
    with path.open("wb") as out:
        for i in range(5 << 10):  # 5 MB or more
            if kind == "csv":
                out.write(b"".join(b"%d,%f\n" % (i, rng.random()) for _ in range(80)))
            elif kind == "json":
                out.write(b"[" if i == 0 else b",")
                out.write(json.dumps([{"id": i, "text": "x" * 1000}]).encode())
            else:
                out.write(rng.randbytes(1 << 10))
    size = path.stat().st_size
    assert size >= 5 << 20
    with _Counting(path) as f:
        assert pickle_format(f, size) is None
        assert f.read_bytes <= 1024  # a 512-byte head, and what the pickle walk parses of it


def _with_checksum(block: bytearray, style: int) -> bytes:
    """``block`` with its checksum field written in one of the encodings tarfile accepts."""
    block[148:156] = b" " * 8
    unsigned = sum(block)
    signed = unsigned - 256 * sum(1 for b in block if b >= 0x80)
    if style == 0:
        block[148:156] = b"%06o\x00 " % unsigned
    elif style == 1 or (style == 3 and signed >= 0):
        block[148:156] = b"  %o  " % signed  # tarfile strips spaces around the octal digits
    elif style == 2:
        block[148:156] = b"\x80" + unsigned.to_bytes(7, "big")  # base-256
    else:
        block[148:156] = b"\xff" + (signed + 256 ** 7).to_bytes(7, "big")  # negative base-256
    return bytes(block)


def _tarfile_opens(head: bytes) -> bool:
    try:
        tarfile.TarInfo.frombuf(head[:512], "utf-8", "surrogateescape")
    except (tarfile.TarError, ValueError, OverflowError):
        return False
    return True


def test_the_tar_pre_check_agrees_with_tarfile() -> None:
    # is_tar tests tarfile's checksum itself before importing tarfile: it must turn away nothing tarfile opens.
    rng = random.Random(11)
    templates = [tarfile.TarInfo("model/pickle").tobuf(fmt) for fmt in (tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT)]
    heads = [*templates, b"", bytes(512), b"x" * 511, ORDINARY["README.md"][:512]]
    for _ in range(3000):
        block = bytearray(rng.randbytes(512) if rng.random() < 0.2 else rng.choice(templates)[:512])
        for _ in range(rng.randint(0, 8)):
            block[rng.randrange(512)] = rng.randrange(256)
        if rng.random() < 0.5:  # high bytes where tarfile reads text (names): the signed sum differs
            block[0:100] = bytes(rng.randrange(0x80, 0x100) for _ in range(100))
            block[157:257] = bytes(rng.randrange(0x80, 0x100) for _ in range(100))
        style = rng.randrange(5)
        heads.append(bytes(block) if style == 4 else _with_checksum(block, style))
    verdicts = [(is_tar(head), _tarfile_opens(head)) for head in heads]
    assert all(ours == theirs for ours, theirs in verdicts)
    assert sum(ours for ours, _ in verdicts) > 500  # many pass, in every checksum encoding
