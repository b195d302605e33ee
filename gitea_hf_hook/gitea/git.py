"""Git plumbing for the hooks: a fixed number of subprocesses per push, bytes throughout.

Every subprocess inherits the hook's environment unchanged. During pre-receive that environment names the
quarantine directory (GIT_OBJECT_DIRECTORY, GIT_ALTERNATE_OBJECT_DIRECTORIES), the only place the pushed
objects can be seen from; stripping ``GIT_*`` variables would hide them.

The worker reads the same repositories as another user, one that holds secrets, and treats them as hostile: it
runs inside ``confined()``, where git gets an environment of its own and settings that outrank the repository's
config (``isolation.py``), so that nothing a repository configures makes git run a program or open a connection.

Revision arguments follow ``--end-of-options``: a name that starts with ``-`` is never read as an option.

Processes are started with ``os.posix_spawnp`` and plain pipes rather than the ``subprocess`` module, whose
import alone costs every push about 3 ms.
"""

from __future__ import annotations

import os
import select
from _signal import SIGPIPE  # type: ignore[import-not-found]  # the C module: the signal wrapper costs an import
from collections.abc import Iterable, Iterator, Mapping
from typing import NamedTuple

from ..errors import GitError

SYMLINK = "120000"
SUBMODULE = "160000"
REGULAR_MODES = ("100644", "100755")
_INTACT_HINT = "check that the repository is intact with git fsck"
# What a pipe holds before a writer blocks: Linux's default is 16 pages, and no supported system has less than
# 4 KiB (PIPE_BUF). A request this small is written whole before git answers.
_PIPE_CAPACITY = 4096


class Entry(NamedTuple):
    """One path of a tree listing or diff: its mode, object id and raw path bytes."""

    mode: str
    oid: str
    path: bytes


class Change(NamedTuple):
    """One path of ``git diff-tree -r``: both sides' mode and object id, the status letter and raw path."""

    old_mode: str
    new_mode: str
    old_oid: str
    new_oid: str
    status: str
    path: bytes


class Completed(NamedTuple):
    """A finished git command."""

    returncode: int
    stdout: bytes
    stderr: bytes


# While ``confined()`` is active: the environment and the leading arguments every git process gets instead.
_confinement: tuple[dict[str, str], tuple[str, ...]] | None = None
_confined_depth = 0


class _Confined:
    """The context manager ``confined()`` returns; nesting is allowed, the outermost exit ends it."""

    def __enter__(self) -> None:
        global _confinement, _confined_depth
        if _confined_depth == 0:
            from . import isolation  # imported here: the hooks never enter confinement and never pay for it

            _confinement = (isolation.environment(os.environ), isolation.ARGUMENTS)
        _confined_depth += 1

    def __exit__(self, *_exc: object) -> None:
        global _confinement, _confined_depth
        _confined_depth -= 1
        if _confined_depth == 0:
            _confinement = None


def confined() -> _Confined:
    """Run every git process of this module confined until the ``with`` block ends: for a reader that must not
    trust the repository (the worker).

    Inside it git gets an environment built from scratch (PATH kept, no system, global or XDG config, no
    inherited ``GIT_*`` variable, no lazy fetch, no transport), ``-c`` settings that turn off every configured
    program and connection, and ``safe.directory`` for exactly the repository folder of each call, so that a
    repository owned by Gitea's user is readable without trusting any other. Outside it nothing changes. It holds
    for the whole process (every thread) while any ``with`` block of it is open.

    What it cannot reach: filter and diff drivers that the repository's own ``info/attributes`` selects under
    names of its choosing. The functions here never convert content; porcelain run through ``run()`` may
    (``diff``, ``log -p``, ``show``, ``checkout``, ``archive``, ``cat-file --filters``/``--textconv``): keep
    such commands out of the worker.
    """
    return _Confined()


