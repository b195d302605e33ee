"""Git plumbing for the hooks: a fixed number of subprocesses per push, bytes throughout.

Every subprocess inherits the hook's environment unchanged. During pre-receive that environment names the
quarantine directory (GIT_OBJECT_DIRECTORY, GIT_ALTERNATE_OBJECT_DIRECTORIES), the only place the pushed
objects can be seen from; stripping ``GIT_*`` variables would hide them.
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterable, Iterator
from typing import NamedTuple

from .errors import GitError

SYMLINK = "120000"
SUBMODULE = "160000"


def is_zero(oid: str) -> bool:
    """True for the all-zeros id git uses for "no object" (sha1 or sha256 length)."""
    return not oid.strip("0")


class Entry(NamedTuple):
    """One path of a tree listing or diff: its mode, object id and raw path bytes."""

    mode: str
    oid: str
    path: bytes


def run(*args: str, cwd: str | None = None, ok_codes: tuple[int, ...] = (0,)) -> subprocess.CompletedProcess[bytes]:
    """Run one git command and return its completed process, raising GitError on an unexpected exit."""
    proc = subprocess.run(["git", *args], cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True)
    if proc.returncode not in ok_codes:
        detail = proc.stderr.decode(errors="replace").strip().splitlines()
        raise GitError(f"git {args[0]} failed: {detail[-1] if detail else f'exit {proc.returncode}'}",
                       "check that the repository is intact (git fsck)")
    return proc


def list_tree(commit: str, cwd: str | None = None) -> list[Entry]:
    """Every file of ``commit``'s tree, recursively (one ``git ls-tree`` process)."""
    out = run("ls-tree", "-r", "-z", "--full-tree", commit, cwd=cwd).stdout
    entries = []
    for record in out.split(b"\0"):
        if not record:
            continue
        meta, _, path = record.partition(b"\t")
        mode, _type, oid = meta.split(b" ")
        entries.append(Entry(mode.decode(), oid.decode(), path))
    return entries


def changed_files(old: str, new: str, cwd: str | None = None) -> list[Entry]:
    """Files added or modified between two commits (one ``git diff-tree`` process); deletions are left out."""
    out = run("diff-tree", "-r", "-z", "--no-renames", "--no-commit-id", old, new, cwd=cwd).stdout
    fields = out.split(b"\0")
    entries = []
    for i in range(0, len(fields) - 1, 2):
        meta, path = fields[i], fields[i + 1]
        _old_mode, new_mode, _old_oid, new_oid, status = meta.lstrip(b":").split(b" ")
        if status != b"D":
            entries.append(Entry(new_mode.decode(), new_oid.decode(), path))
    return entries


def _batch(option: str, specs: list[str], cwd: str | None,
           limit: int | None = None) -> Iterator[tuple[str, str, int, bytes | None] | None]:
    proc = subprocess.Popen(["git", "cat-file", option], cwd=cwd, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdin is not None and proc.stdout is not None
    stdin, stdout = proc.stdin, proc.stdout

    def feed() -> None:
        # A writer thread, because git answers while we are still asking: with both sides on one thread a
        # large request list fills one pipe while git blocks on the other.
        try:
            stdin.write("".join(spec + "\n" for spec in specs).encode())
            stdin.close()
        except BrokenPipeError:
            pass

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    try:
        for _ in specs:
            header = stdout.readline()
            if not header:
                raise GitError("git cat-file stopped answering", "check that the repository is intact (git fsck)")
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
                            raise GitError("git cat-file stopped answering",
                                           "check that the repository is intact (git fsck)")
                        left -= len(chunk)
                stdout.read(1)
            yield oid, kind, size, data
    finally:
        # Closing our end first lets a git still answering die of SIGPIPE, which in turn unblocks the writer
        # when the caller stopped reading early.
        stdout.close()
        writer.join()
        proc.wait()


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
    return run("merge-base", "--is-ancestor", old, new, cwd=cwd, ok_codes=(0, 1)).returncode == 0


def reachable_from_any(commit: str, tips: Iterable[str], cwd: str | None = None) -> bool:
    """True when ``commit`` is reachable from at least one of ``tips`` (one ``git rev-list`` process)."""
    tips = list(tips)
    if not tips:
        return False
    out = run("rev-list", "-n", "1", commit, "--not", *tips, cwd=cwd).stdout
    return not out.strip()


def refs(prefix: str, cwd: str | None = None) -> dict[str, str]:
    """Ref name to object id for every ref under ``prefix`` (e.g. ``refs/heads/``)."""
    out = run("for-each-ref", "--format=%(objectname) %(refname)", prefix, cwd=cwd).stdout
    result = {}
    for line in out.decode(errors="surrogateescape").splitlines():
        oid, _, name = line.partition(" ")
        result[name] = oid
    return result
