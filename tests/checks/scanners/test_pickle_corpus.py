"""The malicious samples of public pickle scanners' test corpora, rebuilt from recipes: every one is refused,
and those whose loader is installed here are shown to run their canary when loaded."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from fixtures.pickle_corpus import PUBLIC
from fixtures.pickle_recipes import Sample, run_loader

from gitea_hf_hook.checks.scanners.pickles import pickle_format, scan_pickle

RUNNABLE = [sample for sample in PUBLIC if sample.loader is not None]


def test_the_corpus_is_whole() -> None:
    # 76 callables through two or three protocols, and the hand-built opcode, zip and NumPy samples.
    assert (len(PUBLIC), len(RUNNABLE)) == (162, 9)


@pytest.mark.parametrize("sample", PUBLIC, ids=lambda s: s.name)
def test_every_public_sample_is_refused(sample: Sample, tmp_path: Path) -> None:
    blob = sample.build(str(tmp_path / "marker"))
    found = scan_pickle(io.BytesIO(blob))
    assert found, sample.name
    # What a pusher reads names the danger: an import, a crafted layout, or data that is not a pickle.
    assert all(f.problem and "\n" not in f.problem for f in found)


@pytest.mark.parametrize("sample", [s for s in PUBLIC if s.name not in ("broken-exec",)], ids=lambda s: s.name)
def test_every_public_sample_is_named_a_pickle_format(sample: Sample, tmp_path: Path) -> None:
    blob = sample.build(str(tmp_path / "marker"))
    assert pickle_format(io.BytesIO(blob), len(blob)) is not None


def test_a_pickle_that_fails_before_any_call_is_no_format() -> None:
    # builtins.exec is imported, then a length runs past the end: nothing was called.
    blob = next(s for s in PUBLIC if s.name == "broken-exec").build("unused")
    assert pickle_format(io.BytesIO(blob), len(blob)) is None
    assert [f.problem for f in scan_pickle(io.BytesIO(blob))] == [
        "pickle imports builtins.exec, which can run code when loaded", "not a valid pickle"
    ]


@pytest.mark.parametrize("sample", RUNNABLE, ids=lambda s: s.name)
def test_the_loader_runs_the_canary(sample: Sample, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    path = tmp_path / "sample.bin"
    path.write_bytes(sample.build(str(marker)))
    assert sample.loader is not None
    run_loader(path, sample.loader)
    assert marker.read_text() == "ran"
