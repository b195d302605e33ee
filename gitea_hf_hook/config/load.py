"""Loading the config fast enough for every push: from a JSON cache of the validated file when it did not change.

Validation lives in :mod:`.schema` and needs PyYAML, which costs a push about 10 ms to import. So :func:`load`
keeps the validated config as JSON in a cache keyed by the file's identity (:mod:`.cache`), and a push whose
config did not change never imports PyYAML for it.
"""

from __future__ import annotations

import os
import stat
from typing import Any

from ..errors import ConfigError
from . import cache
from .model import ENV_VAR, CardRule, Checks, Config, Limits, RepoRule, WorkerSettings


def _read(path: str) -> Config:
    try:
        # Not blocking: a FIFO at the path (say, one given to config check) must not hold the reader.
        with open(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise ConfigError(f"{path}: not a regular file", "point --config or "
                                  f"${ENV_VAR} at the config file itself")
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
    from .schema import parse

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

    data: dict[str, Any] = plain(config)
    return data


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
                     "limits": Limits(**data["limits"]), "groups": {k: tuple(v) for k, v in data["groups"].items()}})


def load(path: str, *, cached: bool = True) -> Config:
    """Read and validate the config file at ``path``, from the cache when the file has not changed.

    ``cached=False`` reads and validates the file itself and neither reads nor writes the cache. The worker loads
    so: a cache is only as trustworthy as the home folder it lives in, and whoever can write there could forge it.
    """
    if not cached:
        return _read(path)
    remembered = cache.read(path)
    if remembered is not None:
        try:
            return from_json(remembered)
        except (KeyError, TypeError):
            pass  # written by another version: validate afresh
    try:
        read_at: list[int] | None = cache.stamp(path)  # before the read: see cache.write
    except OSError:
        read_at = None  # _read says why
    config = _read(path)
    if read_at is not None:
        cache.write(path, to_json(config), read_at)
    return config
