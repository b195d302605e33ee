"""How long the demo takes after the install step (the target is under a minute):

    .venv/bin/python bench/demo.py

Runs ``demo/run`` in a fresh sandbox three times and prints each wall time and the best.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    times = []
    for _ in range(3):
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            done = subprocess.run([str(ROOT / "demo" / "run"), "--dir", str(Path(tmp) / "sandbox")],
                                  capture_output=True, text=True)
            times.append(time.perf_counter() - start)
            if done.returncode != 0:
                sys.exit(f"the demo failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    print(" ".join(f"{t:.1f} s" for t in times), f"(best {min(times):.1f} s)")


if __name__ == "__main__":
    main()
