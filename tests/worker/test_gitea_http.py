"""Whoever runs Gitea can answer the worker one byte at a time, within every read's timeout. The worker asks Gitea
while it holds a target's lock, so the whole exchange has a deadline: a status post gives up, and an LFS check
fails to be retried, instead of holding publishing for days."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from gitea_hf_hook.config.model import Config, WorkerSettings
from gitea_hf_hook.errors import PublishError
from gitea_hf_hook.worker import gitea_lfs, gitea_status

# What the test waits for a call at most before calling it hung: far past the deadline, so never reached.
HUNG = 30.0


class Dripping:
    """A server that answers every request one byte at a time, each well within a read's timeout."""

    def __init__(self, answer: bytes) -> None:
        self.answer = answer
        self.stop = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._drip, args=(conn,), daemon=True).start()

    def _drip(self, conn: socket.socket) -> None:
        with conn:
            conn.recv(1 << 16)
            for byte in self.answer:
                if self.stop.wait(0.2):  # the pace of the drip, not a synchronisation
                    return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    return

    def close(self) -> None:
        self.stop.set()
        self.listener.close()


@pytest.fixture(params=["headers", "body"])
def gitea(request: pytest.FixtureRequest) -> Iterator[Dripping]:
    head = b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n"
    answer = head + b"X-Padding: " + b"x" * 5000 + b"\r\n\r\n" if request.param == "headers" else (
        head + b"\r\n" + b" " * 100_000)
    server = Dripping(answer)
    yield server
    server.close()


def config(port: int) -> Config:
    return Config(path="/etc/gitea-hf-hook/config.yaml", repo_root="/srv/repos", gitea_url=f"http://127.0.0.1:{port}",
                  worker=WorkerSettings(timeout_seconds=1.0))


def within(call: object) -> BaseException | None:
    """Run ``call`` in a thread; what it raised, or None. Fails the test if it is still blocked after HUNG."""
    raised: list[BaseException | None] = [None]

    def run() -> None:
        try:
            call()  # type: ignore[operator]
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            raised[0] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(HUNG)
    assert not thread.is_alive(), "the call was still blocked on a dripping server"
    return raised[0]


def test_a_status_post_to_a_dripping_gitea_gives_up_at_its_deadline(gitea: Dripping):
    settings = config(gitea.port)
    outcome: list[str | None] = []
    raised = within(lambda: outcome.append(gitea_status._send(settings, "acme/bert", "a" * 40, "secret", b"{}")))
    if raised is None:  # a 201 whose body dripped: the body is never read, so the post is done
        assert outcome == [None]
    else:
        assert isinstance(raised, gitea_status._Unanswered)
        assert str(raised) == f"cannot reach Gitea at http://127.0.0.1:{gitea.port} (gitea.url): no answer within 1 s"


def test_an_lfs_check_against_a_dripping_gitea_fails_to_be_retried(gitea: Dripping):
    settings = config(gitea.port)
    raised = within(lambda: gitea_lfs._post(settings, "acme/bert", f"http://127.0.0.1:{gitea.port}/x", "secret",
                                            [("a" * 64, 1)]))
    assert isinstance(raised, PublishError)
    assert raised.retryable
    assert str(raised).startswith(f"Gitea at http://127.0.0.1:{gitea.port} (gitea.url) did not answer within 1 s "
                                  "(worker.timeout_seconds) while checking the LFS objects of acme/bert")
