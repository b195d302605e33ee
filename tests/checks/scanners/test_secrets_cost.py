"""A pusher chooses every byte the secrets scanner reads, so its cost must grow linearly with the input for
every pattern family, and a file read in windows must give exactly the findings of one pass.

Growth is measured as a ratio, not a time: the same adversarial input at sizes n and 4n, best of three runs
each. Linear work takes about four times as long; the quadratic patterns this replaced took sixteen times
as long, or never finished: each run is cut off after ``CUTOFF`` seconds, which fails the test.
"""

from __future__ import annotations

import io
import random
import signal
import string
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from gitea_hf_hook.checks.scanners.secrets import MAX_MATCH, scan_secrets, scan_secrets_file

CUTOFF = 10.0
N = 1 << 20
DASHES = "-" * 5
HEADER = f"{DASHES}BEGIN RSA PRIVATE KEY{DASHES}"


class TooSlow(Exception):
    pass


@contextmanager
def cutoff(seconds: float) -> Iterator[None]:
    """Stop a scan that runs too long: the regex engine checks for signals as it goes."""

    def stop(signum: int, frame: object) -> None:
        raise TooSlow

    previous = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def repeat(unit: str) -> Callable[[int], bytes]:
    return lambda n: (unit * (n // len(unit) + 1)).encode()[:n]


def after(prefix: str, filler: str) -> Callable[[int], bytes]:
    return lambda n: prefix.encode() + (filler * (n // len(filler) + 1)).encode()[:n]


# Inputs that make a backtracking pattern try many splits or many starts, per family.
ADVERSARIAL: dict[str, Callable[[int], bytes]] = {
    "hugging face: prefixes": repeat("hf" + "_"),
    "hugging face: a long body": after("hf" + "_", "aB"),
    "hugging face org: prefixes": repeat("api_org" + "_a"),
    "aws: prefixes": repeat("AKIA"),
    "aws: a long body": after("AKIA", "A1"),
    "github: prefixes": repeat("ghp" + "_"),
    "github: fine-grained runs": repeat("github_pat_" + "a1" * 11 + "_"),
    "gitlab: a long body without its dot": after("glpat" + "-", "a-"),
    "gitlab: prefixes": repeat("glpat" + "-a"),
    "slack: digits": after("xoxb" + "-", "1"),
    "slack: id groups": after("xoxp" + "-", "1234567890-"),
    "slack: legacy groups": repeat("xoxs" + "-1-1-1-"),
    "slack: prefixes": repeat("xox"),
    "slack: near misses inside near misses": repeat("axoxa" + "-1-"),
    "webhook: a long team id": after(f"hooks.slack{'.'}com/services/T", "A"),
    "webhook: hosts": repeat(f"HOOKS.SLACK{'.'}COM/"),
    "private key: header then blanks": after(HEADER, " "),
    "private key: header then blank lines": after(HEADER + "\n", " \n"),
    "private key: header then armor lines": after(HEADER + "\n", "Proc-Type: " + "x" * 200 + "\n"),
    "private key: headers": repeat(HEADER),
    "private key: label words": after(f"{DASHES}BEGIN ", "A "),
}


def best_time(data: bytes) -> float:
    best = CUTOFF
    for _ in range(3):
        started = time.perf_counter()
        try:
            with cutoff(CUTOFF):
                scan_secrets(data)
        except TooSlow:
            pytest.fail(f"scanning {len(data)} bytes took over {CUTOFF} s")
        best = min(best, time.perf_counter() - started)
    return best


@pytest.mark.parametrize("family", ADVERSARIAL)
def test_scanning_time_grows_linearly(family: str) -> None:
    make = ADVERSARIAL[family]
    small, large = best_time(make(N)), best_time(make(4 * N))
    # Under 50 ms for 4 MiB, no pattern is doing quadratic work, whatever the ratio of two tiny times says.
    assert large < max(8 * small, 0.05), f"{family}: {small:.4f} s for 1 MiB, {large:.4f} s for 4 MiB"


def _token(rng: random.Random) -> str:
    alnum = string.ascii_letters + string.digits
    body = "".join(rng.choice(alnum) for _ in range(34))
    key_lines = "\n".join("".join(rng.choice(alnum + "+/") for _ in range(64)) for _ in range(3))
    return rng.choice([
        "hf" + "_" + body[:16] + "Ab" + body[18:],
        "AKIA" + "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") for _ in range(16)),
        f"{HEADER}\nProc-Type: 4,ENCRYPTED\n\n{key_lines}",
        "xhf" + "_" + body,  # not at a word start: must stay unreported after a window boundary too
        "hf" + "_" + "x" * 34,  # a placeholder
    ])


def test_a_file_read_in_windows_has_the_findings_of_one_pass() -> None:
    rng = random.Random(7)
    window = 2 * (MAX_MATCH + 1)
    for _ in range(40):
        parts: list[str] = []
        size = 0
        while size < 12 * window:
            if rng.random() < 0.3:
                parts.append(_token(rng))
            else:  # filler that ends a token's body, or continues it
                parts.append(rng.choice([" ", "\n", "x", "word\n", "a" * rng.randrange(1, 3 * MAX_MATCH)]))
            size += len(parts[-1])
        data = "".join(parts).encode()
        whole = scan_secrets(data)
        assert scan_secrets_file(io.BytesIO(data), len(data), window) == whole


def test_a_token_on_every_window_boundary_is_found_once_on_its_line() -> None:
    window = 2 * (MAX_MATCH + 1)
    token = "hf" + "_" + "aB3xY9Qz7KmN2pL5" * 2 + "Qz"
    for shift in range(-len(token) - 2, 3):
        start = window - MAX_MATCH - 1 + shift  # around where the second window takes over
        data = b"\n" * start + b" " + token.encode() + b" \n" + b"y" * (3 * window)
        (finding,) = scan_secrets_file(io.BytesIO(data), len(data), window)
        assert finding.line == start + 1


def test_only_the_given_size_is_read() -> None:
    token = "hf" + "_" + "aB3xY9Qz7KmN2pL5" * 2 + "Qz"
    data = b"x" * 10_000 + b" " + token.encode()
    assert scan_secrets_file(io.BytesIO(data), 10_000) == []
