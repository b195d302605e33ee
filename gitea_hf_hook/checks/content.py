"""Checks of what a ref would publish: the files of its tree after ``subdir``, ``include`` and ``exclude``.

Per-file checks look only at files changed since the ref's old tip, when it had one; the model card is a
whole-tree check and is read at the new tip. Git is asked twice whatever the number of files: one tree
listing or diff, and one ``cat-file --batch`` for contents.
"""

from __future__ import annotations

import io
import json
import os
import stat
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO

from ..config.globs import compile_path_glob
from ..config.model import CardRule, Checks, Config, RepoRule, unfit
from ..gitea import git, lfs
from .problems import Problem, show_path
from .scanners import PICKLE_SUFFIXES, Finding

MIB = 1024 * 1024
# LFS-stored JSON can be a multi-gigabyte dataset; parsing it would stall the push.
MAX_LFS_JSON = 64 * MIB


def findings_at(path: str, findings: list[Finding]) -> list[Problem]:
    return [Problem(f"{path}:{f.line}" if f.line else path, f.problem, f.hint) for f in findings]


@contextmanager
def open_content(data: bytes, pointer: lfs.Pointer | None, lfs_root: str) -> Iterator[tuple[BinaryIO, int] | None]:
    """The content of a file, from the blob or, for a Git LFS pointer, streamed from Gitea's store."""
    if pointer is None:
        yield io.BytesIO(data), len(data)
        return
    try:
        # Never through a link, and never a FIFO, which would block: the store is Gitea's user's to write.
        fd = os.open(lfs.object_path(lfs_root, pointer.oid), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        yield None  # reported by the LFS check
        return
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        yield None
        return
    os.set_blocking(fd, True)
    f = open(fd, "rb")
    with f:
        yield f, pointer.size


def _lfs_problem(path: str, pointer: lfs.Pointer, lfs_root: str) -> Problem | None:
    try:
        info = os.lstat(lfs.object_path(lfs_root, pointer.oid))
    except OSError:
        info = None
    if info is None:
        return Problem(path, f"Git LFS object {pointer.oid[:12]} is not on the server",
                       "run: git lfs push --all origin, then push again")
    if not stat.S_ISREG(info.st_mode):
        return Problem(path, f"Git LFS object {pointer.oid[:12]} is not a regular file in the server's store",
                       "an admin must replace it with the object itself; then push again")
    size = info.st_size
    if size != pointer.size:
        return Problem(path, f"Git LFS object {pointer.oid[:12]} holds {size} bytes, the pointer says {pointer.size}",
                       "run: git lfs push --all origin, then push again")
    return None


def _scan(path: str, name: str, data: bytes, config: Config, checks: Checks) -> list[Problem]:
    """Content checks of one file; ``path`` is what the pusher sees, ``name`` the lowercase file name."""
    pointer = lfs.parse_pointer(data)
    problems: list[Problem] = []
    if pointer is not None and checks.lfs_objects and (p := _lfs_problem(path, pointer, config.lfs_root)):
        problems.append(p)
    if name.endswith(PICKLE_SUFFIXES) and checks.pickle != "allow":
        if checks.pickle == "deny":
            problems.append(Problem(path, "pickle files can run code when loaded",
                                    "convert the weights to safetensors"))
        else:
            from .scanners.pickles import scan_pickle

            with open_content(data, pointer, config.lfs_root) as opened:
                if opened is not None:
                    problems += findings_at(path, scan_pickle(opened[0]))
    if name.endswith(".safetensors") and checks.safetensors:
        from .scanners.safetensors import check_safetensors

        with open_content(data, pointer, config.lfs_root) as opened:
            if opened is not None:
                problems += findings_at(path, check_safetensors(*opened))
    if name.endswith(".json") and checks.json and (pointer is None or pointer.size <= MAX_LFS_JSON):
        with open_content(data, pointer, config.lfs_root) as opened:
            if opened is not None:
                try:
                    json.loads(opened[0].read())
                except (UnicodeDecodeError, ValueError) as exc:
                    where = f" at line {exc.lineno}" if isinstance(exc, json.JSONDecodeError) else ""
                    problems.append(Problem(path, f"not valid JSON{where}", "fix the file, or exclude it"))
    if checks.secrets and pointer is None:
        from .scanners.secrets import is_text, scan_secrets

        if is_text(data):
            problems += findings_at(path, scan_secrets(data))
    return problems


def _path_problems(shown: str, published: str, mode: str, checks: Checks) -> list[Problem]:
    if mode == git.SYMLINK:
        return [Problem(shown, "symlinks cannot be published to the Hub", "commit the file it points to instead")]
    if mode == git.SUBMODULE:
        return [Problem(shown, "submodules cannot be published to the Hub",
                        "commit the files themselves, or publish that repository on its own")]
    problems = []
    if why := unfit(published):
        problems.append(Problem(shown, why, "rename it, or exclude it in the rule"))
    for pattern in checks.forbid:
        if compile_path_glob(pattern).match(published):
            problems.append(Problem(shown, f"matches forbidden pattern '{pattern}'",
                                    "remove it from the commit, or ask an admin to change checks.forbid"))
            break
    return problems


def passed_marker(config: Config, card: CardRule, oid: str) -> str:
    """Where a passed model card is remembered: keyed by the README blob, the rule and the checking code."""
    code = os.stat(os.path.join(os.path.dirname(os.path.abspath(__file__)), "scanners", "model_card.py"))
    # The blob id cannot be steered to collide; the checksum covers admin-written rules only.
    rule = zlib.crc32(f"{card!r} {code.st_mtime_ns} {code.st_size}".encode())
    return os.path.join(config.spool, "cards", f"{oid}-{rule:08x}")


def check_card(config: Config, rule: RepoRule, obj: tuple[str, str, int, bytes | None] | None, *,
               markers: bool = True) -> list[Problem]:
    """The whole-tree check: README.md at the new tip. A card that passed before is not parsed again, unless
    ``markers`` is off: the worker trusts no marker, since Gitea's user can write them."""
    card = rule.checks.model_card
    assert card is not None
    shown = f"{rule.subdir}/README.md" if rule.subdir else "README.md"
    if obj is None or obj[1] != "blob" or not rule.publishes("README.md"):
        return [Problem(shown, "missing: the Hub shows README.md as the model card",
                        "add a README.md whose YAML front matter names its license, tags and so on")]
    if obj[3] is None:
        return [Problem(shown, f"{obj[2] / MIB:.1f} MiB is too large for a model card", "keep README.md small")]
    marker = passed_marker(config, card, obj[0])
    if markers and os.path.exists(marker):
        return []
    data = obj[3]
    pointer = lfs.parse_pointer(data)
    if pointer is not None:
        with open_content(data, pointer, config.lfs_root) as opened:
            if opened is None:
                return []  # the LFS check reports the missing object
            data = opened[0].read(1 * MIB)
    from .scanners.model_card import check_model_card

    metrics = {name: (op, value) for name, op, value in card.metrics}
    findings = check_model_card(data, required=card.required, licenses=card.licenses, metrics=metrics)
    if not findings and markers:
        try:
            os.makedirs(os.path.dirname(marker), exist_ok=True)
            open(marker, "x").close()
        except OSError:
            pass  # only costs the next push a parse
    return findings_at(shown, findings)


def check(config: Config, rule: RepoRule, commit: str, base: str | None, *, cwd: str | None = None,
          markers: bool = True) -> list[Problem]:
    """Every content problem of publishing ``commit``; only files changed since ``base`` when it is given.

    The hooks run in the repository; the worker names it as ``cwd`` and passes ``markers=False`` (see
    :func:`check_card`).
    """
    checks = rule.checks
    entries = git.changed_files(base, commit, cwd) if base else git.list_tree(commit, cwd)
    problems: list[Problem] = []
    blobs: list[tuple[str, str, str]] = []  # (shown path, lowercase name, oid)
    for entry in entries:
        published = rule.hub_path(entry.path)
        if published is None:
            continue
        shown = show_path(entry.path)
        problems += _path_problems(shown, published, entry.mode, checks)
        if entry.mode not in (git.SYMLINK, git.SUBMODULE):
            blobs.append((shown, published.rsplit("/", 1)[-1].lower(), entry.oid))
    limit = int(checks.max_blob_mb * MIB)
    card_spec = []
    if checks.model_card is not None:
        card_spec = [f"{commit}:{rule.subdir + '/' if rule.subdir else ''}README.md"]
    # One content batch for all: a blob over the limit is passed over unread and reported by its size.
    objects = git.read_objects(card_spec + [oid for _, _, oid in blobs], cwd=cwd,
                               limit=max(limit, lfs.MAX_POINTER_SIZE))
    if card_spec:
        problems += check_card(config, rule, next(objects), markers=markers)
    # The generator goes first so that it runs to its end and reaps the git process.
    for obj, (shown, name, _) in zip(objects, blobs, strict=True):
        if obj is None:
            continue
        if obj[2] > limit:
            # track covers files to come; the file already committed needs its commits rewritten.
            suffix = os.path.splitext(name)[1]
            pattern = f"*{suffix}" if suffix else shown
            problems.append(Problem(shown, f"{obj[2] / MIB:.1f} MiB is over the {checks.max_blob_mb:g} MiB limit "
                                           "for files outside Git LFS",
                                    f'git lfs track "{pattern}", then git lfs migrate import --include="{shown}"'))
        elif obj[3] is not None:
            problems += _scan(shown, name, obj[3], config, checks)
    # Grouped by file, in the order git lists files, whichever check found them.
    return sorted(problems, key=lambda p: p.path)
