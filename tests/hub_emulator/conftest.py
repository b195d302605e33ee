"""Fixtures running the Hub emulator as a real subprocess, driven by the real ``huggingface_hub`` client."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

# The client reads these at import time: they must be set before anything imports huggingface_hub.
os.environ["HF_HUB_DISABLE_XET"] = "1"  # the emulator speaks Git LFS, not Xet
os.environ.setdefault("HF_HOME", tempfile.mkdtemp(prefix="hf-home-"))
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ.pop("HF_TOKEN", None)
os.environ.pop("HF_ENDPOINT", None)

import pytest  # noqa: E402
from huggingface_hub import HfApi, constants  # noqa: E402

# Another test module may have imported huggingface_hub before this conftest ran; the upload path re-reads
# this constant on every call, so pinning it here keeps these tests on Git LFS whatever the import order.
constants.HF_HUB_DISABLE_XET = True

REPO_ROOT = Path(__file__).resolve().parents[2]
TOKEN = "hf_EmulatorTestToken0123456789"
OTHER_TOKEN = "hf_BobTestToken9876543210"
READ_TOKEN = "hf_ReadOnlyToken55555"
START_TIMEOUT = 20.0


class Emulator:
    """A running emulator process: its URL, a client for it, and the ``/_emulator`` control endpoints.

    Test modules reach the tokens through the instance (``hub.token``...) rather than importing this module.
    """

    token = TOKEN              # user "emulator", write
    other_token = OTHER_TOKEN  # user "bob", write
    read_token = READ_TOKEN    # user "reader", read only

    def __init__(self, data_dir: Path, log_dir: Path, args: list[str]) -> None:
        self.data_dir = data_dir
        self.stderr_path = log_dir / f"emulator-{os.getpid()}-{id(self)}.stderr"
        self._stderr = open(self.stderr_path, "wb")
        cmd = [sys.executable, "-m", "gitea_hf_hook.hub_emulator", "--host", "127.0.0.1", "--port", "0",
               "--data", str(data_dir), "--token", TOKEN, "--token", f"bob={OTHER_TOKEN}",
               "--token", f"reader={READ_TOKEN}:read", *args]
        self.process = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=self._stderr)
        self.trailing_stdout = b""
        self.banner = self._read_banner()
        self.url = self.banner.rsplit(" ", 1)[-1]

    def _read_banner(self) -> str:
        assert self.process.stdout is not None
        # Bounded wait for the one line the emulator prints once it accepts connections.
        ready, _, _ = select.select([self.process.stdout], [], [], START_TIMEOUT)
        line = self.process.stdout.readline().decode() if ready else ""
        if not line.startswith("hub-emulator listening on http://"):
            self.process.kill()
            raise RuntimeError(f"emulator did not start: {line!r} {self.stderr_path.read_text()}")
        return line.strip()

    def api(self, token: str | bool = TOKEN) -> HfApi:
        """The real client, pointed at this emulator."""
        return HfApi(endpoint=self.url, token=token)

    def control(self, method: str, path: str, payload: Any = None, token: str = TOKEN) -> Any:
        """Call a ``/_emulator/...`` endpoint; returns the decoded JSON answer."""
        data = json.dumps(payload).encode() if payload is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers={"Authorization": f"Bearer {token}",
                                                  "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def requests(self) -> list[dict[str, Any]]:
        """The request log (method, path, status)."""
        return self.control("GET", "/_emulator/requests")["requests"]

    def clear_requests(self) -> None:
        """Empty the request log."""
        self.control("DELETE", "/_emulator/requests")

    def fault(self, **rule: Any) -> None:
        """Add one fault rule (keys as in ``faults.py``)."""
        self.control("POST", "/_emulator/faults", rule)

    def stats(self) -> dict[str, Any]:
        """The emulator's counters."""
        return self.control("GET", "/_emulator/stats")

    def stop(self) -> int:
        """SIGTERM and wait; returns the exit status."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        assert self.process.stdout is not None
        if not self.process.stdout.closed:
            self.trailing_stdout = self.process.stdout.read()  # whatever followed the listening line
            self.process.stdout.close()
        self._stderr.close()
        return self.process.returncode


StartEmulator = Callable[..., Emulator]


@pytest.fixture(scope="session")
def start_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StartEmulator]:
    """Factory: ``start_emulator(data_dir=None, *extra_args)`` starts one more emulator process."""
    started: list[Emulator] = []
    logs = tmp_path_factory.mktemp("emulator-logs")

    def start(*args: str, data_dir: Path | None = None) -> Emulator:
        emulator = Emulator(data_dir or tmp_path_factory.mktemp("hub-data"), logs, list(args))
        started.append(emulator)
        return emulator

    yield start
    for emulator in started:
        emulator.stop()


@pytest.fixture(scope="session")
def hub(start_emulator: StartEmulator) -> Emulator:
    """One emulator shared by the session, with small pages and parts so paging and multipart show up."""
    return start_emulator("--page-size", "4", "--multipart-threshold", "1M", "--chunk-size", "256K",
                          "--org", "acme")


@pytest.fixture
def clean_hub(hub: Emulator) -> Iterator[Emulator]:
    """The shared emulator with no fault left over and an empty request log."""
    hub.control("DELETE", "/_emulator/faults")
    hub.clear_requests()
    yield hub
    hub.control("DELETE", "/_emulator/faults")


_counter = iter(range(1_000_000))


@pytest.fixture
def repo_id(request: pytest.FixtureRequest) -> str:
    """A fresh repository id in the token owner's namespace (tests share one emulator)."""
    name = request.node.name.replace("[", "-").replace("]", "").replace("_", "-")[:60].strip("-")
    return f"emulator/{name}-{next(_counter)}"


def pytest_configure(config: pytest.Config) -> None:
    """Silence a deprecation the client itself triggers inside httpx2 on every LFS upload."""
    config.addinivalue_line("filterwarnings", "ignore:Use 'content=<...>' to upload raw:DeprecationWarning")
