"""The one configuration file: the rules it describes, and loading it fast enough for every push.

Validation lives in ``config_schema`` and needs PyYAML, which costs a push about 10 ms to import. So ``load``
keeps the validated config as JSON in a cache keyed by the file's identity, and a push whose config did not
change never imports PyYAML for it.
"""

from __future__ import annotations

import os
import re
from typing import Any, NamedTuple

from . import config_cache
from .errors import ConfigError
from .globs import compile_name_glob, compile_path_glob

DEFAULT_PATH = "/etc/gitea-hf-hook/config.yaml"
ENV_VAR = "GITEA_HF_HOOK_CONFIG"
HINT = "fix config.yaml; README.md lists every key"
REPO_TYPES = ("model", "dataset", "space")
PICKLE_MODES = ("deny", "allowlist", "allow")
SPACE_SDKS = ("gradio", "streamlit", "docker", "static")
_HUB_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}\Z")


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
    forbid: tuple[str, ...] = ()


class Target(NamedTuple):
    """Where one git ref publishes: a Hub repository and a Hub branch or tag."""

    hub_repo: str
    repo_type: str
    kind: str  # "branch" or "tag"
    name: str  # the git branch or tag name
    revision: str  # the Hub branch, or the Hub tag

    def url(self, endpoint: str) -> str:
        prefix = {"model": "", "dataset": "datasets/", "space": "spaces/"}[self.repo_type]
        return f"{endpoint}/{prefix}{self.hub_repo}"

    def describe(self, endpoint: str) -> str:
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
    hub_endpoint: str = "https://huggingface.co"
    hub_tokens: dict[str, str] = {}  # never mutated
    hub_xet: str = "auto"
    spool: str = "/var/lib/gitea-hf-hook/spool"
    audit_log: str = "/var/lib/gitea-hf-hook/audit.jsonl"
    log_file: str = ""
    enforce: bool = True
    groups: dict[str, tuple[str, ...]] = {}  # never mutated
    repos: tuple[RepoRule, ...] = ()
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


def _read(path: str) -> Config:
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file",
                          f"create it, or point --config or ${ENV_VAR} at one") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it ({exc.strerror})",
                          "make it readable by the user Gitea runs as") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (bad byte at offset {exc.start})", "save it as UTF-8") from None
    from .config_schema import parse

    return parse(path, text)


def _tuples(value: Any) -> Any:
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def to_json(config: Config) -> dict[str, Any]:
    """The config as plain JSON data (NamedTuples become objects, tuples lists)."""
    def plain(value: Any) -> Any:
        if hasattr(value, "_asdict"):
            return {k: plain(v) for k, v in value._asdict().items()}
        if isinstance(value, (tuple, list)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(config)


def from_json(data: dict[str, Any]) -> Config:
    """The inverse of ``to_json``."""
    repos = []
    for rule in data["repos"]:
        checks = dict(rule["checks"])
        card = checks["model_card"]
        checks["model_card"] = None if card is None else CardRule(**{k: _tuples(v) for k, v in card.items()})
        checks["forbid"] = _tuples(checks["forbid"])
        fields = {k: _tuples(v) for k, v in rule.items() if k != "checks"}
        repos.append(RepoRule(**fields, checks=Checks(**checks)))
    return Config(**{**data, "repos": tuple(repos), "worker": WorkerSettings(**data["worker"]),
                     "groups": {k: tuple(v) for k, v in data["groups"].items()}})


def load(path: str) -> Config:
    """Read and validate the config file at ``path``, from the cache when the file has not changed."""
    cached = config_cache.read(path)
    if cached is not None:
        try:
            return from_json(cached)
        except (KeyError, TypeError):
            pass  # written by another version: validate afresh
    config = _read(path)
    config_cache.write(path, to_json(config))
    return config


def might_publish(path: str, full_name: str, ref: str) -> bool:
    """For a config that does not load: whether ``ref`` may publish, erring towards yes.

    A broken config must fail closed for publishing refs and leave the others alone, yet the rules that say
    which refs publish are in the broken file. This reads what it can of ``repos`` without validation; where
    even that is unreadable, every branch and tag counts as publishing.
    """
    if not ref.startswith(("refs/heads/", "refs/tags/")):
        return False
    try:
        import yaml

        with open(path, "rb") as f:
            data = yaml.safe_load(f)
        repos = data["repos"]
        for entry in repos:
            if not compile_name_glob(entry["match"], ignore_case=True).match(full_name):
                continue
            if ref.startswith("refs/heads/"):
                return any(compile_name_glob(b).match(ref[len("refs/heads/"):])
                           for b in entry.get("branches", {"main": "main"}))
            tags = entry.get("tags", ())
            return any(compile_name_glob(t).match(ref[len("refs/tags/"):]) for t in ([tags] if isinstance(tags, str) else tags))
        return False
    except Exception:  # noqa: BLE001 - any shape we cannot read means "cannot tell", so: publishing
        return True
