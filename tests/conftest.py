"""Shared fixtures: a Gitea server's disk, its repositories and engineers' clones, and a Hub emulator."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

# The Hugging Face client reads these at import time: they are set here, before anything imports
# huggingface_hub, for this process and every hook or worker subprocess the tests start.
os.environ["HF_HUB_DISABLE_XET"] = "1"  # the emulator speaks Git LFS, not Xet
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["HF_HOME"] = _HF_HOME = tempfile.mkdtemp(prefix="hf-home-")
os.environ.pop("HF_TOKEN", None)
os.environ.pop("HF_ENDPOINT", None)

import pytest  # noqa: E402
from huggingface_hub import constants  # noqa: E402

from tests.support.gitea_api import GiteaApi  # noqa: E402
from tests.support.gitea_server import Clone, GiteaServer  # noqa: E402
from tests.support.hub import Hub  # noqa: E402
from tests.support.rules import CARD, GROUPS, RULE  # noqa: E402

# A plugin may have imported huggingface_hub before this conftest ran; the upload path re-reads this constant
# on every call, so pinning it keeps the tests on Git LFS whatever the import order.
constants.HF_HUB_DISABLE_XET = True


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(_HF_HOME, ignore_errors=True)


@pytest.fixture(autouse=True)
def _isolated_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Pin git's identity and keep every test away from the real home and system config."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_AUTHOR_NAME", "Alice Engineer")
    monkeypatch.setenv("GIT_AUTHOR_EMAIL", "alice@example.com")
    monkeypatch.setenv("GIT_COMMITTER_NAME", "Alice Engineer")
    monkeypatch.setenv("GIT_COMMITTER_EMAIL", "alice@example.com")
    monkeypatch.setenv("GIT_TERMINAL_PROMPT", "0")
    for name in list(os.environ):
        if name.startswith(("GITEA_", "GIT_PUSH_OPTION")) or name == "GIT_DIR":
            monkeypatch.delenv(name)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[GiteaServer]:
    """Gitea's disk, and its LFS batch endpoint on loopback (stopped after the test)."""
    gitea = GiteaServer(tmp_path)
    gitea.gitea_api = GiteaApi(gitea.lfs_root)
    yield gitea
    gitea.gitea_api.close()


@pytest.fixture
def gitea(server: GiteaServer) -> GiteaServer:
    """A server with acme/bert-tiny, our hooks installed, and a rule publishing acme/* to the Hub."""
    server.write_config(RULE, extra=GROUPS)
    server.create_repo("acme", "bert-tiny")
    server.install("acme/bert-tiny")
    return server


@pytest.fixture
def clone(gitea: GiteaServer, tmp_path: Path) -> Clone:
    """Alice's working copy of acme/bert-tiny holding a valid model card."""
    c = gitea.clone("acme", "bert-tiny", tmp_path / "work")
    c.write({"README.md": CARD})
    return c


@pytest.fixture(scope="session")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    """One emulator shared by the publish tests (each uses its own repositories; counters are compared as deltas)."""
    emulator = Hub(tmp_path_factory.mktemp("hub-data"), tmp_path_factory.mktemp("hub-log") / "stderr",
                   "--org", "acme", "--page-size", "3")
    yield emulator
    emulator.stop()


@pytest.fixture
def gitea_api(server: GiteaServer) -> GiteaApi:
    """Gitea's LFS batch endpoint, answering from ``server``'s LFS store (every server has one)."""
    assert server.gitea_api is not None
    return server.gitea_api