def _spawn(args: tuple[str, ...], cwd: str | None, stdin: int, stdout: int, stderr: int) -> int:
    """Start ``git args`` (in ``cwd`` when given) on the given descriptors; returns its pid."""
    if _confinement is None:
        argv = ["git", *(("-C", cwd) if cwd else ()), *args]
        env: Mapping[str, str] = os.environ
    else:
        env, leading = _confinement
        from .isolation import CONVERTING_OPTIONS, PLUMBING  # imported already by confined()

        if args[0] not in PLUMBING or CONVERTING_OPTIONS.intersection(args):
            raise GitError(f"git {' '.join(args[:2])} is not run by a reader that trusts no repository",
                           "only plumbing that runs no repository-chosen driver is allowed while confined")
        # Trusted for this call only: the folder git opens, resolved as git resolves it before comparing. A bare
        # repository is named with --git-dir, so git discovers nothing: a ".git" file in it cannot send git
        # elsewhere.
        repo = os.path.realpath(cwd or os.curdir)
        where = ("--git-dir", repo) if os.path.isdir(os.path.join(repo, "objects")) else ("-C", repo)
        argv = ["git", *leading, "-c", f"safe.directory={repo}", *where, *args]
    actions = [(os.POSIX_SPAWN_DUP2, stdin, 0), (os.POSIX_SPAWN_DUP2, stdout, 1), (os.POSIX_SPAWN_DUP2, stderr, 2)]
    try:
        # Python ignores SIGPIPE and a spawned child would inherit that; git should die of it as usual.
        pid = os.posix_spawnp("git", argv, env, file_actions=actions, setsigdef=(SIGPIPE,))
    except OSError as exc:
        raise GitError(f"cannot run git: {exc.strerror}", "install git where the Gitea server can run it") from None
    if _confinement is not None:
        _watch(pid)
    return pid


# A confined git process that runs this long is killed: a FIFO where the repository's config or an object should
# be would otherwise hold the worker forever. No plumbing call of a publish comes near it.
CONFINED_DEADLINE = 600.0
_watchdogs: dict[int, object] = {}


def _watch(pid: int) -> None:
    import threading  # only a confined reader pays for it

    def kill() -> None:
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass

    timer = threading.Timer(CONFINED_DEADLINE, kill)
    timer.daemon = True
    timer.start()
    _watchdogs[pid] = timer


def failure(args: tuple[str, ...], cwd: str | None, code: int, stderr: bytes) -> GitError:
    """A failed git command as an error that keeps git's own last line and names the likely fix."""
    text = stderr.decode(errors="replace")
    lines = text.strip().splitlines()
    said = lines[-1] if lines else f"exit {code}"
    where = cwd or os.getcwd()
    if _confinement is not None:
        # Git quotes what it failed to parse, and a repository can make it parse any file the reader may read
        # (packed-refs as a link to a token file): a confined reader's message never carries git's words.
        if code == -9:
            return GitError(f"git {args[0]} in {where} ran over {CONFINED_DEADLINE:g} s and was stopped",
                            "something in the repository blocks reading it, such as a FIFO: look at its files")
        return GitError(f"git {args[0]} failed in {where} (exit {code})", _INTACT_HINT)
    if "dubious ownership" in text:
        # git names the folder in its "fatal:" line; the last line is its advice to add a safe.directory.
        fatal = next((line for line in lines if line.startswith("fatal:")), said)
        return GitError(f"git {args[0]} refused {where}: {fatal}",
                        f"run this as the user that owns {where}, or trust that one folder in safe.directory")
    if "Permission denied" in text:
        return GitError(f"git {args[0]} cannot read {where}: {said}",
                        f"give the user running this read access to {where}")
    return GitError(f"git {args[0]} failed in {where}: {said}", _INTACT_HINT)


def _wait(pid: int) -> int:
    code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    timer = _watchdogs.pop(pid, None)
    if timer is not None:
        timer.cancel()  # type: ignore[attr-defined]
    return code


def _read_all(fds: list[int]) -> list[bytes]:
    """Everything written to several pipes, read as it comes so that no writer blocks on a full pipe."""
    chunks: dict[int, list[bytes]] = {fd: [] for fd in fds}
    open_fds = list(fds)
    try:
        while open_fds:
            ready, _, _ = select.select(open_fds, [], [])
            for fd in ready:
                data = os.read(fd, 1 << 16)
                if data:
                    chunks[fd].append(data)
                else:
                    open_fds.remove(fd)
                    os.close(fd)
    finally:
        for fd in open_fds:  # only when interrupted: every pipe is closed once, by us
            os.close(fd)
    return [b"".join(chunks[fd]) for fd in fds]


def _start(args: tuple[str, ...], cwd: str | None) -> tuple[int, int, int]:
    """Start ``git args`` with no input; returns its pid and the read ends of its stdout and stderr."""
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    null = os.open(os.devnull, os.O_RDONLY)
    try:
        pid = _spawn(args, cwd, null, out_w, err_w)
    except GitError:
        for fd in (out_r, err_r):
            os.close(fd)
        raise
    finally:
        for fd in (out_w, err_w, null):
            os.close(fd)
    return pid, out_r, err_r


