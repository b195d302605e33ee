"""Fixtures running the Hub emulator as a real subprocess, driven by the real ``huggingface_hub`` client."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.hub import Hub

StartEmulator = Callable[..., Hub]


@pytest.fixture(scope="session")
def start_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StartEmulator]:
    """Factory: ``start_emulator(*extra_args, data_dir=None)`` starts one more emulator process."""
    started: list[Hub] = []
    logs = tmp_path_factory.mktemp("emulator-logs")

    def start(*args: str, data_dir: Path | None = None) -> Hub:
        stderr_path = logs / f"emulator-{os.getpid()}-{len(started)}.stderr"
        emulator = Hub(data_dir or tmp_path_factory.mktemp("hub-data"), stderr_path, *args)
        started.append(emulator)
        return emulator

    yield start
    for emulator in started:
        emulator.stop()


@pytest.fixture(scope="session")
def hub(start_emulator: StartEmulator) -> Hub:
    """One emulator shared by these tests, with small pages and parts so paging and multipart show up."""
    return start_emulator("--page-size", "4", "--multipart-threshold", "1M", "--chunk-size", "256K",
                          "--org", "acme")


@pytest.fixture
def clean_hub(hub: Hub) -> Iterator[Hub]:
    """The shared emulator with no fault left over and an empty request log."""
    hub.reset()
    yield hub
    hub.clear_faults()


_counter = iter(range(1_000_000))


@pytest.fixture
def repo_id(request: pytest.FixtureRequest) -> str:
    """A fresh repository id in the token owner's namespace (tests share one emulator)."""
    name = request.node.name.replace("[", "-").replace("]", "").replace("_", "-")[:60].strip("-")
    return f"emulator/{name}-{next(_counter)}"


def pytest_configure(config: pytest.Config) -> None:
    """Silence a deprecation the client itself triggers inside httpx2 on every LFS upload."""
    config.addinivalue_line("filterwarnings", "ignore:Use 'content=<...>' to upload raw:DeprecationWarning")
