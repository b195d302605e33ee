"""What a job may publish, derived again from the root-owned config and from git, never taken from the job.

A job file is written by Gitea's user, so each of its claims is checked before the worker acts on it:

- the repository folder is ``gitea.repo_root``/owner/name.git with no link on the way below the root (git is
  then given it as ``--git-dir``, so nothing inside it can send git elsewhere);
- the target, and with it the token, is what the config's current rule maps the repository and ref to;
- the commit is a full object id that the ref points at now (peeled) or, for a branch, an ancestor of it; a
  deletion is published only while the ref stays deleted.

Any mismatch fails the job with a reason naming the field. What the checks cannot stop, and README says so, is
Gitea's user moving a ref: it can make a repository publish anything, but only into that repository's targets.
"""

from __future__ import annotations

import os
import re
from typing import NamedTuple

from ..config.model import Config, RepoRule, Target
from ..errors import GitError, PublishError
from ..gitea import git
from ..gitea.hook_input import is_zero
from ..spool.job import Job

# Gitea's names: letters, digits, '-', '_' and '.', never '.' or '..'; it reserves names ending in .git and .wiki
# (the wiki's folder is <name>.wiki.git, which a repository name must not reach).
_NAME = re.compile(r"[a-z0-9_.-]{1,255}\Z")
_RESERVED_SUFFIXES = (".git", ".wiki")
_HINT = "the job was not written by this release's hooks: push again to publish"


def _bad_ref(ref: str) -> bool:
    """Whether ``ref`` breaks git's ref-name rules: a job's ref reaches ``rev-parse``, where ``@{``, ``^``, ``~``
    and ``:`` would name something else than the ref (its reflog, a parent, a path)."""
    if any(c in ref for c in " ~^:?*[\\\x7f") or any(ord(c) < 32 for c in ref):
        return True
    parts = ref.split("/")
    return ("@{" in ref or ".." in ref or ref.endswith((".", "/", ".lock")) or ref == "@"
            or any(not p or p.startswith(".") or p.endswith(".lock") for p in parts))


class Derived(NamedTuple):
    """What the worker publishes for a job, each field from the config or git."""

    owner: str
    name: str
    repo_dir: str
    rule: RepoRule
    target: Target


def _refuse(field: str, problem: str, hint: str = _HINT) -> PublishError:
    return PublishError(f"request.{field}: {problem}", hint)


def route(config: Config, job: Job) -> tuple[str, str, RepoRule, Target]:
    """The repository's owner and name, its rule and the job's target, from the config alone (no git).

    Raises PublishError naming the field when the job asks for a target the config does not map.
    """
    request = job.request
    owner, _, name = request.repository.partition("/")
    for part in (owner, name):
        if not _NAME.match(part) or part in (".", "..") or part.endswith(_RESERVED_SUFFIXES):
            raise _refuse("repository", f"{request.repository!r} is not a Gitea repository name")
    if _bad_ref(request.ref):
        raise _refuse("ref", f"{request.ref!r} is not a ref name git accepts")
    rule = config.rule_for(request.repository)
    if rule is None:
        raise _refuse("repository", f"{request.repository} matches no repos entry of {config.path}",
                      "nothing is published for it; add a rule and push again if it should publish")
    target = rule.target(owner, name, request.ref)
    if target is None:
        raise _refuse("ref", f"{request.ref} of {request.repository} does not publish under repos[{rule.position}]",
                      "nothing is published for it; change the rule and push again if it should publish")
    if target != request.target:
        raise _refuse("target", f"the job asks for {request.target.label}, but repos[{rule.position}] publishes "
                                f"{request.ref} of {request.repository} to {target.label}",
                      "the rule changed since the push, or the job was altered: push again to publish")
    return owner, name, rule, target


def repository_folder(config: Config, owner: str, name: str) -> str:
    """``repo_root/owner/name.git`` when it is a real folder with no link on the way; raises PublishError."""
    root = os.path.realpath(config.repo_root)
    folder = os.path.join(root, owner, name + ".git")
    if os.path.realpath(folder) != folder:
        raise _refuse("repository", f"{folder} is, or lies under, a symbolic link",
                      "Gitea never makes links in its repository root: remove it")
    if not os.path.isdir(folder):
        raise _refuse("repository", f"{owner}/{name} has no repository folder {folder}",
                      "the repository was deleted or renamed in Gitea; push again to publish")
    return folder


def derive(config: Config, job: Job) -> Derived:
    """Everything the worker needs to publish ``job``, derived from the config and git; raises PublishError."""
    owner, name, rule, target = route(config, job)
    folder = repository_folder(config, owner, name)
    request = job.request
    if request.repo_dir and os.path.realpath(request.repo_dir) != folder:
        raise _refuse("repo_dir", f"{request.repo_dir} is not the folder of {request.repository} ({folder})")
    try:
        current = git.rev_parse(request.ref, cwd=folder)
        if is_zero(request.new):
            if current is not None:
                raise _refuse("new", f"the job deletes {request.ref}, which exists again in {request.repository}",
                              "nothing to delete: the newer push publishes it")
            return Derived(owner, name, folder, rule, target)
        peeled = git.rev_parse(f"{request.ref}^{{commit}}", cwd=folder) if current is not None else None
        commit = request.commit
        if peeled is None:
            raise _refuse("ref", f"{request.ref} no longer exists in {request.repository}",
                          "nothing to publish: it was deleted since the push")
        if git.rev_parse(f"{commit}^{{commit}}", cwd=folder) != commit:
            raise _refuse("commit", f"{commit} is not a commit of {request.repository}")
        on_ref = peeled == commit or (target.kind == "branch" and git.is_ancestor(commit, peeled, cwd=folder))
    except GitError as exc:
        raise PublishError(f"reading {request.repository} failed: {exc.message}", exc.hint) from None
    if not on_ref:
        raise _refuse("commit", f"{commit[:12]} is not on {request.ref} of {request.repository}, which points at "
                                f"{peeled[:12]}", "push again to publish")
    return Derived(owner, name, folder, rule, target)
