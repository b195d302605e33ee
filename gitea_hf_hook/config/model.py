"""The configuration as typed records: the rules it describes, and the names derived from them.

Reading the file is :mod:`.load`'s job and validating it :mod:`.schema`'s; this module holds only the records,
so every layer can name them without paying for YAML.
"""

from __future__ import annotations

import os
import re
from typing import NamedTuple

from .globs import compile_name_glob, compile_path_glob

DEFAULT_PATH = "/etc/gitea-hf-hook/config.yaml"
ENV_VAR = "GITEA_HF_HOOK_CONFIG"
HINT = "fix config.yaml; README.md lists every key"
REPO_TYPES = ("model", "dataset", "space")
PICKLE_MODES = ("deny", "allowlist", "allow")
SPACE_SDKS = ("gradio", "streamlit", "docker", "static")
# The syslog facilities audit_syslog may name; `true` means auth, as for other security records.
SYSLOG_FACILITIES = ("auth", "authpriv", "daemon", "user", *(f"local{n}" for n in range(8)))
HUB_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}\Z")
# The client refuses these path segments (huggingface_hub's _validate_path_in_repo and FORBIDDEN_FOLDERS).
FORBIDDEN_SEGMENTS = (".git", ".cache")
# How the Hub spells a repository in URLs and API paths, by type.
_URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}


def hub_repo_path(repo_type: str, hub_repo: str) -> str:
    """``acme/bert``, ``datasets/acme/corpus`` or ``spaces/acme/demo``: the repository as the Hub's URLs name it."""
    return _URL_PREFIX.get(repo_type, f"{repo_type}s/") + hub_repo


def unfit(path: str) -> str | None:
    """Why the Hub cannot hold ``path`` (from :meth:`RepoRule.hub_path`), or None when it can.

    The pre-receive hook rejects a push that carries such a path inside a rule's scope, so that no file passes
    every check and is then never published.
    """
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return "file name is not valid UTF-8, which the Hub requires"
    for segment in path.split("/"):
        if not segment:
            return "the Hub cannot hold a path with an empty segment"
        if segment in (".", ".."):
            return f"the Hub cannot hold a path with a '{segment}' segment"
        if segment in FORBIDDEN_SEGMENTS:
            return f"the Hub cannot hold a file or folder named {segment}"
    return None


class CardRule(NamedTuple):
    """What the model card (README.md front matter) must hold."""

    required: tuple[str, ...] = ()
    licenses: tuple[str, ...] = ()
    metrics: tuple[tuple[str, str, float], ...] = ()  # (metric, operator, threshold)


class Checks(NamedTuple):
    """Content checks applied to what a push would publish."""

    model_card: CardRule | None = CardRule()
    max_blob_mb: float = 10.0
    lfs_objects: bool = True
    pickle: str = "deny"
    safetensors: bool = True
    json: bool = True
    secrets: bool = True
    lfs_secrets_mb: float = 64.0  # Git LFS objects up to this size are scanned for secrets too
    forbid: tuple[str, ...] = ()


class Target(NamedTuple):
    """Where one git ref publishes: a Hub repository and a Hub branch or tag."""

    hub_repo: str
    repo_type: str
    kind: str  # "branch" or "tag"
    name: str  # the git branch or tag name
    revision: str  # the Hub branch, or the Hub tag

    @property
    def repo_path(self) -> str:
        """The Hub repository with its type prefix, as in its URL."""
        return hub_repo_path(self.repo_type, self.hub_repo)

    @property
    def label(self) -> str:
        """``datasets/acme/corpus branch main``: how logs and the queue commands name the target."""
        return f"{self.repo_path} {self.kind} {self.revision}"

    def url(self, endpoint: str) -> str:
        return f"{endpoint}/{self.repo_path}"

    def describe(self, endpoint: str) -> str:
        """How a pusher reads the target: its URL, then the Hub branch or tag."""
        return f"{self.url(endpoint)} ({self.kind} {self.revision})"