def run(*args: str, cwd: str | None = None, ok_codes: tuple[int, ...] = (0,)) -> Completed:
    """Run one git command and return what it printed, raising GitError on an unexpected exit."""
    pid, out_r, err_r = _start(args, cwd)
    try:
        stdout, stderr = _read_all([out_r, err_r])
    except BaseException:
        # Interrupted (a push's deadline, ^C): git must not run on, unwatched, after we have given up on it.
        _kill(pid)
        _wait(pid)
        raise
    code = _wait(pid)
    if code not in ok_codes:
        raise failure(args, cwd, code, stderr)
    return Completed(code, stdout, stderr)


def _kill(pid: int) -> None:
    try:
        os.kill(pid, 9)
    except ProcessLookupError:
        pass


def _records(args: tuple[str, ...], cwd: str | None, limit: int | None) -> list[bytes]:
    """The NUL-terminated records ``git args`` prints, read as they come; only the first ``limit`` + 1 of them
    when there are more, so that the caller can tell.

    A pushed tree can list millions of files: past the limit git is stopped (it dies of SIGPIPE when we close
    our end) rather than held in memory.
    """
    pid, out_r, err_r = _start(args, cwd)
    records: list[bytes] = []
    tail = b""
    over = False
    try:
        while chunk := os.read(out_r, 1 << 16):
            parts = (tail + chunk).split(b"\0")
            tail = parts.pop()
            records += parts
            if limit is not None and len(records) > limit:
                over = True
                break
    except BaseException:
        _kill(pid)  # interrupted: stopped now, not at its next write
        raise
    finally:
        os.close(out_r)
        (stderr,) = _read_all([err_r])  # git says little on stderr, and only once stdout is done or closed
        code = _wait(pid)
    if over:
        return records[:limit + 1] if limit is not None else records
    if code != 0:
        raise failure(args, cwd, code, stderr)
    return records


def list_tree(commit: str, cwd: str | None = None, *, limit: int | None = None) -> list[Entry]:
    """Every file of ``commit``'s tree, recursively (one ``git ls-tree`` process); ``limit`` + 1 of them when
    there are more than ``limit``."""
    records = _records(("ls-tree", "-r", "-z", "--full-tree", "--end-of-options", commit), cwd, limit)
    entries = []
    for record in records:
        meta, _, path = record.partition(b"\t")
        mode, _type, oid = meta.split(b" ")
        entries.append(Entry(mode.decode(), oid.decode(), path))
    return entries


def diff(old: str, new: str, cwd: str | None = None, *, limit: int | None = None) -> list[Change]:
    """Every path that differs between two commits, without rename detection (one ``git diff-tree`` process);
    ``limit`` + 1 of them when there are more than ``limit``."""
    # Two records a path: the modes, ids and status, then the path.
    fields = _records(("diff-tree", "-r", "-z", "--no-renames", "--no-commit-id", "--end-of-options", old, new),
                      cwd, None if limit is None else 2 * limit + 1)
    changes = []
    for i in range(0, len(fields) - 1, 2):
        meta, path = fields[i], fields[i + 1]
        old_mode, new_mode, old_oid, new_oid, status = meta.lstrip(b":").decode().split(" ")
        changes.append(Change(old_mode, new_mode, old_oid, new_oid, status, path))
    return changes


def changed_files(old: str, new: str, cwd: str | None = None) -> list[Entry]:
    """Files added or modified between two commits; deletions are left out."""
    return [Entry(c.new_mode, c.new_oid, c.path) for c in diff(old, new, cwd) if c.status != "D"]


