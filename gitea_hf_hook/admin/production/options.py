"""What ``install.sh`` is asked to do: its command line, the defaults, and the settings a prefix keeps.

The settings (prefix, config path, users, the worker's home, the unit folder) are recorded in the prefix's
manifest on the first install. A later run that names none of them reuses them, so that an upgrade is the same
short command; one that names another value is refused, since the hooks, the units and the spool's owner all
carry the first ones.
"""

from __future__ import annotations

import argparse
import os
from typing import NamedTuple

from ...errors import HookError

PREFIX = "/opt/gitea-hf-hook"
CONFIG = "/etc/gitea-hf-hook/config.yaml"
HOOK_USER = "git"
WORKER_USER = "hf-publish"
UNIT_DIR = "/etc/systemd/system"
REPO_ROOT = "/var/lib/gitea/data/gitea-repositories"
LFS_ROOT = "/var/lib/gitea/data/lfs"
STATE_DIR = "/var/lib/gitea-hf-hook"
LOG_DIR = "/var/log/gitea-hf-hook"


class Settings(NamedTuple):
    """What a prefix was installed with; fixed for its life."""

    prefix: str
    config: str
    hook_user: str
    worker_user: str
    worker_home: str  # where the worker's user's home is made when the installer creates that user
    unit_dir: str


class Example(NamedTuple):
    """The paths written into the example config, when there is no config yet."""

    repo_root: str
    lfs_root: str
    state_dir: str
    log_dir: str


class Request(NamedTuple):
    """One run of install.sh."""

    uninstall: bool
    purge: bool
    given: dict[str, str]  # the settings named on the command line
    example: Example


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="install.sh", description="Install gitea-hf-hook on this server, or upgrade it (run it again), or "
        "remove it (--uninstall). Run it as root. README.md, 'Production install', walks through it.",
        epilog="Also: ./install.sh --test (a development copy in ./.venv, and the tests), ./install.sh --demo.")
    parser.add_argument("--prefix", metavar="DIR", help=f"where it installs [{PREFIX}]")
    parser.add_argument("--config", metavar="PATH", help=f"the config file [{CONFIG}]")
    parser.add_argument("--hook-user", metavar="USER",
                        help=f"the user Gitea runs as, which runs the hooks [{HOOK_USER}]")
    parser.add_argument("--worker-user", metavar="USER",
                        help=f"the worker's user, created when missing [{WORKER_USER}]")
    parser.add_argument("--worker-home", metavar="DIR",
                        help="the worker's home, when the installer creates its user [/var/lib/<worker-user>]")
    parser.add_argument("--unit-dir", metavar="DIR", help=f"where the systemd units go [{UNIT_DIR}]")
    example = parser.add_argument_group("the example config, written only when there is no config yet")
    example.add_argument("--repo-root", metavar="DIR", default=REPO_ROOT,
                         help=f"Gitea's [repository] ROOT [{REPO_ROOT}]")
    example.add_argument("--lfs-root", metavar="DIR", default=LFS_ROOT, help=f"Gitea's [lfs] PATH [{LFS_ROOT}]")
    example.add_argument("--state-dir", metavar="DIR", default=STATE_DIR,
                         help=f"the spool and the audit log go here [{STATE_DIR}]")
    example.add_argument("--log-dir", metavar="DIR", default=LOG_DIR, help=f"the hooks' log [{LOG_DIR}]")
    parser.add_argument("--uninstall", action="store_true",
                        help="remove what the installer added; the config, if edited, and a spool holding jobs stay")
    parser.add_argument("--purge", action="store_true", help="with --uninstall: remove those too")
    return parser


def _absolute(option: str, value: str) -> str:
    if not os.path.isabs(value):
        raise HookError(f"{option} {value}: not an absolute path", f"e.g. {option} /{value.lstrip('./')}")
    return os.path.normpath(value)


def parse(argv: list[str]) -> Request:
    """The request on the command line; argparse exits 2 on a malformed one, as any command does."""
    args = _parser().parse_args(argv)
    if args.purge and not args.uninstall:
        raise HookError("--purge goes with --uninstall", "run ./install.sh --uninstall --purge")
    given = {}
    for field in Settings._fields:
        value = getattr(args, field)
        if value is not None:
            option = "--" + field.replace("_", "-")
            given[field] = value if field.endswith("_user") else _absolute(option, value)
    example = Example(*(_absolute("--" + f.replace("_", "-"), getattr(args, f)) for f in Example._fields))
    return Request(args.uninstall, args.purge, given, example)


def settings(given: dict[str, str], recorded: dict[str, str] | None) -> Settings:
    """The settings of this run: those recorded for the prefix, else those given, else the defaults. A given value
    that differs from the recorded one is refused."""
    prefix = given.get("prefix", PREFIX)
    for field, value in given.items():
        if recorded and field in recorded and recorded[field] != value:
            option = "--" + field.replace("_", "-")
            raise HookError(f"{prefix} was installed with {option} {recorded[field]}, not {value}",
                            f"run ./install.sh again without {option}; to change it, run ./install.sh --uninstall "
                            f"--prefix {prefix} first")
    defaults = {"prefix": prefix, "config": CONFIG, "hook_user": HOOK_USER, "worker_user": WORKER_USER,
                "worker_home": "", "unit_dir": UNIT_DIR}
    values = {**defaults, **(recorded or {}), **given}
    return Settings(**{field: values[field] for field in Settings._fields})