class RepoRule(NamedTuple):
    """One entry of ``repos``: which Gitea repositories publish where, by whom, and under which checks."""

    position: int  # in the repos list, for messages
    match: str
    hub_repo: str = "{owner}/{name}"
    repo_type: str = "model"
    space_sdk: str | None = None
    private: bool = True
    create: bool = True
    branches: tuple[tuple[str, str], ...] = (("main", "main"),)
    tags: tuple[str, ...] = ()
    publishers: tuple[str, ...] = ()
    require_merge: bool = False
    allow_deploy_keys: bool = False
    allow_force_push: bool = False
    allow_delete: bool = False
    subdir: str = ""
    include: tuple[str, ...] = ("**",)
    exclude: tuple[str, ...] = ()
    delete_missing: bool = True
    adopt: bool = False  # a first publish may go into a Hub repository that already holds files
    checks: Checks = Checks()

    def matches(self, full_name: str) -> bool:
        return compile_name_glob(self.match, ignore_case=True).match(full_name) is not None

    def hub_repo_for(self, owner: str, name: str) -> str:
        return self.hub_repo.format(owner=owner, name=name)

    def target(self, owner: str, name: str, ref: str) -> Target | None:
        """The Hub target of a git ref, or None when the ref does not publish."""
        if ref.startswith("refs/heads/"):
            branch = ref[len("refs/heads/"):]
            for pattern, revision in self.branches:
                if compile_name_glob(pattern).match(branch):
                    return Target(self.hub_repo_for(owner, name), self.repo_type, "branch", branch,
                                  revision.format(branch=branch))
        elif ref.startswith("refs/tags/"):
            tag = ref[len("refs/tags/"):]
            if any(compile_name_glob(p).match(tag) for p in self.tags):
                return Target(self.hub_repo_for(owner, name), self.repo_type, "tag", tag, tag)
        return None

    def publishes(self, path: str) -> bool:
        """Whether a path relative to ``subdir`` is published under ``include`` and ``exclude``."""
        return (any(compile_path_glob(p).match(path) for p in self.include)
                and not any(compile_path_glob(p).match(path) for p in self.exclude))

    def hub_path(self, raw: bytes) -> str | None:
        """Where a git path lands on the Hub: under ``subdir``, if ``include`` and ``exclude`` publish it; else None.

        This is the one mapping push time and the worker share. Undecodable bytes survive as surrogates, so the
        caller can still name the path; :func:`unfit` refuses it.
        """
        path = raw.decode("utf-8", "surrogateescape")
        if self.subdir:
            if not path.startswith(self.subdir + "/"):
                return None
            path = path[len(self.subdir) + 1:]
        return path if self.publishes(path) else None


class Limits(NamedTuple):
    """The most one push may make the pre-receive hook do: past any of them it fails closed, naming the key.

    Anyone who may push reaches the checks, read-only users included, so no push may cost the server more than
    these, whatever it holds.
    """

    max_refs: int = 100  # publishing refs one push may update
    max_files: int = 100_000  # files listed across those refs
    max_scan_mb: float = 4096.0  # content read and scanned, each object counted once
    deadline_seconds: float = 60.0  # the whole evaluation


class WorkerSettings(NamedTuple):
    """How the worker retries, batches and keeps its history."""

    max_attempts: int = 8
    max_age_hours: float = 24.0
    backoff_seconds: float = 10.0
    backoff_max_seconds: float = 900.0
    timeout_seconds: float = 60.0
    max_files_per_commit: int = 5000
    keep_done_days: float = 14.0


class Config(NamedTuple):
    """The validated configuration."""

    path: str
    repo_root: str
    lfs_root: str = "/var/lib/gitea/data/lfs"
    gitea_url: str = ""
    gitea_token_file: str = ""
    gitea_verify_lfs: bool = True  # ask Gitea that each LFS object belongs to the repository before uploading it
    gitea_statuses: bool = True  # post each job's outcome as a commit status (with url and token_file)
    hub_endpoint: str = "https://huggingface.co"
    hub_tokens: dict[str, str] = {}  # never mutated
    hub_xet: str = "auto"
    hub_rotate_after_days: float = 90.0  # doctor warns about a Hub token older than this, when the Hub says its age
    spool: str = "/var/lib/gitea-hf-hook/spool"
    audit_log: str = "/var/lib/gitea-hf-hook/audit.jsonl"
    audit_syslog: str = ""  # a syslog facility each audit record is also sent to; "" sends none
    log_file: str = ""
    metrics_file: str = ""  # the worker writes its figures there after each pass, in the Prometheus text format
    enforce: bool = True
    groups: dict[str, tuple[str, ...]] = {}  # never mutated
    repos: tuple[RepoRule, ...] = ()
    limits: Limits = Limits()
    worker: WorkerSettings = WorkerSettings()

    def rule_for(self, full_name: str) -> RepoRule | None:
        """The first ``repos`` entry whose ``match`` fits ``owner/name``."""
        for rule in self.repos:
            if rule.matches(full_name):
                return rule
        return None

    @property
    def hook_log(self) -> str:
        return self.log_file or os.path.join(os.path.dirname(self.audit_log) or ".", "hook.log")




def config_path(explicit: str | None = None) -> str:
    """The option's path, else ``$GITEA_HF_HOOK_CONFIG``, else ``/etc/gitea-hf-hook/config.yaml``."""
    return explicit or os.environ.get(ENV_VAR) or DEFAULT_PATH
