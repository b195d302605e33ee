"""Validation of the config file on PyYAML's node tree, so every error names the line and the key path.

The schema is data: one table per section maps each key to the record field it fills and the validator that
reads it, and the known-key lists come from those tables. Unknown keys are errors: a typo must never silently
switch a check off. Only :mod:`.load` imports this module, and only when its cache of the validated config is
stale.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable
from typing import Any

import yaml

from ..errors import ConfigError
from ..redact import redact
from .globs import check_glob
from .model import (
    HINT,
    HUB_NAME,
    PICKLE_MODES,
    REPO_TYPES,
    SPACE_SDKS,
    SYSLOG_FACILITIES,
    CardRule,
    Checks,
    Config,
    Limits,
    RepoRule,
    WorkerSettings,
)

# --- reading --------------------------------------------------------------------------------------------------

class _Doc:
    """A YAML document being validated: builds errors that name the file, the line and the key path."""

    def __init__(self, path: str, text: str) -> None:
        self.path = path
        self.loader = yaml.SafeLoader(text)
        self.groups: dict[str, tuple[str, ...]] = {}  # read before repos, whose publishers name them

    def error(self, node: yaml.Node | None, where: str, problem: str) -> ConfigError:
        line = f":{node.start_mark.line + 1}" if node is not None else ""
        # The value quoted may be a token pasted where its file's path belongs, and a broken config's error is
        # shown to every pusher of a publishing ref.
        return ConfigError(f"{self.path}{line}: {where}: {redact(problem)}", HINT)

    def value(self, node: yaml.Node) -> Any:
        return self.loader.construct_object(node, deep=True)

    def mapping(self, node: yaml.Node, where: str, known: tuple[str, ...] | None) -> dict[str, yaml.Node]:
        if not isinstance(node, yaml.MappingNode):
            raise self.error(node, where, "must be a mapping of keys to values")
        result: dict[str, yaml.Node] = {}
        for key_node, value_node in node.value:
            key = self.value(key_node)
            if not isinstance(key, str):
                raise self.error(key_node, where, f"keys must be strings (got {key!r})")
            path = f"{where}.{key}" if where else key
            if key in result:
                raise self.error(key_node, path, "appears twice")
            if known is not None and key not in known:
                import difflib  # only on the error path

                close = difflib.get_close_matches(key, known, n=1)
                guess = f"; did you mean '{close[0]}'?" if close else f"; known keys: {', '.join(known)}"
                raise self.error(key_node, path, f"unknown key{guess}")
            result[key] = value_node
        return result

    def scalar(self, node: yaml.Node, where: str, kind: type | tuple[type, ...], what: str) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            shape = "a list" if isinstance(node, yaml.SequenceNode) else "a mapping"
            raise self.error(node, where, f"must be {what} (got {shape})")
        value = self.value(node)
        # YAML's true/false are ints to Python; a number key must not accept them.
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            raise self.error(node, where, f"must be {what} (got {value!r})")
        return value

    def string(self, node: yaml.Node, where: str, *, empty: bool = False) -> str:
        value: str = self.scalar(node, where, str, "a string")
        if not empty and not value:
            raise self.error(node, where, "must not be empty")
        return value

    def boolean(self, node: yaml.Node, where: str) -> bool:
        value: bool = self.scalar(node, where, bool, "true or false")
        return value

    def number(self, node: yaml.Node, where: str, *, minimum: float = 0.0) -> float:
        value = self.scalar(node, where, (int, float), "a number")
        if value < minimum or value != value:
            raise self.error(node, where, f"must be at least {minimum:g} (got {value!r})")
        return float(value)

    def choice(self, node: yaml.Node, where: str, choices: tuple[str, ...]) -> str:
        value = self.scalar(node, where, (str, int, float, bool, type(None)), f"one of {', '.join(choices)}")
        if value not in choices:
            raise self.error(node, where, f"must be one of {', '.join(choices)} (got {value!r})")
        return str(value)

    def strings(self, node: yaml.Node, where: str, *, check: Callable[[str], str | None] | None = None,
                scalar_ok: bool = False) -> tuple[str, ...]:
        if scalar_ok and isinstance(node, yaml.ScalarNode):
            items = [node]
        elif isinstance(node, yaml.SequenceNode):
            items = node.value
        else:
            raise self.error(node, where, "must be a list of strings")
        result = []
        for i, item in enumerate(items):
            item_where = f"{where}[{i}]" if not scalar_ok or isinstance(node, yaml.SequenceNode) else where
            text = self.string(item, item_where)
            problem = check(text) if check else None
            if problem:
                raise self.error(item, item_where, f"{problem} (got {text!r})")
            result.append(text)
        return tuple(result)

    def path_value(self, node: yaml.Node, where: str) -> str:
        value = self.string(node, where)
        if not os.path.isabs(value):
            raise self.error(node, where, f"must be an absolute path (got {value!r})")
        return value


# --- validators: (doc, node, key path) -> value ----------------------------------------------------------------

Validator = Callable[[_Doc, yaml.Node, str], Any]


def _string(doc: _Doc, node: yaml.Node, where: str) -> str:
    return doc.string(node, where)


def _boolean(doc: _Doc, node: yaml.Node, where: str) -> bool:
    return doc.boolean(node, where)


def _number(doc: _Doc, node: yaml.Node, where: str) -> float:
    return doc.number(node, where)


def _path(doc: _Doc, node: yaml.Node, where: str) -> str:
    return doc.path_value(node, where)


def _choice(choices: tuple[str, ...]) -> Validator:
    return lambda doc, node, where: doc.choice(node, where, choices)


def _strings(doc: _Doc, node: yaml.Node, where: str) -> tuple[str, ...]:
    return doc.strings(node, where)


def _globs(doc: _Doc, node: yaml.Node, where: str) -> tuple[str, ...]:
    return doc.strings(node, where, check=check_glob)


def _glob_or_globs(doc: _Doc, node: yaml.Node, where: str) -> tuple[str, ...]:
    return doc.strings(node, where, check=check_glob, scalar_ok=True)


def _url(doc: _Doc, node: yaml.Node, where: str) -> str:
    return doc.string(node, where).rstrip("/")


def _endpoint(doc: _Doc, node: yaml.Node, where: str) -> str:
    endpoint = _url(doc, node, where)
    if not endpoint.startswith(("https://", "http://")):
        raise doc.error(node, where, f"must be an http(s) URL (got {endpoint!r})")
    return endpoint


def _tokens(doc: _Doc, node: yaml.Node, where: str) -> dict[str, str]:
    return {ns: doc.path_value(n, f"{where}.{ns}") for ns, n in doc.mapping(node, where, None).items()}


def _xet(doc: _Doc, node: yaml.Node, where: str) -> str:
    # YAML 1.1 reads a bare `off` as false; that is what the admin meant.
    if isinstance(node, yaml.ScalarNode) and doc.value(node) is False:
        return "off"
    return doc.choice(node, where, ("auto", "off"))


def _syslog(doc: _Doc, node: yaml.Node, where: str) -> str:
    # true is the auth facility, false none; else a facility by name.
    if isinstance(node, yaml.ScalarNode) and isinstance(doc.value(node), bool):
        return "auth" if doc.value(node) else ""
    return doc.choice(node, where, SYSLOG_FACILITIES)


def _groups(doc: _Doc, node: yaml.Node, where: str) -> dict[str, tuple[str, ...]]:
    doc.groups = {name: doc.strings(members, f"{where}.{name}")
                  for name, members in doc.mapping(node, where, None).items()}
    return doc.groups


def _publishers(doc: _Doc, node: yaml.Node, where: str) -> tuple[str, ...]:
    def known(who: str) -> str | None:
        return "names an unknown group" if who.startswith("@") and who[1:] not in doc.groups else None

    return doc.strings(node, where, check=known)


def _hub_repo(doc: _Doc, node: yaml.Node, where: str) -> str:
    template = doc.string(node, where)
    try:
        example = template.format(owner="owner", name="name")
    except (KeyError, IndexError, ValueError, AttributeError):  # "{owner.x}" asks for an attribute
        raise doc.error(node, where, f"may use only {{owner}} and {{name}} (got {template!r})") from None
    namespace, _, name = example.partition("/")
    if not HUB_NAME.match(namespace) or not HUB_NAME.match(name):
        raise doc.error(node, where, f"must look like namespace/name (got {template!r})")
    return template


def _branches(doc: _Doc, node: yaml.Node, where: str) -> tuple[tuple[str, str], ...]:
    result = []
    for branch, value_node in doc.mapping(node, where, None).items():
        if problem := check_glob(branch):
            raise doc.error(value_node, f"{where}.{branch}", problem)
        revision = doc.string(value_node, f"{where}.{branch}")
        try:
            revision.format(branch="b")
        except (KeyError, IndexError, ValueError, AttributeError):  # "{branch.x}" asks for an attribute
            raise doc.error(value_node, f"{where}.{branch}", f"may use only {{branch}} (got {revision!r})") from None
        result.append((branch, revision))
    return tuple(result)


def _subdir(doc: _Doc, node: yaml.Node, where: str) -> str:
    subdir = doc.string(node, where, empty=True).strip("/")
    if ".." in subdir.split("/"):
        raise doc.error(node, where, f"must stay inside the repository (got {subdir!r})")
    return subdir


_THRESHOLD = re.compile(r"\s*(>=|<=|==|>|<)\s*([-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)\s*")


def parse_threshold(text: str) -> tuple[str, float]:
    """Parse a configured threshold such as ``">= 0.9"`` or ``"< 1e-3"`` into ``(operator, number)``.

    Raises ValueError naming the expected form when ``text`` is not an operator followed by a finite number.
    """
    match = _THRESHOLD.fullmatch(text)
    if match is None:
        raise ValueError(f"invalid threshold '{text}': expected an operator (>=, >, <=, <, ==) and a number, "
                         'like ">= 0.9"')
    value = float(match.group(2))
    if not math.isfinite(value):  # "1e999" overflows to inf: no metric can meaningfully be compared to it
        raise ValueError(f"invalid threshold '{text}': the number must be finite")
    return match.group(1), value


def _metrics(doc: _Doc, node: yaml.Node, where: str) -> tuple[tuple[str, str, float], ...]:
    metrics = []
    for name, value_node in doc.mapping(node, where, None).items():
        text = doc.string(value_node, f"{where}.{name}")
        try:
            op, threshold = parse_threshold(text)
        except ValueError as exc:
            raise doc.error(value_node, f"{where}.{name}", str(exc)) from None
        metrics.append((name, op, threshold))
    return tuple(metrics)


def _whole(doc: _Doc, node: yaml.Node, where: str) -> int:
    return int(doc.number(node, where, minimum=1))


def _positive(doc: _Doc, node: yaml.Node, where: str) -> float:
    return doc.number(node, where, minimum=1)


def _seconds(doc: _Doc, node: yaml.Node, where: str) -> float:
    return doc.number(node, where, minimum=0.1)


# --- the schema -------------------------------------------------------------------------------------------------

# A section: YAML key -> (field of the record it fills, validator). Keys absent from the file keep the record's
# default. `match` and friends are required where the builder below says so.
Section = dict[str, tuple[str, Validator]]


def _read_section(doc: _Doc, node: yaml.Node, where: str, section: Section) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key, value_node in doc.mapping(node, where, tuple(section)).items():
        field, validate = section[key]
        values[field] = validate(doc, value_node, f"{where}.{key}" if where else key)
    return values


def _record(section: Section, build: Callable[..., Any]) -> Validator:
    return lambda doc, node, where: build(**_read_section(doc, node, where, section))


def _model_card(doc: _Doc, node: yaml.Node, where: str) -> CardRule | None:
    if isinstance(node, yaml.ScalarNode) and doc.value(node) is False:
        return None
    if isinstance(node, yaml.ScalarNode) and doc.value(node) is True:
        return CardRule()
    return CardRule(**_read_section(doc, node, where, CARD))


CARD: Section = {"required": ("required", _strings), "licenses": ("licenses", _strings),
                 "metrics": ("metrics", _metrics)}
CHECKS: Section = {
    "model_card": ("model_card", _model_card), "max_blob_mb": ("max_blob_mb", _number),
    "lfs_objects": ("lfs_objects", _boolean), "pickle": ("pickle", _choice(PICKLE_MODES)),
    "safetensors": ("safetensors", _boolean), "json": ("json", _boolean), "secrets": ("secrets", _boolean),
    "lfs_secrets_mb": ("lfs_secrets_mb", _number), "forbid": ("forbid", _globs),
}
REPO: Section = {
    "match": ("match", _string), "branches": ("branches", _branches), "tags": ("tags", _glob_or_globs),
    "hub_repo": ("hub_repo", _hub_repo), "repo_type": ("repo_type", _choice(REPO_TYPES)),
    "space_sdk": ("space_sdk", _choice(SPACE_SDKS)), "private": ("private", _boolean),
    "create": ("create", _boolean), "publishers": ("publishers", _publishers),
    "require_merge": ("require_merge", _boolean), "allow_deploy_keys": ("allow_deploy_keys", _boolean),
    "allow_force_push": ("allow_force_push", _boolean), "allow_delete": ("allow_delete", _boolean),
    "subdir": ("subdir", _subdir), "include": ("include", _globs), "exclude": ("exclude", _globs),
    "delete_missing": ("delete_missing", _boolean), "adopt": ("adopt", _boolean),
    "checks": ("checks", _record(CHECKS, Checks)),
}
WORKER: Section = {name: (name, _whole if name in ("max_attempts", "max_files_per_commit") else _positive)
                   for name in WorkerSettings._fields}
LIMITS: Section = {"max_refs": ("max_refs", _whole), "max_files": ("max_files", _whole),
                   "max_scan_mb": ("max_scan_mb", _positive), "deadline_seconds": ("deadline_seconds", _seconds)}
GITEA: Section = {"repo_root": ("repo_root", _path), "lfs_root": ("lfs_root", _path), "url": ("gitea_url", _url),
                  "token_file": ("gitea_token_file", _path), "verify_lfs": ("gitea_verify_lfs", _boolean),
                  "statuses": ("gitea_statuses", _boolean)}
HUB: Section = {"endpoint": ("hub_endpoint", _endpoint), "tokens": ("hub_tokens", _tokens),
                "xet": ("hub_xet", _xet), "rotate_after_days": ("hub_rotate_after_days", _positive)}
# The top level: gitea and hub are flattened into Config's own fields; groups come before repos on purpose.
TOP: dict[str, Section | tuple[str, Validator]] = {
    "gitea": GITEA, "hub": HUB, "spool": ("spool", _path), "audit_log": ("audit_log", _path),
    "audit_syslog": ("audit_syslog", _syslog),
    "log_file": ("log_file", _path), "enforce": ("enforce", _boolean), "groups": ("groups", _groups),
    "metrics_file": ("metrics_file", _path),
    "repos": ("repos", lambda doc, node, where: _repos(doc, node, REPO, _rule)),
    "limits": ("limits", _record(LIMITS, Limits)),
    "worker": ("worker", _record(WORKER, WorkerSettings)),
}


def _rule(doc: _Doc, node: yaml.Node, index: int, section: Section) -> RepoRule:
    where = f"repos[{index}]"
    values = _read_section(doc, node, where, section) if isinstance(node, yaml.MappingNode) else None
    if values is None:
        raise doc.error(node, where, "must be a mapping of keys to values")
    if "match" not in values:
        raise doc.error(node, where, "needs a 'match' key, e.g. match: acme/*")
    rule = RepoRule(position=index, **values)
    if rule.repo_type == "space" and rule.space_sdk is None:
        raise doc.error(node, where, "a space needs space_sdk (one of gradio, streamlit, docker, static)")
    return rule


def _repos(doc: _Doc, node: yaml.Node, section: Section,
           rule: Callable[[_Doc, yaml.Node, int, Section], RepoRule]) -> tuple[RepoRule, ...]:
    if not isinstance(node, yaml.SequenceNode):
        raise doc.error(node, "repos", "must be a list of repository rules")
    return tuple(rule(doc, n, i, section) for i, n in enumerate(node.value))


def _root(path: str, text: str) -> tuple[_Doc, yaml.Node]:
    doc = _Doc(path, text)
    try:
        root = doc.loader.get_single_node()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise ConfigError(f"{path}{line}: not valid YAML: {problem}", HINT) from None
    if root is None:
        raise ConfigError(f"{path}: the file is empty", "it needs at least gitea.repo_root; README.md shows an example")
    return doc, root


def parse(path: str, text: str) -> Config:
    """Validate the text of a config file; raise ConfigError naming the line and key of the first problem."""
    doc, root = _root(path, text)
    top = doc.mapping(root, "", tuple(TOP))
    if "gitea" not in top:
        raise doc.error(root, "gitea", "missing; it needs at least repo_root")
    values: dict[str, Any] = {"path": path}
    # Groups first, whatever the order in the file: publishers are checked against them.
    for key in sorted(top, key=lambda k: k != "groups"):
        entry = TOP[key]
        if isinstance(entry, dict):
            values.update(_read_section(doc, top[key], key, entry))
        else:
            field, validate = entry
            values[field] = validate(doc, top[key], key)
    if "repo_root" not in values:
        raise doc.error(top["gitea"], "gitea.repo_root", "missing; point it at Gitea's [repository] ROOT")
    return Config(**values)
