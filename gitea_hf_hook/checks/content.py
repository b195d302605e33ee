"""Checks of what refs would publish: the files of their trees after ``subdir``, ``include`` and ``exclude``.

Per-file checks look only at files changed since a ref's old tip, when it had one; the model card is a
whole-tree check and is read at the new tip. A push is checked as a whole, whatever the number of refs and
files: each ref's files are listed (one tree listing or diff each), every object they name is sized in one
``cat-file --batch-check`` and read in one ``cat-file --batch``, and each object is checked once however many
paths and refs hold it (:mod:`.objects`). What that may cost is capped by :mod:`.budget`.
"""

from __future__ import annotations

import os
import zlib
from typing import NamedTuple

from ..config.globs import compile_path_glob
from ..config.model import CardRule, Checks, Config, RepoRule, unfit
from ..gitea import git, lfs
from .budget import MIB, Budget
from .objects import Scanner, kind_of, open_lfs
from .problems import Problem, show_path
from .scanners import Finding

# What is read of a model card kept in Git LFS: the front matter comes first, and the Hub reads no more.
MAX_CARD = 4 * MIB


class Wanted(NamedTuple):
    """One ref to check: its new commit, and the old tip whose files passed already (None for a new ref)."""

    ref: str
    commit: str
    base: str | None


class _File(NamedTuple):
    shown: str  # the path as the pusher reads it
    kind: str  # see objects.kind_of
    oid: str


def findings_at(path: str, findings: list[Finding]) -> list[Problem]:
    return [Problem(f"{path}:{f.line}" if f.line else path, f.problem, f.hint) for f in findings]


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
        # Whatever the case: the Hub's users download onto file systems that ignore it.
        if compile_path_glob(pattern, ignore_case=True).match(published):
            problems.append(Problem(shown, f"matches forbidden pattern '{pattern}'",
                                    "remove it from the commit, or ask an admin to change checks.forbid"))
            break
    return problems


def _too_large(file: _File, size: int, checks: Checks) -> Problem:
    # track covers files to come; the file already committed needs its commits rewritten.
    suffix = os.path.splitext(file.shown)[1].lower()
    pattern = f"*{suffix}" if suffix else file.shown
    return Problem(file.shown, f"{size / MIB:.1f} MiB is over the {checks.max_blob_mb:g} MiB limit "
                               "for files outside Git LFS",
                   f'git lfs track "{pattern}", then git lfs migrate import --include="{file.shown}"')


def passed_marker(config: Config, card: CardRule, oid: str) -> str:
    """Where a passed model card is remembered: keyed by the README blob, the rule and the checking code."""
    code = os.stat(os.path.join(os.path.dirname(os.path.abspath(__file__)), "scanners", "model_card.py"))
    # The blob id cannot be steered to collide; the checksum covers admin-written rules only.
    rule = zlib.crc32(f"{card!r} {code.st_mtime_ns} {code.st_size}".encode())
    return os.path.join(config.spool, "cards", f"{oid}-{rule:08x}")


