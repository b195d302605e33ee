"""The post-receive hook: queue the jobs pre-receive prepared, and tell the pusher. Never fails the push.

It runs after every push, so it imports only ``os``, ``sys``, the hook input and the spool layout: the spool's
path comes from the config cache pre-receive left, and the full config loader is used only when there is none.
"""

from __future__ import annotations

import os
import sys

from ..config import cache
from ..gitea.hook_input import parse_updates, passes_untouched
from ..spool import layout

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

    from ..gitea.hook_input import Update


def _spool_dir(config_file: str) -> str | None:
    """The spool pre-receive prepared jobs in: the one of the config it loaded, which it left in the cache.

    Even a stale cache is right here (the config changed after pre-receive read it). Without a cache,
    pre-receive could not write one, so the config is read again; a config that does not load means
    pre-receive prepared nothing.
    """
    cached = cache.spool_dir(config_file)
    if cached is not None:
        return cached
    from ..config.load import load
    from ..errors import ConfigError

    try:
        return load(config_file).spool
    except ConfigError:
        return None


def queue_prepared(config_file: str, stdin: str, environ: Mapping[str, str]) -> list[str]:
    """Promote the prepared job of every update on ``stdin``; returns the lines for the pusher."""
    if passes_untouched(environ):
        return []
    updates = parse_updates(stdin)
    if not updates:
        return []
    spool_dir = _spool_dir(config_file)
    if spool_dir is None:
        return []
    repo_dir = os.path.abspath(environ.get("GIT_DIR", "."))
    lines = []
    queued: list[tuple[Update, str]] = []
    for update in updates:
        for notice, job_id in layout.promote(spool_dir, repo_dir, update.ref, update.new):
            lines.append(notice)
            queued.append((update, job_id))
    if queued:
        layout.fsync_dir(os.path.join(spool_dir, "queue"))
        from ..spool import audit_drop

        # The jobs are queued whatever becomes of their audit drop: one that cannot be written is logged.
        try:
            audit_drop.jobs_queued(spool_dir, environ, repo_dir, queued)
        except OSError:
            _record_failure(config_file, "post-receive (audit drop not written)")
    return lines


def _record_failure(config_file: str, hook: str = "post-receive") -> str:
    """Log the current exception where pre-receive logs its own; return where that is."""
    from ..config.load import load
    from ..config.model import Config
    from .failures import log_failure

    config: Config | None
    try:
        config = load(config_file)
    except Exception:  # noqa: BLE001 - then the fallback log in the hook user's home
        config = None
    return log_failure(config, None, hook)


def main(argv: list[str]) -> int:
    """``main(["post-receive", CONFIG_PATH])``; the updates come on standard input."""
    stdin = sys.stdin.buffer.read().decode("utf-8", "surrogateescape")
    try:
        lines = queue_prepared(argv[1], stdin, os.environ)
    except Exception:  # noqa: BLE001 - a landed push must not look failed; the worker sweeps tmp/
        from .report import PREFIX

        lines = [f"{PREFIX} warning: the publish job is not queued yet; the worker will queue it from the "
                 f"spool (details for the admin in {_record_failure(argv[1])})"]
    sys.stderr.write("".join(line + "\n" for line in lines))
    return 0
