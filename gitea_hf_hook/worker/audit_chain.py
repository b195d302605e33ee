"""The audit log's file: one canonical JSON record per line, each chained to the line before it, appended under a
lock. :mod:`.audit` says what is recorded and when; this module how.

A record is canonical JSON (sorted keys, no spaces, ASCII only, so a control or bidi character in a value is a
``\\u`` escape and the line is inert on any terminal or in syslog) with:
``v`` (1), ``seq`` (its line number), ``time`` (the appender's clock, UTC), ``kind``, ``source``, ``repository``,
``ref``, ``old``, ``new``, ``pusher``, ``pusher_id``, ``trigger``, ``target`` (the Hub target's label), ``job``,
``hub_commit``, ``outcome``, ``reasons``, ``detail`` (small extras by name), ``by`` (the appending process: user,
uid, host, pid, and ``sudo_user`` for an admin), ``reported`` and ``drop`` (for hook records: the hook's clock, and
the drop file's name, owner, size and sha256), then ``prev``, the sha256 of the previous line's bytes (64 zeros for
the first), and ``hash``, the sha256 of the record's canonical JSON without ``hash``. Every string is redacted
(:func:`..redact.redact`) and bounded, so no token and no unbounded value reaches the log.

Concurrency: a session takes an exclusive ``flock`` on the log file itself, reads the last line's hash under the
lock, writes with ``O_APPEND`` and fsyncs, so several workers and admin commands never interleave or lose records.
At its end the worker notes the last record's number and hash in ``state/audit-head-<key>.json`` (a folder only
the worker's user writes): when the log later ends before that record, or holds another one there, or its last line
is cut short or is not a record, the next session first chains an ``audit-gap`` record saying so, and
``audit verify`` names the line.

Export: with ``audit_syslog`` set, each line a session appended is also sent to syslog (ident
``gitea-hf-hook-audit``, that facility, priority info), once the lock is released.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import logging
import os
import socket
import stat
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple

from ..config.model import Config
from ..errors import SpoolError
from ..redact import redact
from ..spool import audit_drop, layout

VERSION = 1
GENESIS = "0" * 64
MAX_LINE = 1 << 20  # bytes of one line; a record is far smaller (a few KiB at most)
NAME_LIMIT = 256  # characters of a name or id
TEXT_LIMIT = 1000  # characters of an outcome or one reason
MAX_REASONS = audit_drop.MAX_REASONS + 1
MAX_DETAIL = 16
IDENT = "gitea-hf-hook-audit"
_NAMES = ("repository", "ref", "old", "new", "pusher", "pusher_id", "trigger", "target", "job", "hub_commit")
_CUT = "..."


class Record(NamedTuple):
    """What one audit record says, before the log numbers, stamps and chains it."""

    kind: str
    repository: str = ""
    ref: str = ""
    old: str = ""
    new: str = ""
    pusher: str = ""
    pusher_id: str = ""
    trigger: str = ""
    target: str = ""
    job: str = ""
    hub_commit: str = ""
    outcome: str = ""
    reasons: tuple[str, ...] = ()
    detail: tuple[tuple[str, str], ...] = ()
    source: str = "worker"  # worker | admin | hook
    reported: float | None = None  # the hook's clock, for a hook record
    drop: tuple[tuple[str, str | int], ...] = ()


# --- one line -----------------------------------------------------------------------------------------------------

def canonical(data: dict[str, Any]) -> str:
    """The one way a record is written: sorted keys, no spaces, ASCII only."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def sha256(text: str | bytes) -> str:
    return hashlib.sha256(text.encode() if isinstance(text, str) else text).hexdigest()


def iso(stamp: float) -> str:
    """``2026-11-25T20:52:26.123456Z``: the records' time, which sorts as text."""
    micro = min(int(stamp % 1 * 1_000_000), 999_999)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(stamp)) + f".{micro:06d}Z"


def bounded(text: str, limit: int = NAME_LIMIT) -> str:
    """``text`` as a record keeps it: valid Unicode (a byte that was not UTF-8 reads ``\\udcff``), no token, at most
    ``limit`` characters."""
    text = text[:limit * 16].encode("utf-8", "backslashreplace").decode("utf-8")
    text = redact(text)  # before cutting: a token cut in two would no longer look like one
    return text if len(text) <= limit else text[:limit - len(_CUT)] + _CUT


_by_user: dict[int, str] = {}


def _by(source: str) -> dict[str, Any]:
    uid = os.geteuid()
    if uid not in _by_user:
        import pwd

        try:
            _by_user[uid] = pwd.getpwuid(uid).pw_name
        except KeyError:
            _by_user[uid] = str(uid)
    by: dict[str, Any] = {"user": _by_user[uid], "uid": uid, "host": socket.gethostname(), "pid": os.getpid()}
    if source == "admin" and os.environ.get("SUDO_USER"):
        by["sudo_user"] = bounded(os.environ["SUDO_USER"])
    return by


