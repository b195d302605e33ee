"""Validation of the config file on PyYAML's node tree, so every error names the line and the key path.

Unknown keys are errors: a typo must never silently switch a check off. Only ``config.load`` imports this
module, and only when its cache of the validated config is stale.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import yaml

from .config import (HINT, PICKLE_MODES, REPO_TYPES, SPACE_SDKS, CardRule, Checks, Config, RepoRule,
                     WorkerSettings, _HUB_NAME)
from .errors import ConfigError
from .globs import check_glob

# --- reading --------------------------------------------------------------------------------------------------

class _Doc:
    """A YAML document being validated: builds errors that name the file, the line and the key path."""

    def __init__(self, path: str, text: str) -> None:
        self.path = path
        self.loader = yaml.SafeLoader(text)

    def error(self, node: yaml.Node | None, where: str, problem: str) -> ConfigError:
        line = f":{node.start_mark.line + 1}" if node is not None else ""
        return ConfigError(f"{self.path}{line}: {where}: {problem}", HINT)

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
        value = self.scalar(node, where, str, "a string")
        if not empty and not value:
            raise self.error(node, where, "must not be empty")
        return value

    def boolean(self, node: yaml.Node, where: str) -> bool:
        return self.scalar(node, where, bool, "true or false")

    def number(self, node: yaml.Node, where: str, *, minimum: float = 0.0) -> float:
        value = self.scalar(node, where, (int, float), "a number")
        if value < minimum or value != value:
            raise self.error(node, where, f"must be at least {minimum:g} (got {value!r})")
        return float(value)

    def choice(self, node: yaml.Node, where: str, choices: tuple[str, ...]) -> str:
        value = self.scalar(node, where, (str, int, float, bool, type(None)), f"one of {', '.join(choices)}")
        if value not in choices:
            raise self.error(node, where, f"must be one of {', '.join(choices)} (got {value!r})")
        return value

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


def _card(doc: _Doc, node: yaml.Node, where: str) -> CardRule | None:
    if isinstance(node, yaml.ScalarNode) and doc.value(node) is False:
        return None
    if isinstance(node, yaml.ScalarNode) and doc.value(node) is True:
        return CardRule()
    keys = doc.mapping(node, where, ("required", "licenses", "metrics"))
    metrics = []
    if "metrics" in keys:
        from .scanners.model_card import parse_threshold

        for name, value_node in doc.mapping(keys["metrics"], f"{where}.metrics", None).items():
            text = doc.string(value_node, f"{where}.metrics.{name}")
            try:
                op, threshold = parse_threshold(text)
            except ValueError as exc:
                raise doc.error(value_node, f"{where}.metrics.{name}", str(exc)) from None
            metrics.append((name, op, threshold))
    return CardRule(
        required=doc.strings(keys["required"], f"{where}.required") if "required" in keys else (),
        licenses=doc.strings(keys["licenses"], f"{where}.licenses") if "licenses" in keys else (),
        metrics=tuple(metrics),
    )


def _checks(doc: _Doc, node: yaml.Node, where: str) -> Checks:
    keys = doc.mapping(node, where, ("model_card", "max_blob_mb", "lfs_objects", "pickle", "safetensors", "json",
                                     "secrets", "forbid"))
    values: dict[str, Any] = {}
    for key, value_node in keys.items():
        at = f"{where}.{key}"
        if key == "model_card":
            values[key] = _card(doc, value_node, at)
        elif key == "max_blob_mb":
            values[key] = doc.number(value_node, at)
        elif key == "pickle":
            values[key] = doc.choice(value_node, at, PICKLE_MODES)
        elif key == "forbid":
            values[key] = doc.strings(value_node, at, check=check_glob)
        else:
            values[key] = doc.boolean(value_node, at)
    return Checks(**values)


def _check_hub_repo(template: str) -> str | None:
    try:
        example = template.format(owner="owner", name="name")
    except (KeyError, IndexError, ValueError):
        return "may use only {owner} and {name}"
    namespace, _, name = example.partition("/")
    if not _HUB_NAME.match(namespace) or not _HUB_NAME.match(name):
        return "must look like namespace/name"
    return None


def _branches(doc: _Doc, node: yaml.Node, where: str) -> tuple[tuple[str, str], ...]:
    result = []
    for branch, value_node in doc.mapping(node, where, None).items():
        if check_glob(branch):
            raise doc.error(value_node, f"{where}.{branch}", check_glob(branch) or "")
        revision = doc.string(value_node, f"{where}.{branch}")
        try:
            revision.format(branch="b")
        except (KeyError, IndexError, ValueError):
            raise doc.error(value_node, f"{where}.{branch}", f"may use only {{branch}} (got {revision!r})") from None
        result.append((branch, revision))
    return tuple(result)


_REPO_KEYS = ("match", "hub_repo", "repo_type", "space_sdk", "private", "create", "branches", "tags", "publishers",
              "require_merge", "allow_deploy_keys", "allow_force_push", "allow_delete", "subdir", "include",
              "exclude", "delete_missing", "checks")


def _publishers(doc: _Doc, node: yaml.Node, where: str, groups: dict[str, tuple[str, ...]]) -> tuple[str, ...]:
    def known(who: str) -> str | None:
        return "names an unknown group" if who.startswith("@") and who[1:] not in groups else None

    return doc.strings(node, where, check=known)


def _repo(doc: _Doc, node: yaml.Node, index: int, groups: dict[str, tuple[str, ...]]) -> RepoRule:
    where = f"repos[{index}]"
    keys = doc.mapping(node, where, _REPO_KEYS)
    if "match" not in keys:
        raise doc.error(node, where, "needs a 'match' key, e.g. match: acme/*")
    values: dict[str, Any] = {"position": index}
    for key, value_node in keys.items():
        at = f"{where}.{key}"
        if key in ("private", "create", "require_merge", "allow_deploy_keys", "allow_force_push", "allow_delete",
                   "delete_missing"):
            values[key] = doc.boolean(value_node, at)
        elif key == "match":
            values[key] = doc.string(value_node, at)
        elif key == "hub_repo":
            values[key] = doc.string(value_node, at)
            if problem := _check_hub_repo(values[key]):
                raise doc.error(value_node, at, f"{problem} (got {values[key]!r})")
        elif key == "repo_type":
            values[key] = doc.choice(value_node, at, REPO_TYPES)
        elif key == "space_sdk":
            values[key] = doc.choice(value_node, at, SPACE_SDKS)
        elif key == "branches":
            values[key] = _branches(doc, value_node, at)
        elif key == "tags":
            values[key] = doc.strings(value_node, at, check=check_glob, scalar_ok=True)
        elif key == "publishers":
            values[key] = _publishers(doc, value_node, at, groups)
        elif key == "subdir":
            subdir = doc.string(value_node, at, empty=True).strip("/")
            if ".." in subdir.split("/"):
                raise doc.error(value_node, at, f"must stay inside the repository (got {subdir!r})")
            values[key] = subdir
        elif key in ("include", "exclude"):
            values[key] = doc.strings(value_node, at, check=check_glob)
        elif key == "checks":
            values[key] = _checks(doc, value_node, at)
    rule = RepoRule(**values)
    if rule.repo_type == "space" and rule.space_sdk is None:
        raise doc.error(node, where, "a space needs space_sdk (one of gradio, streamlit, docker, static)")
    return rule


def _worker(doc: _Doc, node: yaml.Node) -> WorkerSettings:
    keys = doc.mapping(node, "worker", WorkerSettings._fields)
    values: dict[str, Any] = {}
    for key, value_node in keys.items():
        value = doc.number(value_node, f"worker.{key}", minimum=1)
        values[key] = int(value) if key in ("max_attempts", "max_files_per_commit") else value
    return WorkerSettings(**values)


def _groups(doc: _Doc, node: yaml.Node) -> dict[str, tuple[str, ...]]:
    return {name: doc.strings(members, f"groups.{name}") for name, members in doc.mapping(node, "groups", None).items()}


def parse(path: str, text: str) -> Config:
    """Validate the text of a config file; raise ConfigError naming the line and key of the first problem."""
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
    top = doc.mapping(root, "", ("gitea", "hub", "spool", "audit_log", "log_file", "enforce", "groups", "repos",
                                 "worker"))
    values: dict[str, Any] = {"path": path}
    if "gitea" not in top:
        raise doc.error(root, "gitea", "missing; it needs at least repo_root")
    gitea = doc.mapping(top["gitea"], "gitea", ("repo_root", "lfs_root", "url", "token_file"))
    if "repo_root" not in gitea:
        raise doc.error(top["gitea"], "gitea.repo_root", "missing; point it at Gitea's [repository] ROOT")
    values["repo_root"] = doc.path_value(gitea["repo_root"], "gitea.repo_root")
    if "lfs_root" in gitea:
        values["lfs_root"] = doc.path_value(gitea["lfs_root"], "gitea.lfs_root")
    if "url" in gitea:
        values["gitea_url"] = doc.string(gitea["url"], "gitea.url").rstrip("/")
    if "token_file" in gitea:
        values["gitea_token_file"] = doc.path_value(gitea["token_file"], "gitea.token_file")
    if "hub" in top:
        hub = doc.mapping(top["hub"], "hub", ("endpoint", "tokens", "xet"))
        if "endpoint" in hub:
            endpoint = doc.string(hub["endpoint"], "hub.endpoint").rstrip("/")
            if not endpoint.startswith(("https://", "http://")):
                raise doc.error(hub["endpoint"], "hub.endpoint", f"must be an http(s) URL (got {endpoint!r})")
            values["hub_endpoint"] = endpoint
        if "tokens" in hub:
            values["hub_tokens"] = {ns: doc.path_value(n, f"hub.tokens.{ns}")
                                    for ns, n in doc.mapping(hub["tokens"], "hub.tokens", None).items()}
        if "xet" in hub:
            # YAML 1.1 reads a bare `off` as false; that is what the admin meant.
            xet = hub["xet"]
            if isinstance(xet, yaml.ScalarNode) and doc.value(xet) is False:
                values["hub_xet"] = "off"
            else:
                values["hub_xet"] = doc.choice(xet, "hub.xet", ("auto", "off"))
    for key in ("spool", "audit_log", "log_file"):
        if key in top:
            values[key] = doc.path_value(top[key], key)
    if "enforce" in top:
        values["enforce"] = doc.boolean(top["enforce"], "enforce")
    if "groups" in top:
        values["groups"] = _groups(doc, top["groups"])
    if "worker" in top:
        values["worker"] = _worker(doc, top["worker"])
    if "repos" in top:
        if not isinstance(top["repos"], yaml.SequenceNode):
            raise doc.error(top["repos"], "repos", "must be a list of repository rules")
        groups = values.get("groups", {})
        values["repos"] = tuple(_repo(doc, n, i, groups) for i, n in enumerate(top["repos"].value))
    return Config(**values)
