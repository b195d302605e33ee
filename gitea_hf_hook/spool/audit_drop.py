"""Audit drops: what the hooks report for the audit trail, left in ``spool/audit/`` for the worker to chain.

The hooks run as Gitea's user, who can forge anything it writes, so they never touch ``audit_log``. Each hook
run that decided something writes one drop file instead: the records of that run (a push accepted, rejected or
would-reject, with the reasons; a job queued). The worker's user alone reads the drops, records each in the chained
log as "reported by the hook" (Gitea's word, countersigned by the worker when it ingests it), and removes it
(:func:`..worker.audit.ingest_drops`). Gitea's user can forge, withhold or delete a drop before then, never change
a record once it is chained.

Format (version 1), written without ``json``: post-receive imports this module, and must not pay for it::

    b"gitea-hf-hook audit drop 1\\n" then, for every field, KEY "=" VALUE b"\\0"

Each record starts with its ``kind`` field; ``reason`` may repeat, no other key may. NUL cannot occur in what a
field holds (environment values, ref names, git paths), and is escaped if it ever does. Text is UTF-8, bytes that
are not UTF-8 carried through as surrogate escapes. Every value is cut at ``VALUE_LIMIT`` characters and a record
keeps ``MAX_REASONS`` reasons, so a record stays well under ``MAX_DROP`` bytes, the most a drop file may hold.

A drop is written to ``spool/tmp/``, fsynced, renamed into ``spool/audit/`` and the folder fsynced: the worker never
sees half a drop. Its name, ``<nanoseconds>-<pid>-<random>.drop``, orders drops by the hook's clock.

The worker's side (:func:`read`) trusts nothing here: it opens an entry without following links, reads only
regular files up to ``MAX_DROP`` bytes, checks every field, and describes an entry it refuses or a drop it cannot
parse (:class:`Drop` ``status``) so that the worker records that, rather than losing it.
"""

from __future__ import annotations

import os
import time

from . import layout

# typing costs a push 2 ms to import; annotations are strings here, so only type checkers need it.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from ..gitea.environment import Push
    from ..gitea.hook_input import Update

    Fields = list[tuple[str, str]]

FOLDER = "audit"
MAGIC = b"gitea-hf-hook audit drop 1\n"
MAX_DROP = 256 * 1024  # bytes of one drop file; the writer starts another before a drop would grow past it
VALUE_LIMIT = 1000  # characters of one field
MAX_REASONS = 20  # reasons kept per record, then one "... and N more"
OUTCOMES = ("accepted", "rejected", "would-reject")
KINDS = ("push-accepted", "push-rejected", "push-would-reject", "job-queued")
# The fields a record may hold; reason alone may repeat. What Gitea told the hook about the push, and the decision.
FIELDS = ("kind", "time", "repository", "repo_id", "ref", "old", "new", "pusher", "pusher_id", "deploy_key_id",
          "trigger", "pr_id", "target", "job", "reason")
_CUT = "..."


def _cut(text: str) -> str:
    text = text.replace("\0", "\\x00")
    return text if len(text) <= VALUE_LIMIT else text[:VALUE_LIMIT - len(_CUT)] + _CUT


def _encode(fields: Fields) -> bytes:
    parts = []
    for key, value in fields:
        try:
            raw = _cut(value).encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:  # a surrogate no undecodable byte made
            raw = _cut(value).encode("utf-8", "backslashreplace")
        parts.append(key.encode("ascii") + b"=" + raw + b"\0")
    return b"".join(parts)


def _write(spool: str, records: Iterable[Fields]) -> list[str]:
    """Write ``records`` as few drop files as fit ``MAX_DROP``; returns their names. Raises OSError."""
    names: list[str] = []
    chunk: list[bytes] = []
    size = len(MAGIC)

    def flush() -> None:
        name = f"{time.time_ns():020d}-{os.getpid()}-{os.urandom(4).hex()}.drop"
        layout.write_atomic(os.path.join(spool, FOLDER), name, MAGIC + b"".join(chunk), spool)
        names.append(name)

    for record in records:
        data = _encode(record)
        if chunk and size + len(data) > MAX_DROP:
            flush()
            chunk, size = [], len(MAGIC)
        chunk.append(data)
        size += len(data)
    if chunk:
        flush()
    return names


def _reasons(reasons: Sequence[str]) -> Fields:
    kept = [("reason", str(r)) for r in reasons[:MAX_REASONS]]
    if len(reasons) > MAX_REASONS:
        kept.append(("reason", f"... and {len(reasons) - MAX_REASONS} more"))
    return kept


# --- the hooks' side ----------------------------------------------------------------------------------------------

def decision(update: Update, outcome: str, target: str = "", reasons: Sequence[str] = (), job: str = "") -> Fields:
    """One publishing ref's decision, for :func:`push_decided`.

    ``outcome`` is ``accepted``, ``rejected`` (the push is refused: this ref's problems, another ref's, or the
    queue's) or ``would-reject`` (problems, but ``enforce`` is off); ``target`` the Hub target's label
    (``Target.label``); ``reasons`` the lines the pusher read (``str(problem)``); ``job`` the id of the job
    prepared for an accepted ref.
    """
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome must be one of {', '.join(OUTCOMES)}")
    fields = [("kind", f"push-{outcome}"), ("ref", update.ref), ("old", update.old), ("new", update.new),
              ("target", target)]
    if job:
        fields.append(("job", job))
    return fields + _reasons(reasons)


