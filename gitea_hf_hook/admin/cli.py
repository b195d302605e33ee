"""The ``gitea-hf-hook`` command, for admins and operators. The installed hooks never import it."""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from typing import Any

import click

from ..config.load import load
from ..config.model import Config, config_path
from ..errors import ConfigError, HookError
from .errors import report


def _errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Every failure as one line on standard error (see :mod:`.errors`), never a traceback."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except Exception as exc:  # noqa: BLE001 - mapped to one line and an exit code
            line, code = report(exc)
            click.echo(line, err=True)
            sys.exit(code)

    return wrapper


def _config(ctx: click.Context) -> Config:
    return load(config_path(ctx.obj["config"]))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_file", metavar="PATH",
              help="Config file [default: $GITEA_HF_HOOK_CONFIG, else /etc/gitea-hf-hook/config.yaml].")
@click.version_option(package_name="gitea-hf-hook")
@click.pass_context
def cli(ctx: click.Context, config_file: str | None) -> None:
    """Publish Gitea repositories to the Hugging Face Hub from server-side git hooks."""
    ctx.obj = {"config": config_file}


def _hooks_command(verb: str, help_text: str) -> None:
    """``install`` and ``uninstall``: the same arguments, a different action on each repository."""

    @cli.command(name=verb, help=help_text)
    @click.option("--all", "every", is_flag=True, help="Every repository under gitea.repo_root.")
    @click.argument("repos", nargs=-1, metavar="[OWNER/REPO]...")
    @click.pass_context
    @_errors
    def command(ctx: click.Context, every: bool, repos: tuple[str, ...], template: str | None = None) -> None:
        from . import install as installer

        config = _config(ctx)
        if not every and not repos and template is None:
            more = " or --template DIR" if verb == "install" else ""
            raise HookError(f"name repositories as OWNER/REPO, or pass --all{more}",
                            f"e.g. gitea-hf-hook {verb} acme/bert")
        action = installer.install if verb == "install" else installer.uninstall
        if every or repos:
            for line in action(config, installer.repositories(config, repos, every)):
                click.echo(line)
        if template is not None:
            for line in installer.write_template(config, template):
                click.echo(line)

    if verb == "install":
        click.option("--template", metavar="DIR", help="Write a git template folder holding only our hooks, "
                     "for Gitea's init.templateDir, so that repositories made later get them.")(command)


_hooks_command("install", "Install the pre-receive and post-receive hooks into repositories.")
_hooks_command("uninstall", "Remove our hooks from repositories; Gitea's own hooks are left alone.")


@cli.command()
@click.pass_context
@_errors
def sync(ctx: click.Context) -> None:
    """Install our hooks into every repository that lacks them, and repair them where they changed.

    Run it from a timer: it also covers repositories made where no template is copied (some Gitea forks run git
    init with an empty one). Prints what it changed, one line per repository and fix, then a summary; exits 1 when
    it had to leave a repository alone.
    """
    from . import install as installer

    lines, refused = installer.sync(_config(ctx))
    for line in lines:
        click.echo(line)
    if refused:
        raise HookError(f"{refused} repositor{'y' if refused == 1 else 'ies'} refused, without our hooks",
                        "each 'refused' line above says what is in the way and how to fix it")


@cli.command()
@click.argument("repo", metavar="OWNER/REPO")
@click.argument("ref")
@click.argument("rev", required=False)
@click.option("--user", required=True, help="Gitea user name to check as.")
@click.option("--deploy-key", is_flag=True, help="Check as a push by a deploy key.")
@click.option("--pr-merge", is_flag=True, help="Check as the merge of a pull request in Gitea.")
@click.pass_context
@_errors
def check(ctx: click.Context, repo: str, ref: str, rev: str | None, user: str, deploy_key: bool,
          pr_merge: bool) -> None:
    """Dry-run the push-time policy: would pushing REV (default: REF's tip) to REF be accepted?

    Prints exactly what a pusher would see and exits as the hook would.
    """
    from .check import dry_run

    config = _config(ctx)
    lines, code = dry_run(config, repo, ref, rev, user, deploy_key=deploy_key, pr_merge=pr_merge)
    for line in lines:
        click.echo(line)
    sys.exit(code)


@cli.group("config")
def config_group() -> None:
    """Validate a config file before it goes live."""


@config_group.command("check")
@click.argument("path", required=False, metavar="[PATH]")
@click.pass_context
@_errors
def config_check(ctx: click.Context, path: str | None) -> None:
    """Validate PATH (default: the live config) without installing it.

    Prints what publishes where: each rule, its branches and tags with their Hub targets, and its publishers.
    Else prints the first problem as one line naming the file, the line and the key, and exits 1. Run it on a
    new file before it replaces the live one.
    """
    from .config_check import check as validate

    for line in validate(path or config_path(ctx.obj["config"])):
        click.echo(line)



# --- worker and queue -------------------------------------------------------------------------------------------

