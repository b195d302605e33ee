"""The worker as a long-running process: passes of :func:`.loop.loop` until SIGTERM, in one or several processes.

SIGTERM and SIGINT let the current publish finish (it is bounded by ``worker.timeout_seconds``), then the worker
exits 0. Logs go to standard error, one line per event, with anything token-shaped redacted.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Callable

from ..config.model import Config
from .logs import log, say
from .loop import IDLE_POLL, Publisher, loop


class _Stop:
    """Set by SIGTERM/SIGINT. A self-pipe wakes an idle wait; a handler must not take locks (threading.Event does)."""

    def __init__(self) -> None:
        self.flag = False
        self.read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.write_fd, False)

    def __call__(self) -> bool:
        return self.flag

    def signal(self, signum: int, frame: object) -> None:
        self.flag = True
        try:
            os.write(self.write_fd, b"x")
        except OSError:
            pass

    def wait(self, seconds: float) -> None:
        if not self.flag:
            select.select([self.read_fd], [], [], seconds)

    def close(self) -> None:
        os.close(self.read_fd)
        os.close(self.write_fd)


def _setup_logging() -> None:
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        formatter = logging.Formatter("%(asctime)s gitea-hf-hook worker[%(process)d]: %(message)s",
                                      "%Y-%m-%dT%H:%M:%SZ")
        formatter.converter = time.gmtime
        handler.setFormatter(formatter)
        log.addHandler(handler)
        log.setLevel(logging.INFO)


def run(config: Config, *, once: bool, workers: int = 1, publish: Publisher | None = None,
        clock: Callable[[], float] = time.time, sleep: Callable[[float], None] | None = None) -> int:
    """Drain the spool; returns the exit status.

    ``once``: publish every job that is due, then return. Otherwise run until SIGTERM or SIGINT, which let the
    current job finish (its publish is bounded by worker.timeout_seconds) and then return 0. ``workers`` > 1
    starts that many processes, each running this loop; the claims keep them apart.
    """
    _setup_logging()
    if workers > 1:
        return _run_many(config, once, workers, publish)
    stop = _Stop()
    in_main = threading.current_thread() is threading.main_thread()  # only the main thread may set handlers
    previous = {s: signal.signal(s, stop.signal) for s in (signal.SIGTERM, signal.SIGINT)} if in_main else {}
    pause = sleep or stop.wait
    say(f"worker started (pid {os.getpid()}, spool {config.spool}{', once' if once else ''})")
    try:
        while not stop():
            result = loop(config, clock(), publish, stop=stop)
            if result.worked:
                continue
            if once:
                break
            wait = IDLE_POLL if result.next_due is None else min(IDLE_POLL, max(0.0, result.next_due - clock()))
            pause(wait)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        stop.close()
    say("worker stopped")
    return 0


def _child(config: Config, once: bool, publish: Publisher | None) -> None:
    sys.exit(run(config, once=once, publish=publish))


def _run_many(config: Config, once: bool, workers: int, publish: Publisher | None) -> int:
    import multiprocessing

    # spawn, not fork: a forked child would share the parent's descriptors, and with them any lock.
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_child, args=(config, once, publish), name=f"worker-{i + 1}")
                 for i in range(workers)]

    def forward(signum: int, frame: object) -> None:
        for process in processes:
            if process.pid is not None and process.exitcode is None:
                os.kill(process.pid, signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        for process in processes:
            process.start()
        for process in processes:
            process.join()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 0 if all(p.exitcode == 0 for p in processes) else 1