def entry(record: Record, seq: int, prev: str, now: float) -> dict[str, Any]:
    """The record as the log holds it, ``hash`` included."""
    data: dict[str, Any] = {"v": VERSION, "seq": seq, "time": iso(now), "kind": bounded(record.kind),
                            "source": bounded(record.source), "outcome": bounded(record.outcome, TEXT_LIMIT),
                            "reasons": [bounded(r, TEXT_LIMIT) for r in record.reasons[:MAX_REASONS]],
                            "detail": {bounded(k, 40): bounded(v) for k, v in record.detail[:MAX_DETAIL]},
                            "by": _by(record.source), "prev": prev,
                            "reported": "" if record.reported is None else iso(record.reported),
                            "drop": {k: bounded(v) if isinstance(v, str) else v for k, v in record.drop} or None}
    data.update({name: bounded(getattr(record, name)) for name in _NAMES})
    data["hash"] = sha256(canonical(data))
    return data


def parse_line(line: bytes) -> dict[str, Any] | None:
    """The record a line holds, or None when it is not one (not JSON, another version, fields missing)."""
    try:
        data = json.loads(line)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(data, dict) or data.get("v") != VERSION:
        return None
    seq, prev, digest = data.get("seq"), data.get("prev"), data.get("hash")
    if not isinstance(seq, int) or isinstance(seq, bool) or not isinstance(prev, str) or not isinstance(digest, str):
        return None
    if not all(isinstance(data.get(k), str) for k in ("time", "kind", "source", "outcome", *_NAMES)):
        return None
    return data


# --- the log, locked ----------------------------------------------------------------------------------------------

def _refuse(path: str, problem: str, hint: str) -> SpoolError:
    return SpoolError(f"the audit log {path} {problem}", hint)


def open_log(config: Config) -> tuple[int, bool]:
    """The log opened for appending, created when missing; whether it was created. Refuses a link, anything but a
    regular file, and a file anyone but the worker's user (the spool's owner) and root could write."""
    path, me = config.audit_log, os.geteuid()
    flags = os.O_RDWR | os.O_APPEND | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    created = False
    try:
        try:
            fd = os.open(path, flags)
        except FileNotFoundError:
            try:
                fd, created = os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o600), True
            except FileExistsError:  # another session created it since: append to that one
                fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _refuse(path, "is a symbolic link",
                          f"set audit_log to the file itself, {os.path.realpath(path)}") from None
        if exc.errno in (errno.EACCES, errno.EPERM):
            try:
                owner = os.stat(config.spool)
                hint = f"install -o {owner.st_uid} -g {owner.st_gid} -m 0600 /dev/null {path}, as root"
            except OSError:
                hint = "create it for the worker's user, mode 0600, as root"
            what = "cannot be created" if not os.path.exists(path) else "cannot be written"
            raise _refuse(path, f"{what} by uid {me} ({exc.strerror})",
                          f"{hint} (gitea-hf-hook install does), and run this as the worker's user or root") from None
        raise _refuse(path, f"cannot be opened ({exc.strerror})", "fix audit_log in the config") from None
    try:
        info = os.fstat(fd)
        try:
            spool = os.stat(config.spool)
            owners = {0, me, spool.st_uid}
        except OSError:
            spool, owners = None, {0, me}
        if created and me == 0 and spool is not None:
            os.fchown(fd, spool.st_uid, spool.st_gid)  # root never leaves a log the worker cannot append to
        elif not stat.S_ISREG(info.st_mode):
            raise _refuse(path, "is not a regular file", "remove it, or set audit_log to a file")
        elif info.st_uid not in owners or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise _refuse(path, f"could be changed by others than the worker's user (owner uid {info.st_uid}, "
                          f"mode {stat.S_IMODE(info.st_mode):o})", f"chown it to the worker's user; chmod 600 {path}")
    except BaseException:
        os.close(fd)
        raise
    return fd, created


class _Tail(NamedTuple):
    seq: int  # the last line's number
    sha256: str  # of its bytes
    damage: str = ""  # why the last line is not a record the worker wrote


def _tail(fd: int) -> _Tail:
    """The last line of the log: read backwards from the end, so an append costs the same however long the log."""
    size = os.fstat(fd).st_size
    if size == 0:
        return _Tail(0, GENESIS)
    end = size - 1 if os.pread(fd, 1, size - 1) == b"\n" else size
    data, start = b"", end
    while start > 0 and b"\n" not in data and len(data) <= MAX_LINE:
        step = min(65536, start)
        start -= step
        data = os.pread(fd, step, start) + data
    last = data[data.rfind(b"\n") + 1:] if b"\n" in data else data
    record = parse_line(last) if end < size and len(last) <= MAX_LINE else None
    if record is not None and canonical(record) == last.decode("ascii", "replace"):
        return _Tail(record["seq"], sha256(last))
    lines = _count_lines(fd) + (end == size)
    damage = f"line {lines} was cut short" if end == size else f"line {lines} is not a record the worker wrote"
    return _Tail(lines, sha256(last), damage)


