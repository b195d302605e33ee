"""What ``gitea-hf-hook audit verify`` and ``audit show`` read and print.

``verify`` walks the log once and names the first line that is not what the worker appended there: cut short,
not a record, edited (its content does not match its hash), rewritten (not laid out as the worker writes),
out of place (its number is not its line's: records before it were removed, or records reordered), off the chain
(its ``prev`` is not the sha256 of the line before), marked by the worker as following damage (``audit-gap``), or
missing or replaced at the end (against the head the worker noted in the spool). Both commands read the log as it
stood at one moment: under a brief shared lock they take its size and the head, then read that many bytes without
the lock, so a record appended meanwhile is neither half read nor waited for.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from collections.abc import Iterator
from typing import Any, NamedTuple

from ..config.model import Config
from ..errors import HookError, SpoolError
from ..redact import escape
from ..worker import audit_chain as audit


class Verified(NamedTuple):
    """What ``verify`` found: ``records`` lines verified, then ``line`` (0 when none) was the first bad one."""

    path: str
    records: int
    line: int = 0
    problem: str = ""


def _open(path: str) -> int:
    """The log for reading, never through a link; FileNotFoundError when there is none yet."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise SpoolError(f"the audit log {path} is a symbolic link", "set audit_log to the file itself") from None
        raise SpoolError(f"the audit log {path} cannot be read ({exc.strerror})",
                         "run this as the worker's user or root") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise SpoolError(f"the audit log {path} is not a regular file", "set audit_log to a file")
    return fd


def _snapshot(config: Config) -> tuple[int, int, dict[str, Any] | None]:
    """The log open for reading, its size and the worker's head, as they stood together (no session is appending
    while the shared lock is held); FileNotFoundError when there is no log yet."""
    fd = _open(config.audit_log)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        size, head = os.fstat(fd).st_size, audit.read_head(config)
        fcntl.flock(fd, fcntl.LOCK_UN)
    except BaseException:
        os.close(fd)
        raise
    return fd, size, head


def _lines(fd: int, size: int) -> Iterator[bytes]:
    """The first ``size`` bytes of the log as lines, each with its line break (the last may lack one); a line
    longer than ``MAX_LINE`` comes as its first ``MAX_LINE + 1`` bytes. Closes ``fd``."""
    with os.fdopen(fd, "rb") as f:
        while f.tell() < size and (raw := f.readline(min(audit.MAX_LINE + 1, size - f.tell()))):
            yield raw
            if not raw.endswith(b"\n"):
                while f.tell() < size and (rest := f.readline(min(audit.MAX_LINE + 1, size - f.tell()))) \
                        and not rest.endswith(b"\n"):
                    pass  # skip the rest of an overlong line


def _problem(raw: bytes, number: int, prev: str, head: dict[str, Any] | None) -> str | None:
    """What is wrong with line ``number``, given the sha256 of the line before it (or the genesis value)."""
    if not raw.endswith(b"\n"):
        if len(raw) > audit.MAX_LINE:
            return f"too long to be a record (over {audit.MAX_LINE} bytes)"
        return "cut short: the last line does not end with a line break (the log was truncated, or a write is " \
               "under way)"
    line = raw[:-1]
    record = audit.parse_line(line)
    if record is None:
        return "not an audit record (not JSON, or not a version 1 record)"
    claimed = record.pop("hash")
    if audit.sha256(audit.canonical(record)) != claimed:
        return "edited: the record's content does not match its hash"
    record["hash"] = claimed
    if audit.canonical(record) != line.decode("ascii", "replace"):
        return "rewritten: the record is not laid out as the worker writes it"
    seq = record["seq"]
    if seq > number:
        missing = seq - number
        return (f"out of place: it holds record {seq}, so {missing} record{'s' if missing > 1 else ''} before it "
                f"{'were' if missing > 1 else 'was'} removed, or records were reordered")
    if seq < number:
        return f"out of place: it holds record {seq}, so records were reordered or repeated"
    if record["prev"] != prev:
        before = "the genesis value" if number == 1 else f"the sha256 of line {number - 1}"
        return f"off the chain: its prev is not {before} (a record before it was edited, removed or reordered)"
    if record["kind"] == "audit-gap":
        return f"damage the worker found when it appended this record: {record['outcome']}"
    if head is not None and number == head["seq"] and audit.sha256(line) != head["sha256"]:
        return f"replaced: it is not the record {number} the worker appended (the log was rewritten from there)"
    return None


