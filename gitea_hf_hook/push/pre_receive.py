"""The pre-receive hook: decide whether a push may land, and prepare the publish jobs of one that will.

This runs inside every ``git push``, as Gitea's user, for anyone who may push. It imports the standard library,
PyYAML and the shared layers only (never the worker, huggingface_hub, click or filelock), and never lets a
traceback reach a pusher. Its partner is :mod:`.post_receive`.
"""

from __future__ import annotations

import os
import sys

from ..config.load import load
from ..config.model import Config
from ..errors import ConfigError
from ..gitea.environment import Push, read_push
from ..gitea.hook_input import Update, is_internal, parse_updates
from .report import PREFIX


def _say(lines: list[str]) -> None:
    # Everything a hook prints reaches the pusher as "remote: ..." lines; stderr is not buffered behind stdout.
    sys.stderr.write("".join(line + "\n" for line in lines))
    sys.stderr.flush()


def _broken_config(error: ConfigError, config_file: str, push: Push, updates: list[Update]) -> int:
    from ..config.fallback import might_publish

    refs = [u.ref for u in updates if might_publish(config_file, push.owner, push.name, u.ref)]
    if not refs:
        return 0
    lines = []
    for ref in refs:
        lines += [f"{PREFIX} rejected {ref} of {push.full_name}, which may publish to the Hub: "
                  "the publishing config is broken, so nothing can be checked:",
                  f"  {error}",
                  "  (a Gitea admin must fix it; refs that do not publish are not affected)"]
    _say(lines)
    return 1


def pre_receive(config: Config, push: Push, updates: list[Update]) -> int:
    """Check every publishing ref; print the problems; non-zero exit rejects the push."""
    from .policy import evaluate
    from .report import render

    lines: list[str] = []
    verdicts = evaluate(config, push, updates)
    for verdict in verdicts:
        if verdict.problems:
            lines += render(push.full_name, verdict.update.ref, verdict.target.describe(config.hub_endpoint),
                            verdict.problems, enforce=config.enforce)
    rejected = bool(lines) and config.enforce
    if any(not v.problems for v in verdicts) and not rejected:
        from .jobs import prepare_jobs

        try:
            prepare_jobs(config, push, verdicts)
        except OSError as exc:
            lines.append(f"{PREFIX} rejected: the publish queue cannot take this push ({exc.strerror}: "
                         f"{exc.filename}); an admin must make {config.spool} writable by the Gitea server")
            rejected = True
    if lines:
        _say(lines)
    return 1 if rejected else 0


def main(argv: list[str]) -> int:
    """``main(["pre-receive", CONFIG_PATH])``; the hook's standard input holds the updates."""
    hook, config_file = argv[0], argv[1]
    updates = parse_updates(sys.stdin.buffer.read().decode("utf-8", "surrogateescape"))
    push = read_push(os.environ, os.environ.get("GIT_DIR", "."))
    # Gitea's own bookkeeping pushes and wikis are neither checked nor published: answer before reading config.
    if not updates or is_internal(os.environ) or push.is_wiki:
        return 0
    try:
        config = load(config_file)
    except ConfigError as error:
        return _broken_config(error, config_file, push, updates)
    try:
        return pre_receive(config, push, updates)
    except Exception:  # noqa: BLE001 - the last line of defence: one line to the pusher, the rest to the log
        from .failures import log_failure

        where = log_failure(config, push, hook)
        from .policy import publishing

        if not publishing(config, push, updates):
            return 0
        # Nothing unchecked publishes: with enforce off the push lands in Gitea, and no job is queued.
        if config.enforce:
            _say([f"{PREFIX} rejected: internal error while checking this push (details for the admin in {where})"])
            return 1
        _say([f"{PREFIX} would reject: internal error while checking this push, so it is not published "
              f"(details for the admin in {where})"])
        return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