def push_decided(spool: str, push: Push, decisions: Sequence[Fields], now: float | None = None) -> list[str]:
    """pre-receive's report: one record per publishing ref it decided (built by :func:`decision`), with what Gitea
    said of the push. Returns the drop files written (none for no decision).

    Raises OSError when the drop cannot be written; the hook logs that and goes on, since an audit drop never
    decides a push (the worker's own records of what it publishes do not depend on it).
    """
    stamp = repr(time.time() if now is None else now)
    about = [("time", stamp), ("repository", push.full_name), ("repo_id", push.repo_id), ("pusher", push.pusher),
             ("pusher_id", push.pusher_id), ("deploy_key_id", push.deploy_key_id), ("trigger", push.trigger),
             ("pr_id", push.pr_id)]
    return _write(spool, ([d[0], *about, *d[1:]] for d in decisions))


def jobs_queued(spool: str, environ: Mapping[str, str], repo_dir: str, queued: Sequence[tuple[Update, str]],
                now: float | None = None) -> list[str]:
    """post-receive's report: one ``job-queued`` record per job it moved into ``queue/``, as ``(update, job id)``.

    Who pushed comes from the variables Gitea gives the hook, read here as :func:`..gitea.environment.read_push`
    reads them, without its imports. Raises OSError as :func:`push_decided` does.
    """
    owner = environ.get("GITEA_REPO_USER_NAME", "").strip().lower()
    name = environ.get("GITEA_REPO_NAME", "").strip().lower()
    if not (owner and name):
        path = os.path.abspath(repo_dir).rstrip(os.sep)
        owner, name = os.path.basename(os.path.dirname(path)).lower(), os.path.basename(path).lower()
        name = name.removesuffix(".git")
    deploy_key = environ.get("GITEA_DEPLOY_KEY_ID", "").strip()
    about = [("time", repr(time.time() if now is None else now)), ("repository", f"{owner}/{name}"),
             ("repo_id", environ.get("GITEA_REPO_ID", "")), ("pusher", environ.get("GITEA_PUSHER_NAME", "").strip()),
             ("pusher_id", environ.get("GITEA_PUSHER_ID", "").strip()),
             ("deploy_key_id", "" if deploy_key == "0" else deploy_key),
             ("trigger", environ.get("GITEA_PUSH_TRIGGER", "").strip()), ("pr_id", environ.get("GITEA_PR_ID", ""))]
    return _write(spool, ([("kind", "job-queued"), *about, ("ref", update.ref), ("old", update.old),
                           ("new", update.new), ("job", job)] for update, job in queued))


# --- the worker's side --------------------------------------------------------------------------------------------

class Reported:
    """One record of a drop, as the hook reported it: single fields by name, and the reasons in order."""

    __slots__ = ("fields", "reasons")

    def __init__(self, fields: dict[str, str], reasons: list[str]) -> None:
        self.fields = fields
        self.reasons = reasons


class Drop:
    """One entry of ``spool/audit/`` as the worker found it.

    ``status`` is ``ok`` (``records`` hold what it reports), ``refused`` (not a regular file, unreadable or too
    large: never read) or ``malformed`` (read, but not a drop this version writes); ``problem`` says why.
    ``uid`` owns the entry, ``sha256`` digests the bytes read (empty when none were).
    """

    __slots__ = ("name", "uid", "size", "sha256", "status", "problem", "records", "is_folder")

    def __init__(self, name: str, uid: int, size: int, *, sha256: str = "", status: str = "ok", problem: str = "",
                 records: tuple[Reported, ...] = (), is_folder: bool = False) -> None:
        self.name, self.uid, self.size, self.sha256 = name, uid, size, sha256
        self.status, self.problem, self.records, self.is_folder = status, problem, records, is_folder


class _Malformed(ValueError):
    pass


def open_folder(spool: str) -> int:
    """A descriptor of ``spool/audit/``, never through a link (OSError ELOOP); every entry is reached through it."""
    return os.open(os.path.join(spool, FOLDER), os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)


def pending(folder: int, limit: int) -> list[str]:
    """The first ``limit`` entries of the drop folder in name order (the hooks' clock); dotfiles are skipped."""
    return sorted(name for name in os.listdir(folder) if not name.startswith("."))[:limit]


def _what(mode: int) -> str:
    import stat

    if stat.S_ISLNK(mode):
        return "a symbolic link, which is never followed"
    if stat.S_ISFIFO(mode):
        return "a FIFO, not a drop file"
    if stat.S_ISSOCK(mode):
        return "a socket, not a drop file"
    if stat.S_ISDIR(mode):
        return "a folder, not a drop file"
    return "not a regular file"


