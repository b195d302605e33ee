"""What a hostile push costs the server: the pushes that once held a push for minutes or gigabytes, timed and
measured through Gitea's dispatcher hooks with Gitea's environment, as in the tests.

    .venv/bin/python bench/hostile_push.py

Each case prints the push's wall time, its verdict's first line and the hook's peak memory (the largest resident
set of any child the push waited for, git's own processes included). Targets: every case under 10 s and 512 MiB.
The largest JSON parsed is 8 MiB (``checks.objects.MAX_JSON``), so that case is the worst JSON a push can hold.
The old figures were 81 s for 64 KiB of a key header and blanks, 51 s for one 9.5 MiB blob under 40 paths, 40 s
for one commit pushed to 30 new refs, and 1.6 GB for a 64 MiB JSON object in Git LFS.
"""

from __future__ import annotations

import resource
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.gitea_server import Clone, GiteaServer  # noqa: E402
from tests.support.rules import CARD, GROUPS, RULE  # noqa: E402

MIB = 1024 * 1024


def key_header_and_blanks(clone: Clone) -> list[str]:
    clone.commit({"notes.txt": "-----BEGIN RSA PRIVATE KEY-----" + " " * (9 * MIB)})
    return ["main"]


def key_header_in_lfs(clone: Clone) -> list[str]:
    clone.write_lfs("notes.txt", b"-----BEGIN RSA PRIVATE KEY-----\n" + b" \n" * (31 * MIB))
    clone.commit()
    return ["main"]


def one_blob_under_40_paths(clone: Clone) -> list[str]:
    blob = ("w = [" + "0.1, " * (19 * MIB // 10) + "]\n")[: int(9.5 * MIB)]
    clone.commit({f"copies/{i}/weights.py": blob for i in range(40)})
    return ["main"]


def one_commit_to_30_refs(clone: Clone) -> list[str]:
    clone.commit({"data.txt": "x" * (9 * MIB)})
    tags = [f"v1.{i}" for i in range(30)]
    for tag in tags:
        clone.git("tag", tag)
    return ["main", *tags]


def lfs_json(clone: Clone) -> list[str]:
    clone.write_lfs("data.json", b"[" + b"[]," * (8 * MIB // 3 - 1) + b"[]]")
    clone.commit()
    return ["main"]


def deep_json(clone: Clone) -> list[str]:
    clone.commit({"config.json": "[" * 100_000})
    return ["main"]


CASES: dict[str, Callable[[Clone], list[str]]] = {
    "9 MiB of a key header and blanks": key_header_and_blanks,
    "64 MiB of the same in Git LFS": key_header_in_lfs,
    "one 9.5 MiB blob under 40 paths": one_blob_under_40_paths,
    "one commit pushed to 30 new refs": one_commit_to_30_refs,
    "8 MiB of empty JSON lists in Git LFS": lfs_json,
    "100 KB of nested brackets": deep_json,
}


def push_alone(clone: Clone, refspecs: list[str]) -> tuple[float, int, list[str], bool]:
    """Push from a fresh child process, so that its peak memory counts the push's processes and nothing else."""
    import json
    import os

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        start = time.perf_counter()
        result = clone.push(*refspecs)
        elapsed = time.perf_counter() - start
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        os.write(write, json.dumps([elapsed, peak, result.remote, result.ok]).encode())
        os._exit(0)
    os.close(write)
    with open(read, "rb") as f:
        elapsed, peak, remote, ok = json.loads(f.read())
    os.waitpid(pid, 0)
    return elapsed, peak, remote, ok


def main() -> None:
    for name, build in CASES.items():
        with tempfile.TemporaryDirectory() as tmp:
            base = Path(tmp)
            server = GiteaServer(base)
            server.write_config(RULE, extra=GROUPS)
            server.create_repo("acme", "bert-tiny")
            server.install("acme/bert-tiny")
            clone = server.clone("acme", "bert-tiny", base / "work")
            clone.write({"README.md": CARD})
            elapsed, peak, remote, ok = push_alone(clone, build(clone))
            verdict = "accepted" if ok else (remote[1].strip() if len(remote) > 1 else "rejected")
            print(f"{name:36} {elapsed:6.2f} s  peak {peak / 1024:5.0f} MiB  {verdict[:100]}")


if __name__ == "__main__":
    main()
