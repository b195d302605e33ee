"""The manifest under the prefix: what the installer made, so that ``--uninstall`` removes that and nothing else.

Only what the installer itself created is listed. A user, a folder or a file that was there before is used as it
is and never listed, so it outlives an uninstall.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field

from ...errors import HookError

NAME = "manifest.json"
VERSION = 1


@dataclass
class Manifest:
    """What one prefix's installs created, across runs."""

    settings: dict[str, str] = field(default_factory=dict)
    users: list[str] = field(default_factory=list)  # accounts it created (useradd)
    folders: list[str] = field(default_factory=list)  # folders it created, each after its parent
    files: dict[str, str] = field(default_factory=dict)  # files it wrote -> sha256 of what it wrote
    data: list[str] = field(default_factory=list)  # those of its folders others fill: spool, tokens, logs, home
    trees: list[str] = field(default_factory=list)  # folders it owns whole: the virtual environment, the template
    source: str = ""  # digest of the source the virtual environment was built from
    hooks: bool = False  # it installed our hooks into the repositories

    def add_folder(self, path: str) -> None:
        if path not in self.folders:
            self.folders.append(path)

    def add_tree(self, path: str) -> None:
        if path not in self.trees:
            self.trees.append(path)


def path(prefix: str) -> str:
    return os.path.join(prefix, NAME)


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def load(prefix: str) -> Manifest | None:
    """The prefix's manifest, or None when nothing was installed there."""
    where = path(prefix)
    try:
        with open(where, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise HookError(f"{where}: cannot read it ({exc})",
                        "restore it from a backup; it lists what the installer made, for --uninstall") from None
    if not isinstance(data, dict) or data.get("version") != VERSION:
        raise HookError(f"{where}: not a manifest this installer knows (version {data.get('version')!r})"
                        if isinstance(data, dict) else f"{where}: not a manifest",
                        "use the installer of the release that wrote it")
    data.pop("version")
    try:
        return Manifest(**data)
    except TypeError as exc:
        raise HookError(f"{where}: not a manifest ({exc})", "restore it from a backup") from None


def text(manifest: Manifest) -> str:
    return json.dumps({"version": VERSION, **asdict(manifest)}, indent=2, sort_keys=True) + "\n"


def save(prefix: str, manifest: Manifest) -> None:
    """Write the manifest (root's, mode 0644) when it changed: a run that changes nothing leaves it alone."""
    where, new = path(prefix), text(manifest)
    try:
        with open(where, encoding="utf-8") as f:
            if f.read() == new:
                return
    except FileNotFoundError:
        pass
    tmp = f"{where}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        os.fchmod(f.fileno(), 0o644)
        f.write(new)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, where)


def remove(prefix: str) -> None:
    try:
        os.unlink(path(prefix))
    except FileNotFoundError:
        pass