def check_card(config: Config, rule: RepoRule, obj: tuple[str, str, int, bytes | None] | None, budget: Budget, *,
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
        f = open_lfs(config.lfs_root, pointer)
        if f is None:
            return []  # the LFS check of README.md reports the missing object
        with f, budget.metered(f) as metered:
            data = metered.read(MAX_CARD)
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


def _listing(rule: RepoRule, wanted: Wanted, budget: Budget, cwd: str | None) -> tuple[list[_File], list[Problem]]:
    """The files of one ref to check, and the problems their paths alone show."""
    limit = budget.remaining_files()
    if wanted.base:
        changes = git.diff(wanted.base, wanted.commit, cwd, limit=limit)
        budget.list_files(len(changes))
        entries = [git.Entry(c.new_mode, c.new_oid, c.path) for c in changes if c.status != "D"]
    else:
        entries = git.list_tree(wanted.commit, cwd, limit=limit)
        budget.list_files(len(entries))
    files, problems = [], []
    for entry in entries:
        published = rule.hub_path(entry.path)
        if published is None:
            continue
        shown = show_path(entry.path)
        problems += _path_problems(shown, published, entry.mode, rule.checks)
        if entry.mode not in (git.SYMLINK, git.SUBMODULE):
            files.append(_File(shown, kind_of(published.rsplit("/", 1)[-1].lower()), entry.oid))
    return files, problems


def check_refs(config: Config, rule: RepoRule, wanted: list[Wanted], budget: Budget, *, cwd: str | None = None,
               markers: bool = True) -> dict[str, list[Problem]]:
    """Every content problem of publishing each wanted ref, by ref; raises :class:`.budget.Exhausted` when the
    push would cost more than the budget allows.

    The hooks run in the repository; the worker names it as ``cwd`` and passes ``markers=False`` (see
    :func:`check_card`).
    """
    checks = rule.checks
    problems: dict[str, list[Problem]] = {w.ref: [] for w in wanted}
    files: dict[str, list[_File]] = {}
    for w in wanted:
        files[w.ref], problems[w.ref] = _listing(rule, w, budget, cwd)
    cards: dict[str, str] = {}
    if checks.model_card is not None:
        readme = f"{rule.subdir}/README.md" if rule.subdir else "README.md"
        cards = {w.ref: f"{w.commit}:{readme}" for w in wanted}
    kinds: dict[str, set[str]] = {}
    for listed in files.values():
        for file in listed:
            kinds.setdefault(file.oid, set()).add(file.kind)
    specs = list(dict.fromkeys([*cards.values(), *kinds]))
    limit = max(int(checks.max_blob_mb * MIB), lfs.MAX_POINTER_SIZE)
    # Sized first, so that nothing over the limit is read at all, and the whole read is counted before it starts.
    infos = dict(zip(specs, git.object_info(specs, cwd=cwd), strict=True))
    sizes = {spec: info[2] for spec, info in infos.items() if info is not None and info[2] <= limit
             and (info[1] == "blob" or spec in cards.values())}
    wanted_specs = list(sizes)
    budget.scan(sum(sizes.values()))
    card_specs = set(cards.values())
    found: dict[tuple[str, str], list[Finding]] = {}
    card_problems: dict[str, list[Problem]] = {}
    scanner = Scanner(checks, config.lfs_root, budget)
    for spec, obj in zip(wanted_specs, git.read_objects(wanted_specs, cwd=cwd), strict=True):
        if obj is None:
            continue
        if spec in card_specs:
            if obj[0] not in card_problems:  # one README under many refs is checked once
                card_problems[obj[0]] = check_card(config, rule, obj, budget, markers=markers)
            card_problems[spec] = card_problems[obj[0]]
        if obj[1] == "blob" and obj[3] is not None and spec in kinds:
            for kind in kinds[spec]:
                found[spec, kind] = scanner.blob(obj[3], kind)
    for w in wanted:
        ref_problems = problems[w.ref]
        if w.ref in cards:
            spec = cards[w.ref]
            info = infos[spec]
            if spec in card_problems:
                ref_problems += card_problems[spec]
            else:  # missing, not a file, or too large to read
                ref_problems += check_card(config, rule, None if info is None else (*info, None), budget,
                                           markers=markers)
        for file in files[w.ref]:
            info = infos[file.oid]
            if info is not None and info[1] != "blob":
                # A file's mode naming a commit or a tree, which a crafted tree can hold: its bytes are nobody's file.
                ref_problems.append(Problem(file.shown, f"is a git {info[1]}, not a file",
                                            "rebuild the commit with git add and git commit"))
            elif info is not None and info[2] > limit:
                ref_problems.append(_too_large(file, info[2], checks))
            elif (file.oid, file.kind) in found:
                ref_problems += findings_at(file.shown, found[file.oid, file.kind])
        # Grouped by file, in the order git lists files, whichever check found them.
        ref_problems.sort(key=lambda p: p.path)
    return problems


def check(config: Config, rule: RepoRule, commit: str, base: str | None, *, cwd: str | None = None,
          markers: bool = True) -> list[Problem]:
    """Every content problem of publishing ``commit`` alone, with no budget: for the worker and ``check``."""
    return check_refs(config, rule, [Wanted("", commit, base)], Budget(None), cwd=cwd, markers=markers)[""]