def _echo_json(data: Any) -> None:
    import json

    # ASCII only: a control or bidi character in a value (a ref, a path, a job file's text) is written as its
    # \u escape, so the JSON stays valid and inert on a terminal while a parser gets the value back unchanged.
    click.echo(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=True))


@cli.command()
@click.option("--once", is_flag=True, help="Publish every job that is due, then exit.")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True, metavar="N",
              help="Worker processes draining the spool together.")
@click.option("--allow-root", is_flag=True,
              help="Run even as root (the files it creates are then root's, and the worker's user cannot "
                   "change them later).")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True,
              envvar="GITEA_HF_HOOK_LOG_FORMAT", help="Log lines on standard error as text, or as JSON objects.")
@click.pass_context
@_errors
def worker(ctx: click.Context, once: bool, workers: int, allow_root: bool, log_format: str) -> None:
    """Publish queued jobs to the Hub until SIGTERM or SIGINT (exit 0), or with --once until none is due.

    Run it as the worker's user. It refuses to start while anyone but root and that user could change the config,
    the spool or the folders above them, or read a token file; the error names the file and the fix.
    """
    import os

    from ..worker import logs, preflight, service

    os.environ[logs.FORMAT_ENV] = log_format  # read by every worker process, --workers' children included
    # Never from the cache: it lives in a home folder only checked below.
    config = load(config_path(ctx.obj["config"]), cached=False)
    preflight.check(config, allow_root=allow_root)
    sys.exit(service.run(config, once=once, workers=workers, config_file=config.path))


@cli.group()
def queue() -> None:
    """Inspect and manage the publish queue."""


