"""Test instrumentation driven over HTTP: injected faults, the request log and counters.

A fault rule (``POST /_emulator/faults``, a JSON object or a list of them)::

    {"method": "POST",                # optional; any method when absent
     "path": "/preupload/",           # regular expression searched in the raw request path (query included)
     "status": 503,                   # answer this status instead of handling the request
     "retry_after": 2,                # optional Retry-After header (seconds)
     "error_code": "RepoNotFound",    # optional X-Error-Code header
     "headers": {"RateLimit": "..."}, # optional extra headers
     "delay": 1.5,                    # optional sleep before answering (alone: then handle normally)
     "drop": false,                   # close the connection without any answer
     "drop_after": false,             # handle the request normally, then close the connection without answering
     "times": 1}                      # matching requests it applies to; -1 = every one

``drop`` loses the request: nothing happens and the client sees the connection close. ``drop_after`` loses
only the answer: the request takes effect (a commit is really made, a file really stored), then the client sees
the connection close, exactly as when a network fails between the Hub and the client; it cannot go with
``status`` or ``drop``, and runs after ``delay``. The request log records both with status ``null``.

Rules are tried in the order they were added; a request meets at most one.
"""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from .errors import bad_request


@dataclass
class Fault:
    """One injected fault rule (see the module docstring for the JSON form)."""

    path: re.Pattern[str]
    method: str | None = None
    status: int | None = None
    retry_after: int | None = None
    error_code: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    drop: bool = False
    drop_after: bool = False
    times: int = 1

    @classmethod
    def from_json(cls, data: Any) -> Fault:
        """Validate and build a rule; a 400 names what is wrong."""
        if not isinstance(data, dict) or not isinstance(data.get("path", ".*"), str):
            raise bad_request("a fault is a JSON object with a string 'path' regex")
        unknown = set(data) - {"method", "path", "status", "retry_after", "error_code", "headers", "delay",
                               "drop", "drop_after", "times"}
        if unknown:
            raise bad_request(f"unknown fault keys: {sorted(unknown)}")
        try:
            fault = cls(
                path=re.compile(data.get("path", ".*")),
                method=data["method"].upper() if data.get("method") else None,
                status=int(data["status"]) if data.get("status") is not None else None,
                retry_after=int(data["retry_after"]) if data.get("retry_after") is not None else None,
                error_code=data.get("error_code"),
                headers={str(k): str(v) for k, v in (data.get("headers") or {}).items()},
                delay=float(data.get("delay") or 0.0),
                drop=bool(data.get("drop", False)),
                drop_after=bool(data.get("drop_after", False)),
                times=int(data.get("times", 1)),
            )
        except (re.error, ValueError, TypeError, AttributeError) as exc:
            raise bad_request(f"invalid fault: {exc}") from exc
        if fault.status is None and not fault.drop and not fault.drop_after and not fault.delay:
            raise bad_request("a fault needs at least one of 'status', 'drop', 'drop_after' or 'delay'")
        if fault.drop_after and (fault.status is not None or fault.drop):
            raise bad_request("fault 'drop_after' handles the request, so it cannot go with 'status' or 'drop'")
        if fault.status is not None and not 100 <= fault.status <= 599:
            raise bad_request("fault 'status' must be an HTTP status")
        if fault.times == 0 or fault.times < -1:
            raise bad_request("fault 'times' must be positive, or -1 for always")
        return fault

    def to_json(self) -> dict[str, Any]:
        """JSON form, for ``GET /_emulator/faults``."""
        return {"method": self.method, "path": self.path.pattern, "status": self.status,
                "retry_after": self.retry_after, "error_code": self.error_code, "headers": self.headers,
                "delay": self.delay, "drop": self.drop, "drop_after": self.drop_after, "times": self.times}


class FaultInjector:
    """The active fault rules; :meth:`take` consumes one use of the first rule a request matches."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(self, faults: list[Fault]) -> None:
        """Append rules."""
        with self._lock:
            self._faults.extend(faults)

    def clear(self) -> None:
        """Remove every rule."""
        with self._lock:
            self._faults.clear()

    def list(self) -> list[dict[str, Any]]:
        """The remaining rules."""
        with self._lock:
            return [f.to_json() for f in self._faults]

    def take(self, method: str, raw_path: str) -> Fault | None:
        """The first rule matching this request, with one use consumed (rules used up are dropped)."""
        with self._lock:
            for fault in self._faults:
                if (fault.method is None or fault.method == method) and fault.path.search(raw_path):
                    if fault.times > 0:
                        fault.times -= 1
                        if fault.times == 0:
                            self._faults.remove(fault)
                    return fault
        return None


class RequestLog:
    """The last requests served (method, path, status, time): no bodies, no headers, paths redacted."""

    def __init__(self, limit: int = 100_000) -> None:
        self._lock = threading.Lock()
        self._entries: deque[dict[str, Any]] = deque(maxlen=limit)

    def add(self, method: str, path: str, status: int | None, fault: bool) -> None:
        """Record one request; ``status`` None means the connection was dropped on purpose."""
        entry: dict[str, Any] = {"method": method, "path": path, "status": status, "time": time.time()}
        if fault:
            entry["fault"] = True
        with self._lock:
            self._entries.append(entry)

    def entries(self) -> list[dict[str, Any]]:
        """Every recorded request, oldest first."""
        with self._lock:
            return list(self._entries)

    def clear(self) -> None:
        """Forget every recorded request."""
        with self._lock:
            self._entries.clear()


class Stats:
    """Counters since start: commits created per repository, LFS traffic, requests."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.commits: dict[str, int] = {}
        self.lfs_bytes_received = 0
        self.lfs_objects_stored = 0
        self.lfs_uploads_refused = 0
        self.requests = 0
        self.faults_injected = 0

    def bump(self, name: str, amount: int = 1, repo: str | None = None) -> None:
        """Add ``amount`` to a counter; with ``repo``, to that repository's entry of ``commits``."""
        with self._lock:
            if repo is not None:
                self.commits[repo] = self.commits.get(repo, 0) + amount
            else:
                setattr(self, name, getattr(self, name) + amount)

    def to_json(self) -> dict[str, Any]:
        """Snapshot of every counter."""
        with self._lock:
            return {"commits": dict(self.commits), "lfs_bytes_received": self.lfs_bytes_received,
                    "lfs_objects_stored": self.lfs_objects_stored,
                    "lfs_uploads_refused": self.lfs_uploads_refused, "requests": self.requests,
                    "faults_injected": self.faults_injected}
