"""What reading a large model card costs: embedding-model cards carry 85 KB to 500 KB of ``model-index``, and the
front matter may be up to ``MAX_FRONT_MATTER_BYTES``.

    .venv/bin/python bench/model_card.py

Each case prints the front matter's size and the best of three times for the whole model-card check (with a
metric gate, so every result is read). Targets: a 500 KB model-index under 1 s, the largest front matter allowed
under 3 s, and a YAML bomb refused in milliseconds.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "checks" / "scanners"))

from fixtures.cards import embedding_card  # noqa: E402

from gitea_hf_hook.checks.scanners.model_card import MAX_FRONT_MATTER_BYTES, check_model_card  # noqa: E402

LAUGHS = b"---\nlicense: mit\n" + b"".join(
    f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10) if i else 'lol'}]\n".encode() for i in range(9)) + b"---\n"

CASES = {
    "ordinary card, 85 KB of model-index": embedding_card(85_000),
    "embedding card, 500 KB of model-index": embedding_card(500_000),
    "the largest front matter allowed": embedding_card(MAX_FRONT_MATTER_BYTES - 4096),
    "a billion laughs": LAUGHS,
}


def main() -> None:
    for name, data in CASES.items():
        best, findings = float("inf"), []
        for _ in range(3):
            start = time.perf_counter()
            findings = check_model_card(data, required=["license"], licenses=["mit"],
                                        metrics={"accuracy": (">=", 0.1)})
            best = min(best, time.perf_counter() - start)
        verdict = findings[0].problem[:60] if findings else "accepted"
        print(f"{name:40} {len(data) / 1000:7.0f} KB {best * 1000:8.1f} ms  {verdict}")


if __name__ == "__main__":
    main()
