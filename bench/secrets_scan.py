"""How fast the secrets scanner reads what a push holds: ordinary files, and inputs built to make a backtracking
pattern try many splits, each 16 MiB and read through ``scan_secrets_file`` in its windows, as the push does.

    .venv/bin/python bench/secrets_scan.py

Each case prints the best of three wall times and the throughput. The target is any 16 MiB input in under 5 s,
hostile or not: what a pusher chooses must cost what its size costs, no more. The worst are candidates nested in
candidates, each of which the pattern follows for up to its longest form: about 0.25 s/MiB. tests/checks/scanners/
test_secrets_cost.py checks the growth is linear; this says what the constant is.
The pattern this replaced took 81 s for 64 KiB of a private-key header followed by blanks.
"""

from __future__ import annotations

import io
import os
import random
import string
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gitea_hf_hook.checks.scanners.secrets import scan_secrets_file  # noqa: E402

SIZE = 16 * 1024 * 1024
DASHES = "-" * 5


def filled(unit: str | bytes) -> Callable[[], bytes]:
    raw = unit.encode() if isinstance(unit, str) else unit
    return lambda: (raw * (SIZE // len(raw) + 1))[:SIZE]


def after(prefix: str, filler: str) -> Callable[[], bytes]:
    return lambda: (prefix.encode() + filler.encode() * (SIZE // len(filler) + 1))[:SIZE]


def source_code() -> bytes:
    lines = [f"    layer_{i} = nn.Linear({i}, {i + 1})  # hidden size {i * 64}\n" for i in range(200)]
    return filled("".join(lines))()


def random_text() -> bytes:
    rng = random.Random(8)
    alphabet = string.ascii_letters + string.digits + " \n_-.:/"
    return "".join(rng.choices(alphabet, k=SIZE)).encode()


CASES: dict[str, Callable[[], bytes]] = {
    "python source": source_code,
    "random bytes": lambda: os.urandom(SIZE),
    "random text": random_text,
    "a key header, then blanks": after(f"{DASHES}BEGIN RSA PRIVATE KEY{DASHES}", " "),
    "a key header, then blank lines": after(f"{DASHES}BEGIN RSA PRIVATE KEY{DASHES}\n", " \n"),
    "key headers, repeated": filled(f"{DASHES}BEGIN RSA PRIVATE KEY{DASHES}"),
    "token prefixes, repeated": filled("hf" + "_ghp" + "_AKIAglpat" + "-xoxb" + "-"),
    "slack id groups": after("xoxp" + "-", "1234567890-"),
    "a long gitlab body without its dot": after("glpat" + "-", "a-"),
    "gitlab near misses, nested": filled("aglpat" + "-"),
    "slack near misses, nested": filled("axoxa" + "-1-"),
}


def main() -> None:
    for name, build in CASES.items():
        data = build()
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            scan_secrets_file(io.BytesIO(data), len(data))
            best = min(best, time.perf_counter() - start)
        print(f"{name:36} {best * 1000:8.1f} ms  {len(data) / best / 2**20:7.0f} MiB/s")


if __name__ == "__main__":
    main()
