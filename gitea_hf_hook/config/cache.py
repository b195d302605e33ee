"""The validated config kept as JSON in the hook user's cache folder, keyed by the config file's identity.

Validating needs PyYAML, which costs a push about 10 ms to import; a push whose config did not change reads
this JSON instead. Beside it, ``<cache>.spool`` names the spool in plain text: the post-receive hook needs
nothing else, and reading it costs no import at all (``json`` brings ``re``, several milliseconds).
"""

from __future__ import annotations

import os

# typing costs a push 2 ms to import; annotations are strings here, so only type checkers need it.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# The cache is as old as the code that validated it.
_CODE = tuple(os.path.join(os.path.dirname(os.path.abspath(__file__)), name)
              for name in ("model.py", "schema.py", "load.py"))


def cache_file(path: str) -> str:
    """``~/.cache/gitea-hf-hook/config-<path>.json``, named after the path: hashlib costs 2 ms to import."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    key = os.path.abspath(path).strip(os.sep).replace(os.sep, "_")
    return os.path.join(base, "gitea-hf-hook", f"config-{key}.json")


def stamp(path: str) -> list[int]:
    """What identifies one version of the config file and of our validating code; raises OSError."""
    result = []
    for name in (path, *_CODE):
        st = os.stat(name)
        result += [st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino]
    return result


def read(path: str) -> dict[str, Any] | None:
    """The cached JSON config for ``path``, or None when there is none or the file changed since."""
    import json

    try:
        with open(cache_file(path), encoding="utf-8") as f:
            cached = json.load(f)
        return dict(cached["config"]) if cached["stamp"] == stamp(path) else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write(path: str, data: dict[str, Any]) -> None:
    """Remember ``data`` as the validated config of ``path`` as it is now. A cache we cannot write only costs
    time, so failures are ignored."""
    import json

    cache = cache_file(path)
    try:
        current = stamp(path)
        os.makedirs(os.path.dirname(cache), exist_ok=True)
        for name, text in ((f"{cache}.spool", str(data["spool"])),
                           (cache, json.dumps({"stamp": current, "config": data}))):
            tmp = f"{name}.{os.getpid()}"
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(text)
            os.replace(tmp, name)
    except OSError:
        pass


def spool_dir(path: str) -> str | None:
    """The spool of the config ``path`` had when it was last loaded, or None when it never was."""
    try:
        with open(cache_file(path) + ".spool", encoding="utf-8") as f:
            return f.read() or None
    except OSError:
        return None
