"""The ``gitea-hf-hook`` command. Not on the hook path: the installed hooks call ``hook.main`` directly."""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from typing import Any

import click

from .config import Config, config_path, load
from .errors import HookError


def _errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """One line on standard error and exit 1 for every user-facing failure, instead of a traceback."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except HookError as exc:
            click.echo(f"gitea-hf-hook: error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except OSError as exc:
            click.echo(f"gitea-hf-hook: error: {exc.filename or ''}: {exc.strerror}", err=True)
            sys.exit(1)

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


@cli.command()
@click.option("--all", "every", is_flag=True, help="Every repository under gitea.repo_root.")
@click.argument("repos", nargs=-1, metavar="[OWNER/REPO]...")
@click.pass_context
@_errors
def install(ctx: click.Context, every: bool, repos: tuple[str, ...]) -> None:
    """Install the pre-receive and post-receive hooks into repositories."""
    from . import install as installer

    config = _config(ctx)
    if not every and not repos:
        raise HookError("name repositories as OWNER/REPO, or pass --all", "e.g. gitea-hf-hook install acme/bert")
    for line in installer.install(config, installer.repositories(config, repos, every)):
        click.echo(line)


@cli.command()
@click.option("--all", "every", is_flag=True, help="Every repository under gitea.repo_root.")
@click.argument("repos", nargs=-1, metavar="[OWNER/REPO]...")
@click.pass_context
@_errors
def uninstall(ctx: click.Context, every: bool, repos: tuple[str, ...]) -> None:
    """Remove our hooks from repositories; Gitea's own hooks are left alone."""
    from . import install as installer

    config = _config(ctx)
    if not every and not repos:
        raise HookError("name repositories as OWNER/REPO, or pass --all", "e.g. gitea-hf-hook uninstall acme/bert")
    for line in installer.uninstall(config, installer.repositories(config, repos, every)):
        click.echo(line)


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
    from .dry_run import dry_run

    config = _config(ctx)
    lines, code = dry_run(config, repo, ref, rev, user, deploy_key=deploy_key, pr_merge=pr_merge)
    for line in lines:
        click.echo(line)
    sys.exit(code)


def main() -> None:
    """Console entry point."""
    cli(prog_name="gitea-hf-hook")
