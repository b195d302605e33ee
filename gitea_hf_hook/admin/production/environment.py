"""The virtual environment under the prefix, and the calls made into it.

The package is installed into it, not linked: pip builds it from a copy of this checkout's source, so the
environment, the hooks and the units never depend on the checkout, which may move, change or go. The copy also
keeps the build's leftovers out of the checkout. The source's digest is recorded, so a run whose source and
interpreter did not change rebuilds nothing; any change (an upgrade) reinstalls the package.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from typing import Any

from ...errors import HookError
from .interpreter import base_interpreter

# What goes into the package: the code, the hook templates, and the top-level files the build reads.
PARTS = ("gitea_hf_hook", "hooks")
SKIP = ("__pycache__",)


def venv_dir(prefix: str) -> str:
    return os.path.join(prefix, "venv")


def _source_files(checkout: str) -> list[str]:
    """The files the package is built from, relative to the checkout, sorted."""
    found = [name for name in os.listdir(checkout)
             if not name.startswith(".") and os.path.isfile(os.path.join(checkout, name))]
    for part in PARTS:
        for folder, dirs, files in os.walk(os.path.join(checkout, part)):
            dirs[:] = sorted(d for d in dirs if d not in SKIP and not d.endswith(".egg-info"))
            found += [os.path.relpath(os.path.join(folder, f), checkout) for f in files if not f.endswith(".pyc")]
    return sorted(found)


def source_digest(checkout: str) -> str:
    """The digest of the source and of the interpreter: what the environment was built from."""
    h = hashlib.sha256(f"{os.path.realpath(base_interpreter())}\0{sys.version}\0".encode())
    for rel in _source_files(checkout):
        with open(os.path.join(checkout, rel), "rb") as f:
            h.update(rel.encode("utf-8", "surrogateescape") + b"\0" + f.read() + b"\0")
    return h.hexdigest()


def _run(argv: list[str], what: str) -> None:
    result = subprocess.run(argv, capture_output=True, text=True)
    if result.returncode != 0:
        tail = [line for line in (result.stderr or result.stdout).strip().splitlines() if line.strip()][-3:]
        raise HookError(f"{what} failed: " + " | ".join(tail), "fix what it says, then run install.sh again")


def build(venv: str, checkout: str) -> None:
    """Make the environment (anew when the interpreter changed) and install this checkout's package into it."""
    python = os.path.join(venv, "bin", "python")
    if not _same_interpreter(venv):
        _run([base_interpreter(), "-m", "venv", "--clear", venv], f"creating the virtual environment {venv}")
    with tempfile.TemporaryDirectory(prefix="gitea-hf-hook-source-") as copy:
        for rel in _source_files(checkout):
            os.makedirs(os.path.join(copy, os.path.dirname(rel)), exist_ok=True)
            shutil.copy2(os.path.join(checkout, rel), os.path.join(copy, rel))
        _run([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-warn-script-location",
              copy + os.sep], f"installing gitea-hf-hook into {venv} (pip install)")


def _same_interpreter(venv: str) -> bool:
    """Whether ``venv`` exists and was made from this interpreter, at this version."""
    try:
        with open(os.path.join(venv, "pyvenv.cfg"), encoding="utf-8") as f:
            cfg = dict(line.split("=", 1) for line in f.read().splitlines() if "=" in line)
    except OSError:
        return False
    values = {k.strip(): v.strip() for k, v in cfg.items()}
    version = ".".join(map(str, sys.version_info[:3]))
    made_from = values.get("executable") or os.path.join(values.get("home", ""), os.path.basename(base_interpreter()))
    return (os.path.isfile(os.path.join(venv, "bin", "python")) and values.get("version") == version
            and os.path.realpath(made_from) == os.path.realpath(base_interpreter()))


def environment(cache: str) -> dict[str, str]:
    """What the environment's commands run with: root's own variables, but a cache folder of this run, so that
    nothing lands in root's home, and no bytecode written into the environment."""
    return {**os.environ, "XDG_CACHE_HOME": cache, "PYTHONDONTWRITEBYTECODE": "1"}


def ask(venv: str, cache: str, code: str, *args: str) -> Any:
    """Run ``code`` in the environment's interpreter; it prints one JSON value, returned here."""
    result = subprocess.run([os.path.join(venv, "bin", "python"), "-I", "-B", "-c", code, *args],
                            capture_output=True, text=True, env=environment(cache))
    if result.returncode != 0:
        tail = (result.stderr.strip().splitlines() or [f"exit status {result.returncode}"])[-1]
        raise HookError(f"{venv}/bin/python failed: {tail}", "run install.sh again; if it fails the same way, "
                        "report it")
    return json.loads(result.stdout)


def command(venv: str, cache: str, config: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``gitea-hf-hook --config CONFIG args...`` from the environment, as root."""
    return subprocess.run([os.path.join(venv, "bin", "gitea-hf-hook"), "--config", config, *args],
                          capture_output=True, text=True, env=environment(cache))
