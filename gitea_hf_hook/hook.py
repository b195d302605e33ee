"""The installed git hooks' entry point: ``pre-receive`` decides, ``post-receive`` queues.

This runs inside every ``git push``. It imports the standard library, PyYAML and our push-time modules only
(never huggingface_hub, click or filelock), reads config once, and never lets a traceback reach a pusher.
"""

from __future__ import annotations

import os
import sys
import time

from .config import Config, load, might_publish
from .errors import ConfigError
from .gitea import Push, read_push
from .policy import Update, Verdict, parse_updates
from .redact import redact
from .report import PREFIX

HOOK_NAMES = ("pre-receive", "post-receive")


def _say(lines: list[str]) -> None:
    # Everything a hook prints reaches the pusher as "remote: ..." lines; stderr is not buffered behind stdout.
    sys.stderr.write("".join(line + "\n" for line in lines))
    sys.stderr.flush()


def log_failure(config: Config | None, push: Push, hook: str) -> str:
    """Append the current exception's traceback to the hook log; return where it went."""
    import traceback  # only on this path: importing it costs every push milliseconds

    candidates = [config.hook_log] if config is not None else []
    candidates.append(os.path.join(os.path.expanduser("~"), "gitea-hf-hook.log"))
    record = (f"--- {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {hook} {push.full_name} "
              f"pusher={push.pusher or '-'}\n{redact(traceback.format_exc())}")
    for path in candidates:
        try:
            with open(path, "a", encoding="utf-8") as f:
                f.write(record)
            return path
        except OSError:
            continue
    return "the hook log (not writable)"


def _broken_config(hook: str, error: ConfigError, config_file: str, push: Push, updates: list[Update]) -> int:
    refs = [u.ref for u in updates if might_publish(config_file, push.full_name, u.ref)]
    if not refs:
        return 0
    if hook == "post-receive":
        _say([f"{PREFIX} warning: nothing queued for {', '.join(refs)}: the publishing config is broken: {error}"])
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
    for verdict in evaluate(config, push, updates):
        if verdict.problems:
            lines += render(push.full_name, verdict.update.ref, verdict.target.describe(config.hub_endpoint),
                            verdict.problems, enforce=config.enforce)
    if lines:
        _say(lines)
        return 1 if config.enforce else 0
    return 0


def post_receive(config: Config, push: Push, updates: list[Update]) -> int:
    """Queue one publish job per accepted update of a publishing ref. Never fails the push."""
    from .policy import publishing
    from .queueing import queue_verdicts

    verdicts: list[Verdict] = publishing(config, push, updates)
    if verdicts:
        _say(queue_verdicts(config, push, verdicts))
    return 0


def main(argv: list[str]) -> int:
    """``main(["pre-receive" | "post-receive", CONFIG_PATH])``; the hook's standard input holds the updates."""
    hook, config_file = argv[0], argv[1]
    updates = parse_updates(sys.stdin.buffer.read().decode("utf-8", "surrogateescape"))
    push = read_push(os.environ, os.environ.get("GIT_DIR", "."))
    # Gitea's own bookkeeping pushes and wikis are neither checked nor published: answer before reading config.
    if not updates or push.internal or push.is_wiki:
        return 0
    try:
        config = load(config_file)
    except ConfigError as error:
        return _broken_config(hook, error, config_file, push, updates)
    try:
        return pre_receive(config, push, updates) if hook == "pre-receive" else post_receive(config, push, updates)
    except Exception:  # noqa: BLE001 - the last line of defence: one line to the pusher, the rest to the log
        where = log_failure(config, push, hook)
        if hook == "post-receive":
            _say([f"{PREFIX} warning: could not queue the publish job (internal error; details in {where})"])
            return 0
        from .policy import publishing

        if not publishing(config, push, updates):
            return 0
        verb = "rejected" if config.enforce else "would reject"
        _say([f"{PREFIX} {verb}: internal error while checking this push (details for the admin in {where})"])
        return 1 if config.enforce else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
