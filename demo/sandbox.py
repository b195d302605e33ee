"""The sandbox: a Gitea server's disk as the tests lay it out, the Hub emulator, the stand-in for Gitea's API, our
config and our hooks. The tests' own support code builds it, so the demo shows exactly the layout they check."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.support.gitea_api import GiteaApi
from tests.support.gitea_server import CLI, GiteaServer
from tests.support.hub import Hub
from tests.support.publishing import configure

from . import show

OWNER, NAME = "acme", "bert-tiny"
REPOSITORY = f"{OWNER}/{NAME}"
# alice publishes acme/* to the Hub namespace of the same name; every other check keeps its default (on).
RULE = """\
  - match: acme/*
    hub_repo: acme/{name}
    publishers: [alice]
    checks:
      model_card:
        required: [license]
"""


def isolate(base: Path) -> None:
    """This process's environment, which every command the demo runs inherits: git and the Hub client read
    nothing of the caller's own config, tokens or endpoint, and write nothing outside the sandbox."""
    for name in list(os.environ):
        if name.startswith(("GIT_", "GITEA_", "HF_", "HUGGING_FACE_")) or name in ("XDG_CONFIG_HOME",
                                                                                     "XDG_CACHE_HOME"):
            del os.environ[name]
    home = base / "home"
    home.mkdir(mode=0o700)
    os.environ.update({
        "HOME": str(home),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_TERMINAL_PROMPT": "0",
        "HF_HOME": str(base / "hf-home"),
        "HF_HUB_DISABLE_XET": "1",  # the emulator speaks Git LFS, not Xet
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
    })


def program() -> list[str]:
    """The ``gitea-hf-hook`` command of this virtual environment, else its entry point run with ``-c``."""
    script = Path(sys.executable).with_name("gitea-hf-hook")
    return [str(script)] if script.is_file() else CLI


@dataclass
class Sandbox:
    """What the demo runs against, stopped by :meth:`stop` (the folder stays for the reader to look at)."""

    base: Path
    server: GiteaServer
    gitea_api: GiteaApi
    hub: Hub
    worker_home: Path

    @property
    def repository(self) -> Path:
        return self.server.repo_root / OWNER / f"{NAME}.git"

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``gitea-hf-hook --config CONFIG ARGS...`` as the worker's user runs it (its own home), shown."""
        env = dict(os.environ, HOME=str(self.worker_home))
        return show.run([*program(), "--config", str(self.server.config_path), *args],
                        shown=" ".join(["gitea-hf-hook", "--config", str(self.server.config_path), *args]), env=env)

    def stop(self) -> None:
        self.hub.stop()
        self.gitea_api.close()


def start(base: Path) -> Sandbox:
    """Lay out the server, start the two stand-ins, write the config and token files: nothing shown yet."""
    server = GiteaServer(base)
    worker_home = base / "hf" / "home"
    worker_home.mkdir(mode=0o700, parents=True)  # the worker refuses a home anyone else may write
    (base / "hub").mkdir()
    gitea_api = server.gitea_api = GiteaApi(server.lfs_root)
    try:
        hub = Hub(base / "hub", base / "hub-emulator.log", "--org", OWNER)
    except BaseException:
        gitea_api.close()
        raise
    sandbox = Sandbox(base, server, gitea_api, hub, worker_home)
    try:
        server.create_repo(OWNER, NAME)
        configure(server, hub, RULE)
    except BaseException:
        sandbox.stop()
        raise
    return sandbox