def verify(config: Config) -> Verified:
    """Walk the whole log; the first bad line, or how many records verified."""
    path, count, prev = config.audit_log, 0, audit.GENESIS
    try:
        fd, size, head = _snapshot(config)
    except FileNotFoundError:
        fd, size, head = -1, 0, audit.read_head(config)
    if fd >= 0:
        for raw in _lines(fd, size):
            count += 1
            problem = _problem(raw, count, prev, head)
            if problem is not None:
                return Verified(path, count - 1, count, problem)
            prev = audit.sha256(raw[:-1])
    if head is not None and count < head["seq"]:
        return Verified(path, count, count + 1, f"missing: the worker appended {head['seq']} records, and the log "
                                                "holds " + (f"{count}" if count else "none") + " (it was truncated)")
    return Verified(path, count)


def verify_lines(found: Verified) -> tuple[list[str], int]:
    """``audit verify``'s output and exit status."""
    if found.line:
        before = ("no record before it" if not found.records else "the record before it verified"
                  if found.records == 1 else f"the {found.records} records before it verified")
        return [escape(f"{found.path}:{found.line}: {found.problem} ({before})")], 1
    if not found.records:
        return [escape(f"{found.path}: no records yet")], 0
    return [escape(f"{found.path}: {found.records} record{'s' if found.records > 1 else ''} verified")], 0


def since_stamp(text: str) -> str:
    """``--since``'s DATE as the records' time, to compare as text: a date, or a date and time (UTC unless it
    names its offset)."""
    from datetime import UTC, datetime

    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise HookError(f"--since {text!r} is not a date",
                        "give a date such as 2026-11-25, or 2026-11-25T20:00:00Z (UTC unless it names an offset)") \
            from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    stamp = audit.iso(moment.timestamp())
    # 9999-12-31 with a negative offset is in year 10000, which compares as text before every record: after all.
    return stamp if stamp[4] == "-" else "9999-12-31T23:59:59.999999Z"


def records(config: Config) -> Iterator[tuple[int, dict[str, Any] | None]]:
    """Each line's number and record (None for a line that is not one); nothing when there is no log yet."""
    try:
        fd, size, _head = _snapshot(config)
    except FileNotFoundError:
        return
    for number, raw in enumerate(_lines(fd, size), 1):
        yield number, audit.parse_line(raw[:-1] if raw.endswith(b"\n") else raw)


def describe(record: dict[str, Any]) -> str:
    """One record as one readable line, escaped: most of its values are what Gitea's user wrote."""
    r = record
    parts = [f"{str(r['time'])[:19]}Z", f"#{r['seq']}", r["kind"]]
    if r["repository"]:
        parts.append(r["repository"])
    if r["ref"]:
        parts.append(r["ref"])
    if r["new"]:
        parts.append(f"{r['old'][:7] or '-'}..{r['new'][:7]}")
    if r["pusher"]:
        parts.append(f"by {r['pusher']}")
    if r["target"]:
        parts.append(f"-> {r['target']}")
    if r["job"]:
        parts.append(f"job {r['job']}")
    if r["hub_commit"]:
        parts.append(f"hub commit {r['hub_commit'][:12]}")
    by: dict[str, Any] = r["by"] if isinstance(r.get("by"), dict) else {}
    if r["source"] == "hook":
        parts.append("(the hook's word)")
    elif r["source"] == "admin":
        via = f" via sudo from {by['sudo_user']}" if by.get("sudo_user") else ""
        parts.append(f"(admin {by.get('user', '?')}{via})")
    said = [str(r["outcome"])] if r["outcome"] else []
    said += [str(reason) for reason in r.get("reasons") or []]
    line = " ".join(str(p) for p in parts) + (": " + "; ".join(said) if said else "")
    detail: dict[str, Any] = r["detail"] if isinstance(r.get("detail"), dict) else {}
    if detail:
        line += " [" + " ".join(f"{k}={v}" for k, v in detail.items()) + "]"
    return escape(line)


def show(config: Config, *, since: str | None = None, repo: str | None = None,
         as_json: bool = False) -> Iterator[tuple[str, bool]]:
    """``audit show``: ``(line, to_stderr)`` pairs, one per record that passes the filters, oldest first; a line of
    the log that is not a record is a warning on standard error, so that ``--json`` output stays JSON Lines."""
    threshold = since_stamp(since) if since else None
    wanted = repo.lower() if repo else None
    for number, record in records(config):
        if record is None:
            yield escape(f"{config.audit_log}:{number}: not an audit record (audit verify says more)"), True
            continue
        if threshold is not None and str(record["time"]) < threshold:
            continue
        if wanted is not None and record["repository"].lower() != wanted:
            continue
        # Written again, never echoed: the line on disk could hold anything, its parse only JSON values.
        yield (audit.canonical(record) if as_json else describe(record)), False