@queue.command("list")
@click.option("--all", "every", is_flag=True, help="Include cancelled and done jobs.")
@click.option("--failed", "failed_only", is_flag=True, help="Only failed jobs (the dead letter).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
@_errors
def queue_list(ctx: click.Context, every: bool, failed_only: bool, as_json: bool) -> None:
    """List queued, active and failed jobs."""
    import time

    from . import queue as qs

    if every and failed_only:
        raise click.UsageError("--all and --failed cannot be used together")
    folders = (("failed",) if failed_only else ("queue", "active", "failed", "cancelled", "done") if every
               else ("queue", "active", "failed"))
    found, now = qs.entries(_config(ctx).spool, folders), time.time()
    if as_json:
        _echo_json([qs.summary(e, now) for e in found])
    else:
        for line in qs.format_list(found, now, "no failed jobs" if failed_only else "no jobs"):
            click.echo(line)


@queue.command("show")
@click.argument("job_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
@_errors
def queue_show(ctx: click.Context, job_id: str, as_json: bool) -> None:
    """Show one job: its target, commit, attempts and error history."""
    import time

    from . import queue as qs

    entry = qs.find(_config(ctx).spool, job_id)
    if as_json:
        _echo_json(qs.detail(entry))
    else:
        for line in qs.format_show(entry, time.time()):
            click.echo(line)


@queue.command("retry")
@click.argument("job_id", metavar="[ID]", required=False)
@click.option("--all-failed", is_flag=True, help="Every failed job.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
@_errors
def queue_retry(ctx: click.Context, job_id: str | None, all_failed: bool, as_json: bool) -> None:
    """Queue a failed job (or with --all-failed, every failed job) again, due at once, with its attempts reset."""
    import time

    from ..redact import escape
    from . import queue as qs

    if (job_id is None) == (not all_failed):
        raise click.UsageError("name one failed job's ID, or pass --all-failed")
    problems: list[str] = []
    config = _config(ctx)
    if job_id is not None:
        jobs = [qs.retry(config.spool, job_id, time.time())]
    else:
        jobs, problems = qs.retry_all(config.spool, time.time())
    if as_json:
        _echo_json({"retried": [job.id for job in jobs], "problems": problems} if all_failed
                   else {"id": jobs[0].id, "state": "queued"})
    else:
        for job in jobs:
            click.echo(escape(f"job {job.id} queued again: {job.target.label} {job.commit[:7]}"))
        for problem in problems:
            click.echo(escape(f"not retried: {problem}"))
        if all_failed and not problems:
            click.echo(f"queued {len(jobs)} failed job{'' if len(jobs) == 1 else 's'} again" if jobs
                       else "no failed jobs to retry")
    if jobs:
        qs.on_record(config, "retry", f"job {jobs[0].id} was queued again" if len(jobs) == 1
                     else f"{len(jobs)} failed jobs were queued again", jobs)
    if problems:
        n = len(problems)
        raise HookError(f"{n} failed job{' was' if n == 1 else 's were'} not retried",
                        "fix or delete each one named above; queue show ID says more")


@queue.command("cancel")
@click.argument("job_id", metavar="ID")
@click.option("--reason", required=True, metavar="TEXT", help="Why; kept in the job's history.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
@_errors
def queue_cancel(ctx: click.Context, job_id: str, reason: str, as_json: bool) -> None:
    """Cancel a queued job: it moves to cancelled/ with the reason, and is never published.

    A job a worker is publishing (active) cannot be cancelled.
    """
    import time

    from ..redact import escape
    from . import queue as qs

    config = _config(ctx)
    job = qs.cancel(config.spool, job_id, reason, time.time())
    if as_json:
        _echo_json({"id": job.id, "state": "cancelled", "reason": qs.cancel_reason(job)})
    else:
        click.echo(escape(f"job {job.id} cancelled: {job.target.label} {job.commit[:7]}: {qs.cancel_reason(job)}"))
    qs.on_record(config, "cancel", f"job {job.id} was cancelled", [job])


@queue.command("purge")
@click.option("--failed", is_flag=True, help="Also delete failed jobs.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
@_errors
def queue_purge(ctx: click.Context, failed: bool, as_json: bool) -> None:
    """Delete done and cancelled jobs (and with --failed, failed jobs)."""
    from . import queue as qs

    config = _config(ctx)
    counts = qs.purge(config.spool, failed=failed)
    parts = [f"{n} {folder} job{'' if n == 1 else 's'}" for folder, n in counts.items()]
    said = "deleted " + (", ".join(parts[:-1]) + " and " if len(parts) > 1 else "") + parts[-1]
    if as_json:
        _echo_json(counts)
    else:
        click.echo(said)
    qs.on_record(config, "purge", f"the purge {said}", outcome=said,
                 detail=tuple((folder, str(n)) for folder, n in counts.items()))


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
@_errors
def status(ctx: click.Context, as_json: bool) -> None:
    """Queue depth and age, active jobs and their workers, failures, the done count, and each target's last
    success and failure."""
    import time

    from . import queue as qs

    try:
        config = _config(ctx)
    except ConfigError as error:
        from .doctor import broken_since

        # The worker goes on with its last valid config; what the admin needs first is since when it broke.
        raise ConfigError(error.message + broken_since(config_path(ctx.obj["config"])), error.hint) from None
    data = qs.status(config, time.time())
    if as_json:
        _echo_json(data)
    else:
        for line in qs.format_status(data):
            click.echo(line)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print a list of {check, status, detail, fix}.")
@click.pass_context
@_errors
def doctor(ctx: click.Context, as_json: bool) -> None:
    """Check the installation, changing nothing: the config, owners and modes, the LFS store, the hooks and the
    template, the Hub and Gitea tokens, the worker's service.

    One line per check, ok, warn or fail, with the fix for each problem; exits 1 when any check fails. Run it as
    root: it reads the token files and looks at both users' folders.
    """
    from . import doctor as checkup

    found = checkup.run(config_path(ctx.obj["config"]))
    if as_json:
        _echo_json([finding._asdict() for finding in found])
    else:
        for finding in found:
            click.echo(checkup.line(finding))
    sys.exit(1 if any(finding.status == checkup.FAIL for finding in found) else 0)


# --- audit trail ------------------------------------------------------------------------------------------------

@cli.group()
def audit() -> None:
    """Verify and read the audit trail (audit_log)."""


@audit.command("verify")
@click.pass_context
@_errors
def audit_verify(ctx: click.Context) -> None:
    """Check every record's hash and its chain to the one before; name the first bad line and exit 1, or print
    how many records verified."""
    from . import audit_cmd

    lines, code = audit_cmd.verify_lines(audit_cmd.verify(_config(ctx)))
    for line in lines:
        click.echo(line)
    sys.exit(code)


@audit.command("show")
@click.option("--since", metavar="DATE", help="Only records from DATE on (2026-11-25, or with a time; UTC).")
@click.option("--repo", metavar="OWNER/NAME", help="Only records of this Gitea repository.")
@click.option("--json", "as_json", is_flag=True, help="Print the records as JSON Lines.")
@click.pass_context
@_errors
def audit_show(ctx: click.Context, since: str | None, repo: str | None, as_json: bool) -> None:
    """Print the audit records, oldest first, one line each."""
    from . import audit_cmd

    for line, to_stderr in audit_cmd.show(_config(ctx), since=since, repo=repo, as_json=as_json):
        click.echo(line, err=to_stderr)


@cli.command("hub-emulator")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", type=int, default=0, show_default=True, help="Port to bind; 0 picks a free one.")
@click.option("--data", "data_dir", required=True, metavar="DIR", help="Data directory, kept across restarts.")
@click.option("--token", "tokens", multiple=True, required=True, metavar="[USER=]TOKEN[:read]",
              help="Accepted token (repeatable); a bare token belongs to user 'emulator'.")
@_errors
def hub_emulator(host: str, port: int, data_dir: str, tokens: tuple[str, ...]) -> None:
    """Run the local Hugging Face Hub emulator (for tests and trials) until SIGTERM or SIGINT."""
    from ..hub_emulator import serve

    try:
        serve(host, port, data_dir, list(tokens))
    except (ValueError, OSError) as exc:
        # The emulator's ValueErrors never quote a token (hub_emulator.auth.parse_token_spec).
        raise HookError(f"the Hub emulator could not start: {exc}",
                        "check --host, --port, --data and --token") from None


def main() -> None:
    """Console entry point."""
    cli(prog_name="gitea-hf-hook")
