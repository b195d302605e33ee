"""How the demo prints: numbered sections that say what happens, then each command and its real output."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

WIDTH = 100


def section(number: int, title: str, *paragraphs: str) -> None:
    heading = f"== {number}. {title} "
    print(f"\n{heading}{'=' * max(4, WIDTH - len(heading))}")
    for paragraph in paragraphs:
        print(textwrap.fill(paragraph, WIDTH))
    print()


def say(*paragraphs: str) -> None:
    for paragraph in paragraphs:
        print(textwrap.fill(paragraph, WIDTH))


def run(argv: Sequence[str], *, shown: str, cwd: Path | None = None,
        env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Print ``$ shown``, run ``argv``, print what it wrote (standard output and error, in order) and a non-zero
    exit code."""
    print(f"$ {shown}")
    sys.stdout.flush()
    done = subprocess.run(list(argv), cwd=cwd, env=None if env is None else dict(env), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, errors="replace", timeout=120)
    output(done.stdout)
    if done.returncode:
        print(f"(exit code {done.returncode})")
    return done


def output(text: str) -> None:
    if text:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
