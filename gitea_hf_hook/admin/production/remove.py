"""``install.sh --uninstall``: remove what the manifest says the installer made, and nothing else.

Our hooks go first, while the environment they run from is still there, through the package's own ``uninstall``,
which never touches Gitea's files. Then the units, the template, the environment; then the files and folders the
installer made. What holds someone's data stays unless ``--purge`` is given: an example config the admin edited,
and a spool, a token folder or a log folder that holds files. The worker's user stays as long as something kept
belongs to it, and the manifest stays, listing only what was kept, so that ``--uninstall --purge`` can finish
the job later.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable

from ...errors import HookError
from . import accounts, deploy, environment, files, manifest, options, units


def _empty(folder: str) -> bool:
    try:
        return not os.listdir(folder)
    except FileNotFoundError:
        return True


def _hooks(record: manifest.Manifest, prefix: str, config: str, say: Callable[[str], None]) -> None:
    venv = environment.venv_dir(prefix)
    if not record.hooks:
        return
    if not os.path.isfile(os.path.join(venv, "bin", "gitea-hf-hook")):
        raise HookError(f"the repositories still run our hooks, and {venv} they run from is gone",
                        "run ./install.sh to restore it, then ./install.sh --uninstall")
    with tempfile.TemporaryDirectory(prefix="gitea-hf-hook-uninstall-") as cache:
        info = environment.ask(venv, cache, deploy.PROBE, config)
        if "error" in info:
            raise HookError(f"the config does not load, so the repositories holding our hooks are unknown: "
                            f"{info['error']}", "fix it, then run ./install.sh --uninstall again")
        if info["repositories"]:
            lines = deploy.run_command(venv, cache, config, "uninstall", "--all")
            removed = sum(line.startswith("uninstalled ") for line in lines)
            say(f"removed our hooks from {removed} of {info['repositories']} repositories under {info['repo_root']} "
                "(Gitea's own hook files untouched)")
    record.hooks = False


def uninstall(request: options.Request, say: Callable[[str], None]) -> list[str]:
    """Remove the installation; returns the closing lines (what was kept, and how to remove it)."""
    prefix = request.given.get("prefix", options.PREFIX)
    record = manifest.load(prefix)
    if record is None:
        say(f"nothing to uninstall: {prefix} holds no installation (no {manifest.NAME})")
        return []
    s = options.settings(request.given, record.settings)
    named = [os.path.join(s.unit_dir, name) for name in units.NAMES if os.path.join(s.unit_dir, name) in record.files]
    if named and deploy.systemd_running(s.unit_dir):
        deploy.systemctl("disable", "--now", *(os.path.basename(p) for p in named))
    finished = False
    try:
        _hooks(record, prefix, s.config, say)
        for path in named:
            if os.path.lexists(path):
                os.unlink(path)
            del record.files[path]
        if named:
            say(f"removed {', '.join(os.path.basename(p) for p in named)} from {s.unit_dir}")
            if deploy.systemd_running(s.unit_dir):
                deploy.systemctl("daemon-reload")
        for tree in list(record.trees):
            if files.remove_tree(tree):
                say(f"removed {tree}")
            record.trees.remove(tree)
        record.source = ""
        kept = _files(record, request.purge, say)
        _folders(record, prefix, request.purge, _homes(record), say)
        kept_users = _users(record, say)
        # Again: the folders a removed home leaves empty, and the kept ones, said once.
        kept += _folders(record, prefix, request.purge, _homes(record), say) + kept_users
        if not kept:
            manifest.remove(prefix)
            _folders(record, prefix, request.purge, set(), say)  # the prefix, now empty, and what was made above it
            finished = True
    finally:
        if not finished and os.path.isdir(prefix):
            manifest.save(prefix, record)
    if not kept:
        return []
    return kept + [f"kept {manifest.path(prefix)}: it lists what was kept",
                   f"to remove that too: ./install.sh --uninstall --purge --prefix {prefix}"]


def _homes(record: manifest.Manifest) -> set[str]:
    """The homes of the users the installer made: they go with their user."""
    found = (accounts.lookup(name) for name in record.users)
    return {account.home for account in found if account is not None}


def _files(record: manifest.Manifest, purge: bool, say: Callable[[str], None]) -> list[str]:
    kept = []
    for path, written in sorted(record.files.items()):
        now = files.file_digest(path)
        if now is not None and now != written and not purge:
            kept.append(f"kept {path}: edited since the installer wrote it")
            continue
        if os.path.lexists(path):
            os.unlink(path)
            say(f"removed {path}")
        del record.files[path]
    return kept


def _folders(record: manifest.Manifest, prefix: str, purge: bool, skip: set[str],
             say: Callable[[str], None]) -> list[str]:
    """The folders the installer made, deepest first, but ``skip``. A data folder goes with what it holds only with
    ``purge``, or when it holds folders alone, as an unused spool does; any other goes only when empty."""
    kept: list[str] = []
    held = list(record.files)  # what is kept: a folder that holds nothing else is not named again
    for folder in sorted(record.folders, key=lambda f: f.count(os.sep), reverse=True):
        if folder in skip:
            continue
        if not os.path.isdir(folder):
            record.folders.remove(folder)
            continue
        data = folder in record.data
        if data and (purge or not files.holds_files(folder)):
            files.remove_tree(folder)
        elif _empty(folder):
            os.rmdir(folder)
        else:
            own = [e for e in os.listdir(folder) if os.path.join(folder, e) not in held]
            last = folder == prefix or prefix.startswith(folder + os.sep)  # they go with the manifest, at the end
            if own and not last:
                what = f"it holds {files.holds_files(folder)} files" if data else "it holds what others put there"
                kept.append(f"kept {folder}: {what}")
            held.append(folder)
            continue
        say(f"removed {folder}")
        record.folders.remove(folder)
        if data:
            record.data.remove(folder)
    return kept


def _users(record: manifest.Manifest, say: Callable[[str], None]) -> list[str]:
    """Remove the users the installer made, with their home, unless something kept still belongs to them."""
    kept = []
    for name in list(record.users):
        account = accounts.lookup(name)
        if account is None:
            record.users.remove(name)
            continue
        owned = [f for f in record.folders if f != account.home and os.path.isdir(f)
                 and os.lstat(f).st_uid == account.uid]
        if owned:
            kept.append(f"kept the user {name} and its home {account.home}: it owns {', '.join(owned)}")
            continue
        made_home = account.home in record.folders
        if made_home:
            files.remove_tree(account.home)
            record.folders.remove(account.home)
            if account.home in record.data:
                record.data.remove(account.home)
        accounts.remove(name)
        record.users.remove(name)
        say(f"removed the user {name}" + (f" and its home {account.home}" if made_home else ""))
    return kept
