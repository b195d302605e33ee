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

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ..spool.audit_drop import Fields
    from .policy import Verdict


def _say(lines: list[str]) -> None:
    # Everything a hook prints reaches the pusher as "remote: ..." lines; stderr is not buffered behind stdout.
    sys.stderr.write("".join(line + "\n" for line in lines))
    sys.stderr.flush()


def _leave_drop(config: Config | None, spool: str | None, push: Push, decisions: list[Fields]) -> None:
    """Report this push's decisions to the audit trail, as a drop in ``spool/audit/`` for the worker to chain
    (:mod:`..spool.audit_drop`). A drop never decides a push: one that cannot be written goes to the hook log, as
    the hook's other failures do, and the push goes on as decided."""
    if spool is None or not decisions:
        return
    from ..spool import audit_drop

    try:
        audit_drop.push_decided(spool, push, decisions)
    except OSError:
        from .failures import log_failure

        log_failure(config, push, "pre-receive (audit drop not written)")


def _broken_config(error: ConfigError, config_file: str, push: Push, updates: list[Update]) -> int:
    """The config does not load: reject the refs that published under the last valid config, with the error, and
    let every other ref through. With no valid config on record, every branch and tag counts as publishing."""
    from ..config import cache
    from ..config.fallback import last_valid_rules, publishes
    from ..redact import escape
    from .report import MAX_LINES

    cache.mark_broken(config_file)
    rules = last_valid_rules(config_file)
    refused = [u for u in updates if publishes(rules, push.owner, push.name, u.ref)]
    if not refused:
        return 0
    from ..spool import audit_drop

    # The spool of the last valid load; with none, there is nowhere to leave a drop. No target: the broken file
    # cannot say which one, and the routing on record does not hold what names the Hub repository.
    _leave_drop(None, cache.spool_dir(config_file), push,
                [audit_drop.decision(u, "rejected", reasons=[str(error)]) for u in refused])
    refs = [u.ref for u in refused]
    if rules is None:
        why = "which may publish to the Hub: no valid config is on record, so every branch and tag counts"
        passes = "until then every push to a branch or tag is rejected"
    else:
        why = "which publishes to the Hub under the last valid config"
        passes = "pushes to refs that did not publish under the last valid config are let through"
    # One line per ref, bounded as the checks' own report is; the ref names are the pusher's, so escaped.
    shown = refs if len(refs) <= MAX_LINES else refs[:MAX_LINES - 1]
    lines = [f"{PREFIX} rejected {escape(ref)} of {escape(push.full_name)}, {why}" for ref in shown]
    if len(shown) < len(refs):
        lines.append(f"{PREFIX} … and {len(refs) - len(shown)} more refs")
    lines += [f"  the publishing config is broken: {escape(str(error))}", f"  (a Gitea admin must fix it; {passes})"]
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
    jobs: dict[str, str] = {}
    unqueued = ""
    if any(not v.problems for v in verdicts) and not rejected:
        from .jobs import prepare_jobs

        try:
            jobs = prepare_jobs(config, push, verdicts)
        except OSError as exc:
            unqueued = f"the publish queue cannot take this push ({exc.strerror}: {exc.filename})"
            lines.append(f"{PREFIX} rejected: {unqueued}; an admin must make {config.spool} writable by the Gitea "
                         "server")
            rejected = True
    if verdicts:
        _leave_drop(config, config.spool, push, _decisions(verdicts, jobs, enforce=config.enforce,
                                                             rejected=rejected, unqueued=unqueued))
    if lines:
        _say(lines)
    return 1 if rejected else 0


def _decisions(verdicts: list[Verdict], jobs: dict[str, str], *, enforce: bool, rejected: bool,
               unqueued: str) -> list[Fields]:
    """Each publishing ref's decision, for the audit drop: what the pusher read about it, and why."""
    from ..spool import audit_drop

    decisions = []
    for verdict in verdicts:
        reasons = [str(p) for p in verdict.problems]
        if unqueued:
            outcome = "rejected"
            reasons.append(unqueued)
        elif verdict.problems:
            outcome = "rejected" if enforce else "would-reject"
        elif rejected:
            outcome = "rejected"
            reasons.append("another publishing ref of this push was rejected, so none of its refs moved")
        else:
            outcome = "accepted"
        decisions.append(audit_drop.decision(verdict.update, outcome, verdict.target.label, reasons,
                                             job=jobs.get(verdict.update.ref, "")))
    return decisions


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

        verdicts = publishing(config, push, updates)
        if not verdicts:
            return 0
        from ..spool import audit_drop

        why = f"internal error while checking this push (details for the admin in {where})"
        outcome = "rejected" if config.enforce else "would-reject"
        _leave_drop(config, config.spool, push, [audit_drop.decision(v.update, outcome, v.target.label, [why])
                                                 for v in verdicts])
        # Nothing unchecked publishes: with enforce off the push lands in Gitea, and no job is queued.
        if config.enforce:
            _say([f"{PREFIX} rejected: internal error while checking this push (details for the admin in {where})"])
            return 1
        _say([f"{PREFIX} would reject: internal error while checking this push, so it is not published "
              f"(details for the admin in {where})"])
        return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
