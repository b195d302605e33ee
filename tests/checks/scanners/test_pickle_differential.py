"""scan_pickle against the unpickler itself: whatever the bytes, a file the scanner passes makes the real
unpicklers import nothing but allowed names.

Seed pickles (torch-style state dicts, pickle.dumps of every protocol, crafted ones) are mutated at random:
bytes flipped, opcodes and frames inserted, ranges cut or repeated. Each mutant is loaded by the C unpickler
from memory and from a BytesIO (which read frames differently), and by the pure-Python unpickler, with a
``find_class`` that records the name and hands back a stub that accepts any call, so loading goes on and
imports nothing. If the scanner passes a mutant, every recorded name must be in the allowlist.
"""

from __future__ import annotations

import _compat_pickle as _compat
import collections
import io
import pickle
import random
import struct
from typing import Any

import pytest
from fixtures.pickle_recipes import bu, exec_call, frame, glob, state_dict_pickle, su

from gitea_hf_hook.checks.scanners.pickles import WEIGHTS_ONLY_GLOBALS, scan_pickle

SEED, CASES = 20261202, 40_000


class _Stub:
    """Anything a pickle may do to an object: call it, build it, add items to it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __call__(self, *args: Any, **kwargs: Any) -> _Stub:
        return _Stub()

    def __setstate__(self, state: Any) -> None:
        pass

    def __setitem__(self, key: Any, value: Any) -> None:
        pass

    def append(self, item: Any) -> None:
        pass

    def extend(self, items: Any) -> None:
        pass

    def add(self, item: Any) -> None:
        pass


def _recording(base: type) -> type:
    class Recording(base):  # type: ignore[valid-type, misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.names: list[str] = []

        def find_class(self, module: str, name: str) -> Any:
            # The names as the real find_class would resolve them: Python 2 renames below protocol 3.
            if self.proto < 3 and (module, name) in _compat.NAME_MAPPING:
                module, name = _compat.NAME_MAPPING[(module, name)]
            elif self.proto < 3 and module in _compat.IMPORT_MAPPING:
                module = _compat.IMPORT_MAPPING[module]
            self.names.append(f"{module}.{name}")
            return _Stub

        def persistent_load(self, pid: Any) -> Any:
            return _Stub()

    return Recording


C_UNPICKLER, PY_UNPICKLER = _recording(pickle.Unpickler), _recording(pickle._Unpickler)  # type: ignore[attr-defined]


def imported(blob: bytes) -> set[str]:
    """Every name any of the three readings imports before it stops: C from a BytesIO (no peek: frames read
    as torch reads data.pkl), C from a buffered file (peek: read straight through, as from memory), Python."""
    names: set[str] = set()
    for unpickler, source in ((C_UNPICKLER, io.BytesIO(blob)), (C_UNPICKLER, io.BufferedReader(io.BytesIO(blob))),
                              (PY_UNPICKLER, io.BytesIO(blob))):
        u = unpickler(source, encoding="latin1")
        try:
            u.load()
        except Exception:  # noqa: BLE001 - mutants fail in every way; what they imported first is the point
            pass
        names.update(u.names)
    return names


def seeds() -> list[bytes]:
    out = [state_dict_pickle(3), b"\x80\x02ccollections\nOrderedDict\n)R."]
    value = {"a": [1, 2.5, "x" * 40, b"y" * 20], "s": {1, 2}, "t": (None, True), "od": collections.OrderedDict(k=1)}
    out += [pickle.dumps(value, protocol=p) for p in range(6)]
    out += [exec_call("/nonexistent/m", 4), b"\x80\x04" + frame(su("torch") + su("Size") + b"\x93") + b")R."]
    out += [b"\x80\x02" + glob("torch", "FloatStorage") + bu("k") + b"\x86Q."]
    return out


PIECES = [
    b"(", b"0", b"1", b"2", b"t", b"l", b"d", b"s", b"u", b"a", b"e", b"b", b"R", b"\x81", b"\x85", b"\x86",
    b"\x93", b"\x94", b"h\x00", b"h\x01", b"q\x00", b"q\x01", b"g0\n", b"p0\n", b"N", b"}", b"]", b")", b".",
    su("os"), su("system"), su("torch"), su("Size"), b"Vos\n", b"S'os'\n", bu("system"),
    b"cos\nsystem\n", b"ctorch\nSize\n", b"c__builtin__\nset\n", b"\x80\x02", b"\x80\x04",
    b"\x95" + struct.pack("<Q", 1), b"\x95" + struct.pack("<Q", 3), b"\x95" + struct.pack("<Q", 9),
    b"C\x02", b"C\x05", b"\x8c\x03", b"K\x01", b"P0\n", b"Q",
]


def mutate(rng: random.Random, blob: bytes) -> bytes:
    data = bytearray(blob)
    for _ in range(rng.randint(1, 6)):
        at = rng.randrange(len(data) + 1)
        choice = rng.random()
        if choice < 0.4:
            data[at:at] = rng.choice(PIECES)
        elif choice < 0.6 and data:
            data[min(at, len(data) - 1)] = rng.randrange(256)
        elif choice < 0.8:
            del data[at:at + rng.randint(1, 8)]
        else:
            data[at:at] = data[at:at + rng.randint(1, 16)]
    return bytes(data)


def test_the_reading_machinery_records_imports() -> None:
    assert imported(b"cos\nsystem\n(S'x'\ntR.") == {"os.system"}
    assert imported(b"\x80\x02c__builtin__\nset\n)R.") == {"builtins.set"}


@pytest.mark.parametrize("chunk", range(4))
def test_a_passed_mutant_imports_only_allowed_names(chunk: int) -> None:
    rng = random.Random(SEED + chunk)
    base = seeds()
    escaped: list[tuple[bytes, set[str]]] = []
    for _ in range(CASES // 4):
        blob = mutate(rng, rng.choice(base))
        if scan_pickle(io.BytesIO(blob)):
            continue
        names = imported(blob)
        if not names <= WEIGHTS_ONLY_GLOBALS:
            escaped.append((blob, names - WEIGHTS_ONLY_GLOBALS))
    assert escaped == []