def _count_lines(fd: int) -> int:
    count, offset = 0, 0
    while chunk := os.pread(fd, 1 << 20, offset):
        count += chunk.count(b"\n")
        offset += len(chunk)
    return count


def head_path(config: Config) -> str:
    """Where the worker notes the log's last record: ``state/audit-head-<sha256 of the log's path>.json``."""
    key = sha256(os.path.abspath(config.audit_log))[:16]
    return os.path.join(config.spool, "state", f"audit-head-{key}.json")


def read_head(config: Config) -> dict[str, Any] | None:
    """The log's head as the worker last noted it (``seq``, ``sha256``, ``config``), or None."""
    path = head_path(config)
    try:
        data = json.loads(layout.read_entry(os.path.dirname(path), os.path.basename(path)))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    if not (isinstance(data, dict) and data.get("log") == os.path.abspath(config.audit_log)
            and isinstance(data.get("seq"), int) and isinstance(data.get("sha256"), str)):
        return None
    return data


class Session:
    """The log, open and locked: appends go through :meth:`add`."""

    def __init__(self, config: Config, fd: int, tail: _Tail, head: dict[str, Any] | None) -> None:
        self.config, self.fd = config, fd
        self.seq, self.last = tail.seq, tail.sha256
        self.config_digest: str = head.get("config", "") if head else ""
        self.lines: list[str] = []

    def add(self, record: Record, now: float | None = None) -> int:
        """Append ``record`` as the next line; returns its number. Durable after :meth:`sync`."""
        line = canonical(entry(record, self.seq + 1, self.last, time.time() if now is None else now))
        data = (line + "\n").encode("ascii")
        while data:
            data = data[os.write(self.fd, data):]
        self.seq, self.last = self.seq + 1, sha256(line)
        self.lines.append(line)
        return self.seq

    def sync(self) -> None:
        os.fsync(self.fd)


@contextmanager
def locked(config: Config) -> Iterator[Session]:
    """The log, exclusively locked for one session of appends; fsynced, its head noted, and its new lines sent to
    syslog when the session ends."""
    for _ in range(5):
        fd, _created = open_log(config)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            now = os.stat(config.audit_log, follow_symlinks=False)
        except FileNotFoundError:
            now = None
        info = os.fstat(fd)
        if now is not None and (now.st_ino, now.st_dev) == (info.st_ino, info.st_dev):
            break
        os.close(fd)  # moved away while we waited for the lock: append to the file at the path now
    else:
        raise _refuse(config.audit_log, "keeps being replaced while the worker appends to it",
                      "stop whatever moves it, then try again")
    session: Session | None = None
    head: dict[str, Any] | None = None
    try:
        tail, head = _tail(fd), read_head(config)
        session = Session(config, fd, tail, head)
        gaps = [tail.damage] if tail.damage else []
        if tail.damage.endswith("cut short"):
            os.write(fd, b"\n")  # end the torn line, so the next record starts a line of its own
        if head is not None and (tail.seq < head["seq"] or (tail.seq == head["seq"] and tail.sha256 != head["sha256"])):
            gaps.append(f"the log held {tail.seq} records where the worker had appended {head['seq']}: "
                        "records were removed or replaced")
        for gap in gaps:
            session.add(Record("audit-gap", outcome=gap))
        yield session
    finally:
        try:
            if session is not None and (session.lines or head is None or session.config_digest != head.get("config")):
                session.sync()
                _note_head(config, session)
        finally:
            os.close(fd)  # releases the lock
        if session is not None:
            _export(config, session.lines)


def _note_head(config: Config, session: Session) -> None:
    path = head_path(config)
    data = json.dumps({"log": os.path.abspath(config.audit_log), "seq": session.seq, "sha256": session.last,
                       "config": session.config_digest}).encode()
    try:
        try:
            layout.write_private(os.path.dirname(path), os.path.basename(path), data)
        except FileNotFoundError:
            layout.ensure_layout(config.spool)
            layout.write_private(os.path.dirname(path), os.path.basename(path), data)
    except (OSError, SpoolError) as exc:
        # The records are in the log already; only the cross-check against a later truncation is weaker.
        from .logs import say

        say(f"audit log: its head {path} is not noted ({exc}); audit verify cannot tell whether records after "
            f"line {session.seq} are removed later", logging.WARNING)


def _export(config: Config, lines: Sequence[str]) -> None:
    if not config.audit_syslog or not lines:
        return
    import syslog

    syslog.openlog(IDENT, syslog.LOG_PID, getattr(syslog, f"LOG_{config.audit_syslog.upper()}"))
    for line in lines:
        syslog.syslog(syslog.LOG_INFO, line)
