"""The Hub emulator as a real subprocess, driven by the real ``huggingface_hub`` client.

``tests/conftest.py`` prepares the client's environment (Git LFS instead of Xet, no progress bars, a private
HF_HOME...) before anything imports huggingface_hub; this module relies on it.
"""

from __future__ import annotations

import json
import secrets
import select
import subprocess
import sys
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from huggingface_hub import HfApi, snapshot_download

REPO_ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT = 20.0
LISTENING = "hub-emulator listening on http://"


class Hub:
    """A running emulator process: its URL, a client for it, and the ``/_emulator`` control endpoints.

    Every emulator accepts the three tokens below; ``args`` adds emulator options (``--org``, ``--page-size``...).
    Tests reach the tokens through the class or the instance (``hub.token``...).
    """

    # Built when the tests start, so that no token-shaped value is written in the code.
    token = "hf_" + secrets.token_hex(16)        # user "emulator", write
    other_token = "hf_" + secrets.token_hex(16)  # user "bob", write
    read_token = "hf_" + secrets.token_hex(12)   # user "reader", read only

    def __init__(self, data_dir: Path, stderr_path: Path, *args: str) -> None:
        self.data_dir = data_dir
        self.stderr_path = stderr_path
        self._stderr = open(stderr_path, "wb")
        cmd = [sys.executable, "-m", "gitea_hf_hook.hub_emulator", "--host", "127.0.0.1", "--port", "0",
               "--data", str(data_dir), "--token", self.token, "--token", f"bob={self.other_token}",
               "--token", f"reader={self.read_token}:read", *args]
        self.process = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=self._stderr)
        self.trailing_stdout = b""
        self.banner = self._read_banner()
        self.url = self.banner.rsplit(" ", 1)[-1]

    def _read_banner(self) -> str:
        assert self.process.stdout is not None
        # Bounded wait for the one line the emulator prints once it accepts connections.
        ready, _, _ = select.select([self.process.stdout], [], [], START_TIMEOUT)
        line = self.process.stdout.readline().decode() if ready else ""
        if not line.startswith(LISTENING):
            self.process.kill()
            self.process.wait()
            self._stderr.close()
            raise RuntimeError(f"emulator did not start: {line!r} {self.stderr_path.read_text()}")
        return line.strip()

    def api(self, token: str | bool | None = None) -> HfApi:
        """The real client, pointed at this emulator (with the write token unless told otherwise)."""
        return HfApi(endpoint=self.url, token=self.token if token is None else token)

    def control(self, method: str, path: str, payload: Any = None, token: str | None = None) -> Any:
        """Call a ``/_emulator/...`` endpoint; returns the decoded JSON answer."""
        data = json.dumps(payload).encode() if payload is not None else None
        token = self.token if token is None else token
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers={"Authorization": f"Bearer {token}",
                                                  "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def add_token(self, user: str, role: str = "fineGrained", *, scoped: Sequence[tuple[str, str, Sequence[str]]] = (),
                  created_at: str | None = "") -> str:
        """A new token of ``user``, made now: a classic ``read`` or ``write`` one, or a ``fineGrained`` one with
        ``scoped`` entries ``(entity type, name, permissions)``, such as ``("org", "acme", ["repo.write"])``.
        whoami-v2 reports ``created_at`` as its creation date (an ISO time; "" is now, None reports none)."""
        token = "hf_" + secrets.token_hex(16)
        payload: dict[str, Any] = {"token": token, "user": user, "role": role, "scoped": [
            {"entity": {"type": kind, "name": name}, "permissions": list(permissions)}
            for kind, name, permissions in scoped]}
        if created_at != "":
            payload["createdAt"] = created_at
        self.control("POST", "/_emulator/tokens", payload)
        return token

    def requests(self) -> list[dict[str, Any]]:
        """The request log (method, path, status)."""
        return self.control("GET", "/_emulator/requests")["requests"]

    def clear_requests(self) -> None:
        """Empty the request log."""
        self.control("DELETE", "/_emulator/requests")

    def clear_faults(self) -> None:
        """Drop every fault rule."""
        self.control("DELETE", "/_emulator/faults")

    def reset(self) -> None:
        """No fault rule left and an empty request log (the stored repositories and counters stay)."""
        self.clear_faults()
        self.clear_requests()

    def fault(self, **rule: Any) -> None:
        """Add one fault rule (keys as in ``faults.py``)."""
        self.control("POST", "/_emulator/faults", rule)

    def stats(self) -> dict[str, Any]:
        """The emulator's counters (they only grow: compare before and after)."""
        return self.control("GET", "/_emulator/stats")

    def files(self, repo_id: str, cache: Path, *, repo_type: str = "model", revision: str = "main") -> dict[str, bytes]:
        """Every file of a Hub revision, downloaded with the real client's ``snapshot_download``."""
        root = Path(snapshot_download(repo_id, repo_type=repo_type, revision=revision, cache_dir=str(cache),
                                      token=self.token, endpoint=self.url))
        return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

    def stop(self) -> int:
        """SIGTERM and wait; returns the exit status. Safe to call twice."""
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
