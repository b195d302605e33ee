"""The worker as a long-running process: passes of :func:`.loop.loop` until SIGTERM, in one or several processes.

SIGTERM and SIGINT let the current publish finish (it is bounded by ``worker.timeout_seconds``), then the worker
exits 0. Logs go to standard error, one line per event, with anything token-shaped redacted.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import threading
import time
from collections.abc import Callable

from ..config.model import Config
from .logs import say, setup
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
    # Text or JSON lines, as the worker command's --log-format says through the environment, which the processes
    # of --workers inherit (see .logs).
    setup()


class _LiveConfig:
    """The config of a running worker: read again before a pass when its file changed (by ``stat``). One that does
    not load, or that the start's checks refuse, leaves the last valid config in use; each pass then tries again
    and logs why it failed."""

    def __init__(self, config: Config, config_file: str | None) -> None:
        self.config, self.config_file = config, config_file
        self.seen: tuple[int, ...] | None = None  # the file as last read; None reads it again at the first pass
        self.error = ""

    def current(self) -> Config:
        if self.config_file is None:
            return self.config
        try:
            st = os.stat(self.config_file)
            seen: tuple[int, ...] = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        except OSError as exc:
            seen = (-1, exc.errno or 0)
        # Again while it fails too: the start's checks may refuse it for a file the config names, fixed elsewhere.
        if seen != self.seen or self.error:
            self.seen = seen
            self._reload(self.config_file)
        if self.error:
            import logging

            say(f"keeping the last valid config: {self.error}", logging.ERROR)
        return self.config

    def _reload(self, config_file: str) -> None:
        from ..config.load import load
        from ..errors import HookError
        from . import preflight

        try:
            fresh = load(config_file, cached=False)  # never the hook user's cache
            # What the new config names (token files, the spool) passes the checks the start made; the start
            # decided already whether root may run it.
            preflight.check(fresh, allow_root=True)
        except HookError as exc:
            self.error = str(exc)
            return
        except Exception as exc:  # noqa: BLE001 - whatever fails to load, the running worker keeps its config
            self.error = f"{config_file}: {type(exc).__name__} while reading it: {exc}"
            return
        if fresh != self.config:
            say(f"config reloaded from {config_file}")
        self.config, self.error = fresh, ""


def run(config: Config, *, once: bool, workers: int = 1, publish: Publisher | None = None,
        clock: Callable[[], float] = time.time, sleep: Callable[[float], None] | None = None,
        config_file: str | None = None) -> int:
    """Drain the spool; returns the exit status.

    ``once``: publish every job that is due, then return. Otherwise run until SIGTERM or SIGINT, which let the
    current job finish (its publish is bounded by worker.timeout_seconds) and then return 0. ``workers`` > 1
    starts that many processes, each running this loop; the claims keep them apart. With ``config_file``, each
    pass starts by reading that file again if it changed; while it does not load, ``config`` (or the last valid
    config read since) stays in use, and each pass logs the error.
    """
    _setup_logging()
    if workers > 1:
        return _run_many(config, once, workers, publish, config_file)
    stop = _Stop()
    in_main = threading.current_thread() is threading.main_thread()  # only the main thread may set handlers
    previous = {s: signal.signal(s, stop.signal) for s in (signal.SIGTERM, signal.SIGINT)} if in_main else {}
    pause = sleep or stop.wait
    say(f"worker started (pid {os.getpid()}, spool {config.spool}{', once' if once else ''})")
    live = _LiveConfig(config, config_file)
    try:
        while not stop():
            result = loop(live.current(), clock(), publish, stop=stop)
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


def _child(config: Config, once: bool, publish: Publisher | None, config_file: str | None) -> None:
    sys.exit(run(config, once=once, publish=publish, config_file=config_file))


def _run_many(config: Config, once: bool, workers: int, publish: Publisher | None, config_file: str | None) -> int:
    import multiprocessing

    # spawn, not fork: a forked child would share the parent's descriptors, and with them any lock.
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_child, args=(config, once, publish, config_file), name=f"worker-{i + 1}")
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