def _batch(option: str, specs: list[str], cwd: str | None,
           limit: int | None = None) -> Iterator[tuple[str, str, int, bytes | None] | None]:
    if not specs:
        return
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        pid = _spawn(("cat-file", option), cwd, in_r, out_w, null)
    except GitError:
        os.close(in_w)
        os.close(out_r)
        raise
    finally:
        for fd in (in_r, out_w, null):
            os.close(fd)
    stdin = open(in_w, "wb")
    stdout = open(out_r, "rb")
    request = "".join(spec + "\n" for spec in specs).encode()

    def feed() -> None:
        try:
            stdin.write(request)
            stdin.flush()
        except BrokenPipeError:
            pass  # git stopped reading: the caller abandoned the batch
        finally:
            try:
                stdin.close()
            except BrokenPipeError:
                pass

    writer = None
    if len(request) <= _PIPE_CAPACITY:
        feed()  # the pipe takes it whole at once, whatever git does meanwhile
    else:
        # A writer thread, because git answers while we are still asking: with both sides on one thread a
        # large request list fills one pipe while git blocks on the other. Imported only here: threading
        # costs every push an import it rarely needs.
        import threading

        writer = threading.Thread(target=feed, daemon=True)
        writer.start()
    try:
        for _ in specs:
            header = stdout.readline()
            if not header:
                raise GitError("git cat-file stopped answering", _INTACT_HINT)
            parts = header.split()
            if len(parts) != 3:  # "<spec> missing", "<spec> ambiguous"
                yield None
                continue
            oid, kind, size = parts[0].decode(), parts[1].decode(), int(parts[2])
            data = None
            if option == "--batch":
                if limit is None or size <= limit:
                    data = stdout.read(size)
                else:
                    # Too large to inspect: pass over it in chunks rather than hold it.
                    left = size
                    while left:
                        chunk = stdout.read(min(left, 1 << 20))
                        if not chunk:
                            raise GitError("git cat-file stopped answering", _INTACT_HINT)
                        left -= len(chunk)
                stdout.read(1)
            yield oid, kind, size, data
    finally:
        # Closing our end first lets a git still answering die of SIGPIPE, which in turn unblocks the writer
        # when the caller stopped reading early.
        stdout.close()
        if writer is not None:
            writer.join()
        _wait(pid)


def object_info(specs: list[str], cwd: str | None = None) -> list[tuple[str, str, int] | None]:
    """(oid, type, size) for each object name, or None where it does not exist (one process)."""
    return [None if r is None else r[:3] for r in _batch("--batch-check", specs, cwd)]


def read_objects(specs: list[str], cwd: str | None = None,
                 limit: int | None = None) -> Iterator[tuple[str, str, int, bytes | None] | None]:
    """Yield (oid, type, size, content) for each object name in order, or None where it is missing.

    One process for all of them, and a generator, so the caller holds one object at a time however large
    the push. Content over ``limit`` bytes is not kept: it comes back as None with its size.
    """
    yield from _batch("--batch", specs, cwd, limit)


def is_ancestor(old: str, new: str, cwd: str | None = None) -> bool:
    """True when ``old`` is reachable from ``new``, that is the update is a fast-forward."""
    return run("merge-base", "--is-ancestor", "--end-of-options", old, new, cwd=cwd, ok_codes=(0, 1)).returncode == 0


def reachable_from_any(commit: str, tips: Iterable[str], cwd: str | None = None) -> bool:
    """True when ``commit`` is reachable from at least one of ``tips`` (one ``git rev-list`` process)."""
    tips = list(tips)
    if not tips:
        return False
    # ^tip rather than --not: after --end-of-options, --not would be read as a revision.
    out = run("rev-list", "-n", "1", "--end-of-options", commit, *(f"^{tip}" for tip in tips), cwd=cwd).stdout
    return not out.strip()


def refs(prefix: str, cwd: str | None = None) -> dict[str, str]:
    """Ref name to object id for every ref under ``prefix`` (e.g. ``refs/heads/``)."""
    out = run("for-each-ref", "--format=%(objectname) %(refname)", "--end-of-options", prefix, cwd=cwd).stdout
    result = {}
    for line in out.decode(errors="surrogateescape").splitlines():
        oid, _, name = line.partition(" ")
        result[name] = oid
    return result


def rev_parse(name: str, cwd: str | None = None) -> str | None:
    """The object id ``name`` (a ref, a tag, an object id, ``HEAD``...) points at, or None when there is none."""
    out = run("rev-parse", "--verify", "--quiet", "--end-of-options", name, cwd=cwd, ok_codes=(0, 1)).stdout
    return out.decode().strip() or None


def commit_message(commit: str, cwd: str | None = None) -> bytes:
    """The raw message of ``commit`` (a tag is followed to its commit): what follows the headers, as stored.

    Read with ``cat-file``, never ``log``: no signature check, encoding or mailmap applies. A commit object
    without a message has none: ``b""``.
    """
    raw = run("cat-file", "commit", "--end-of-options", commit, cwd=cwd).stdout
    return raw.partition(b"\n\n")[2]