def read(folder: int, name: str) -> Drop:
    """The entry ``name`` of the drop folder, read without trusting it; FileNotFoundError when it is gone (another
    worker ingested it). Never raises for what the entry is or holds: that is the returned drop's ``problem``."""
    import errno
    import hashlib
    import stat

    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    try:
        fd = os.open(name, flags, dir_fd=folder)
    except FileNotFoundError:
        raise
    except OSError as exc:
        info = os.stat(name, dir_fd=folder, follow_symlinks=False)
        why = _what(info.st_mode) if exc.errno in (errno.ELOOP, errno.ENXIO) or not stat.S_ISREG(info.st_mode) \
            else f"cannot be read ({exc.strerror})"
        return Drop(name, info.st_uid, info.st_size, status="refused", problem=why)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return Drop(name, info.st_uid, info.st_size, status="refused", problem=_what(info.st_mode),
                        is_folder=stat.S_ISDIR(info.st_mode))
        if info.st_size > MAX_DROP:
            return Drop(name, info.st_uid, info.st_size, status="refused",
                        problem=f"larger than {MAX_DROP} bytes, so not a drop file")
        chunks, total = [], 0
        while total <= MAX_DROP:
            chunk = os.read(fd, MAX_DROP + 1 - total)
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    finally:
        os.close(fd)
    data = b"".join(chunks)
    digest = hashlib.sha256(data).hexdigest()
    if len(data) > MAX_DROP:  # it grew while we read
        return Drop(name, info.st_uid, len(data), sha256=digest, status="refused",
                    problem=f"larger than {MAX_DROP} bytes, so not a drop file")
    try:
        records = parse(data)
    except _Malformed as exc:
        return Drop(name, info.st_uid, len(data), sha256=digest, status="malformed", problem=str(exc))
    return Drop(name, info.st_uid, len(data), sha256=digest, records=records)


def parse(data: bytes) -> tuple[Reported, ...]:
    """The records of a drop file's bytes; raises a ValueError naming the first thing that is wrong."""
    if not data.startswith(MAGIC):
        raise _Malformed("does not start with the drop header of this version")
    body = data[len(MAGIC):]
    if not body.endswith(b"\0"):
        raise _Malformed("holds no record, or its last field is cut short")
    records: list[Reported] = []
    for number, raw in enumerate(body[:-1].split(b"\0"), 1):
        key_bytes, equals, value_bytes = raw.partition(b"=")
        key = key_bytes.decode("ascii", "replace")
        if not equals or key not in FIELDS:
            raise _Malformed(f"field {number}: {key[:40]!r} is not a field this version knows")
        value = value_bytes.decode("utf-8", "surrogateescape")
        if len(value) > VALUE_LIMIT:
            raise _Malformed(f"field {number} ({key}): longer than {VALUE_LIMIT} characters")
        if key == "kind":
            records.append(Reported({}, []))
        elif not records:
            raise _Malformed(f"field {number} ({key}): comes before the first record's kind")
        record = records[-1]
        if key == "reason":
            if len(record.reasons) > MAX_REASONS:
                raise _Malformed(f"field {number}: more than {MAX_REASONS + 1} reasons in one record")
            record.reasons.append(value)
        elif key in record.fields:
            raise _Malformed(f"field {number} ({key}): appears twice in one record")
        else:
            record.fields[key] = value
    for number, record in enumerate(records, 1):
        if problem := _problem(record.fields):
            raise _Malformed(f"record {number}: {problem}")
    return tuple(records)


def _problem(fields: dict[str, str]) -> str | None:
    """What is wrong with one record's fields, or None."""
    from .codec import MAX_TIME
    from .job import is_id, is_oid

    kind = fields["kind"]
    if kind not in KINDS:
        return f"kind {kind[:40]!r} is not one this version knows"
    for key in ("time", "repository", "ref", "new") + (("job",) if kind == "job-queued" else ()):
        if not fields.get(key):
            return f"{key}: missing"
    try:
        stamp = float(fields["time"])
    except ValueError:
        stamp = -1.0
    if not 0 <= stamp < MAX_TIME:
        return "time: not a time"
    owner, _, name = fields["repository"].partition("/")
    if not owner or not name or "/" in name:
        return "repository: must be owner/name"
    if not fields["ref"].startswith("refs/"):
        return "ref: must start with refs/"
    for key in ("old", "new"):
        if fields.get(key) and not is_oid(fields[key]):
            return f"{key}: must be a full hex object id"
    if fields.get("job") and not is_id(fields["job"]):
        return "job: not a job id"
    return None


def discard(folder: int, drop: Drop) -> None:
    """Remove an entry once its records are in the log: a link or FIFO is unlinked, never followed or opened; a
    folder, which we cannot remove, is renamed to a dotname that :func:`pending` skips."""
    try:
        if drop.is_folder:
            os.rename(drop.name, f".refused-{drop.name}-{os.urandom(4).hex()}", src_dir_fd=folder, dst_dir_fd=folder)
        else:
            os.unlink(drop.name, dir_fd=folder)
    except FileNotFoundError:
        pass
