"""The production install, step by step. Each step does its work only when something is missing or out of date,
and says what it changed; a run that changes nothing says so, and an upgrade is the same command.

Everything is checked that can be before anything is changed: the users, and that both can run the interpreter.
The manifest is saved whatever happens, so that a run that stops half way can still be uninstalled.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from typing import Any

from ...errors import HookError
from . import accounts, environment, files, manifest, options, units
from .accounts import Account
from .interpreter import base_interpreter, check_environment, check_interpreter

HOOKS = ("pre-receive", "post-receive")
TEMPLATE = "template"
EXAMPLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "config.example.yaml")

# Asked of the environment's interpreter: the config's paths and what this release's command can do. A config
# that does not load is reported, not raised: the hint then says to fix it and run again.
PROBE = """
import json, sys
from gitea_hf_hook.errors import HookError
from gitea_hf_hook.config.load import load
from gitea_hf_hook.admin import cli, install
try:
    c = load(sys.argv[1], cached=False)
except HookError as exc:
    print(json.dumps({"error": str(exc)}))
    raise SystemExit
try:
    count, why = len(install.repositories(c, (), True)), ""
except HookError as exc:
    count, why = 0, str(exc)
print(json.dumps({
    "repo_root": c.repo_root, "lfs_root": c.lfs_root, "spool": c.spool, "audit_log": c.audit_log,
    "log_file": c.log_file, "secrets": sorted(set(c.hub_tokens.values()) | ({c.gitea_token_file} - {""})),
    "repositories": count, "why": why, "sync": "sync" in cli.cli.commands,
    "template": "template" in [p.name for p in cli.cli.commands["install"].params]}))
"""
PREPARE_SPOOL = """
import json, sys
from gitea_hf_hook.errors import HookError
from gitea_hf_hook.admin.install import _prepare_spool
try:
    _prepare_spool(sys.argv[1])
    print("null")
except HookError as exc:
    print(json.dumps(str(exc)))
"""
VERSION = "import importlib.metadata, json; print(json.dumps(importlib.metadata.version('gitea-hf-hook')))"


def systemd_running(unit_dir: str) -> bool:
    """Whether to tell systemd about the units: only for the system's own unit folder, on a system it runs."""
    return unit_dir == options.UNIT_DIR and os.path.isdir("/run/systemd/system")


def systemctl(*args: str) -> None:
    result = subprocess.run(["systemctl", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise HookError(f"systemctl {' '.join(args)} failed: {result.stderr.strip()}", "see journalctl -xe")


def _ask(venv: str, cache: str, code: str, *args: str) -> Any:
    return environment.ask(venv, cache, code, *args)


def _stamp(st: os.stat_result) -> tuple[int, ...]:
    """What changes when a file is written, replaced, chmodded or chowned."""
    return (st.st_ino, st.st_mtime_ns, st.st_size, st.st_mode, st.st_uid, st.st_gid)


def _hook_files(repo_root: str) -> dict[str, tuple[int, ...] | None]:
    """Each repository's two hook files of ours, by path, with what tells whether a run rewrote them."""
    found: dict[str, tuple[int, ...] | None] = {}
    for repo in sorted(glob.glob(os.path.join(glob.escape(repo_root), "*", "*.git"))):
        if repo.endswith(".wiki.git"):
            continue
        for hook in HOOKS:
            path = os.path.join(repo, "hooks", f"{hook}.d", "hf-publish")
            try:
                found[path] = _stamp(os.lstat(path))
            except OSError:
                found[path] = None
    return found


def _tree(path: str) -> dict[str, tuple[int, ...]]:
    found = {}
    for folder, _dirs, names in os.walk(path):
        for entry in [folder, *(os.path.join(folder, n) for n in names)]:
            found[entry] = _stamp(os.lstat(entry))
    return found


def run_command(venv: str, cache: str, config: str, *args: str) -> list[str]:
    """``gitea-hf-hook args...``; its output lines, or the failure as one error."""
    result = environment.command(venv, cache, config, *args)
    lines = result.stdout.splitlines()
    if result.returncode != 0:
        error = (result.stderr.strip().splitlines() or [f"exit status {result.returncode}"])[-1]
        shown = "".join(f"\n  {line}" for line in lines)
        raise HookError(f"gitea-hf-hook {' '.join(args)} failed: {error}{shown}",
                        "fix what it says, then run install.sh again")
    return lines


class Run:
    """One install: the settings, the manifest it adds to, and what it said."""

    def __init__(self, settings: options.Settings, record: manifest.Manifest, say: Callable[[str], None]) -> None:
        self.s, self.m, self.say = settings, record, say
        self.changed = 0
        self.notes: list[str] = []

    def change(self, line: str) -> None:
        self.changed += 1
        self.say(line)

    def worker_account(self, hook: Account) -> Account:
        worker = accounts.lookup(self.s.worker_user)
        if worker is None:
            worker = accounts.create_worker(self.s.worker_user, hook, self.s.worker_home)
            self.m.users.append(worker.name)
            self.change(f"created the user {worker.name} (uid {worker.uid}, group {accounts.group_name(hook.gid)}, "
                        f"home {worker.home}, no login shell)")
        if files.make_folder(worker.home, self.m, uid=worker.uid, gid=worker.gid, mode=0o700):
            self.m.data.append(worker.home)
            self.change(f"created {worker.home} ({worker.name}, 0700): the worker's home")
        return worker

    def venv(self, checkout: str) -> bool:
        """Build or upgrade the environment when the source or the interpreter changed; True when it did."""
        venv = environment.venv_dir(self.s.prefix)
        digest = environment.source_digest(checkout)
        ready = os.path.isfile(os.path.join(venv, "bin", "gitea-hf-hook"))
        if ready and self.m.source == digest:
            return False
        self.say(f"installing this checkout's gitea-hf-hook into {venv} ...")
        made = not os.path.isdir(venv)
        environment.build(venv, checkout)
        if made:
            self.m.add_tree(venv)
        self.m.source = digest
        self.change(f"{'built' if made else 'upgraded'} {venv}, on {base_interpreter()} "
                    f"(Python {sys.version.split()[0]})")
        return True

    def example_config(self, example: options.Example, worker: Account, hook: Account) -> None:
        config = self.s.config
        if os.path.lexists(config):
            return
        tokens = os.path.join(os.path.dirname(config), "tokens")
        with open(EXAMPLE, encoding="utf-8") as f:
            text = f.read()
        for key, value in (("@VENV@", environment.venv_dir(self.s.prefix)), ("@REPO_ROOT@", example.repo_root),
                           ("@LFS_ROOT@", example.lfs_root), ("@SPOOL@", os.path.join(example.state_dir, "spool")),
                           ("@AUDIT_LOG@", os.path.join(example.state_dir, "audit.jsonl")),
                           ("@LOG_FILE@", os.path.join(example.log_dir, "hook.log")), ("@TOKENS@", tokens)):
            text = text.replace(key, value)
        files.write_file(config, text, self.m)
        self.change(f"wrote the example config {config} (root, 0644): edit it, then run install.sh again")
        if files.make_folder(tokens, self.m, uid=worker.uid, gid=hook.gid, mode=0o700):
            self.m.data.append(tokens)
            self.change(f"created {tokens} ({worker.name}:{accounts.group_name(hook.gid)}, 0700) for the token files")

    def spool(self, venv: str, cache: str, spool: str, worker: Account, hook: Account) -> None:
        """The spool, owned by the worker's user in Gitea's group, its folders with the modes the threat model
        gives them (made by the package's own code)."""
        group = accounts.group_name(hook.gid)
        before = files.owners_and_modes(spool) if os.path.isdir(spool) else {}
        if os.path.islink(spool):
            raise HookError(f"the spool {spool} is a symbolic link", "name the folder itself in the config")
        if not os.path.isdir(spool):
            files.make_folder(os.path.dirname(spool), self.m)
            files.make_folder(spool, self.m, uid=worker.uid, gid=hook.gid, mode=0o2750)
            self.m.data.append(spool)
        st = os.lstat(spool)
        if (st.st_uid, st.st_gid) != (worker.uid, hook.gid):
            if st.st_uid not in (0, worker.uid):
                raise HookError(f"the spool {spool} belongs to uid {st.st_uid}, not to {worker.name}",
                                f"chown {worker.name}:{group} {spool}, if nothing else uses it, then run install.sh "
                                "again")
            os.chown(spool, worker.uid, hook.gid)
        problem = _ask(venv, cache, PREPARE_SPOOL, spool)
        if problem:
            raise HookError(f"the spool {spool}: {problem}", "fix it, then run install.sh again")
        if files.owners_and_modes(spool) != before:
            self.change(f"{'repaired' if before else 'created'} the spool {spool} ({worker.name}:{group}, 2750; "
                        "tmp, queue and cards 2770 for the hooks)")

    def folder_for(self, path: str, owner: Account, group: int, mode: int, what: str) -> None:
        folder = os.path.dirname(path)
        if not os.path.isdir(folder):
            files.make_folder(os.path.dirname(folder), self.m)
            files.make_folder(folder, self.m, uid=owner.uid, gid=group, mode=mode)
            self.m.data.append(folder)
            self.change(f"created {folder} ({owner.name}:{accounts.group_name(group)}, {mode:04o}): {what}")

    def hooks(self, venv: str, cache: str, info: dict[str, Any], upgraded: bool) -> None:
        if not info["repositories"]:
            self.notes.append(f"no hooks installed: {info['why'] or 'no repository under ' + info['repo_root']} "
                              "(new repositories get them from the template; run install.sh again once the config "
                              "names Gitea's repositories)")
            return
        before = _hook_files(info["repo_root"])
        if not self.m.hooks or upgraded or not info["sync"]:
            # The first time, and after an upgrade: install prints what existing refs would meet on their first
            # publish. Without sync (an older release), install again only where a hook file is missing.
            if self.m.hooks and not upgraded and None not in before.values():
                return
            args: tuple[str, ...] = ("install", "--all")
        else:
            args = ("sync",)
        lines = run_command(venv, cache, self.s.config, *args)
        self.m.hooks = True
        if _hook_files(info["repo_root"]) != before:
            self.change(f"gitea-hf-hook {' '.join(args)}:" + "".join(f"\n  {line}" for line in lines))

    def template(self, venv: str, cache: str, info: dict[str, Any]) -> None:
        if not info["template"]:
            self.notes.append("no template directory: this release's gitea-hf-hook has no install --template")
            return
        folder = os.path.join(self.s.prefix, TEMPLATE)
        before = _tree(folder) if os.path.isdir(folder) else {}
        if not before:
            self.m.add_tree(folder)
        run_command(venv, cache, self.s.config, "install", "--template", folder)
        if _tree(folder) != before:
            self.change(f"wrote the template directory {folder} (our two hooks, for init.templateDir)")

    def units(self, info: dict[str, Any], worker: Account, upgraded: bool) -> None:
        interpreter = base_interpreter()
        paths = units.Paths(
            venv=environment.venv_dir(self.s.prefix), config=self.s.config, worker_user=worker.name,
            worker_home=worker.home, hook_user=self.s.hook_user, spool=info["spool"],
            state_dir=os.path.dirname(info["audit_log"]), repo_root=info["repo_root"], lfs_root=info["lfs_root"],
            interpreter=(os.path.dirname(os.path.realpath(interpreter)), os.path.realpath(sys.base_prefix)),
            secrets=tuple(info["secrets"]))
        texts = units.render(paths)
        files.make_folder(self.s.unit_dir, self.m)
        written = [name for name, text in texts.items()
                   if files.write_file(os.path.join(self.s.unit_dir, name), text, self.m)]
        if written:
            self.change(f"wrote {', '.join(written)} in {self.s.unit_dir}")
        if systemd_running(self.s.unit_dir) and (written or upgraded):
            systemctl("daemon-reload")
            systemctl("try-restart", units.WORKER)  # a running worker picks up the new code; a stopped one stays


def install(request: options.Request, checkout: str, say: Callable[[str], None]) -> list[str]:
    """Install or upgrade; returns the closing lines (notes and next steps)."""
    prefix = request.given.get("prefix", options.PREFIX)
    record = manifest.load(prefix) or manifest.Manifest()
    s = options.settings(request.given, record.settings or None)
    if shutil.which("setpriv") is None:
        raise HookError("setpriv is not installed, so the installer cannot check what each user can run",
                        "install util-linux (apt-get install util-linux)")
    hook = accounts.hook_account(s.hook_user)
    if s.worker_user in (s.hook_user, "root"):
        raise HookError(f"the worker's user may not be {s.worker_user}",
                        "the worker holds the Hub tokens, which Gitea's user must never read: pass --worker-user "
                        "with a user of its own")
    existing = accounts.lookup(s.worker_user)
    if existing and (existing.home in ("", "/", "/nonexistent") or not os.path.isabs(existing.home)):
        raise HookError(f"the worker's user {existing.name} has no home of its own ({existing.home or 'none'}), "
                        "where the worker keeps its caches", f"usermod --home /var/lib/{existing.name} "
                        f"{existing.name}, then run install.sh again")
    if existing and request.given.get("worker_home", existing.home) != existing.home:
        raise HookError(f"the worker's user {existing.name} exists, with the home {existing.home}",
                        "--worker-home applies only to a user the installer creates: leave it out")
    s = s._replace(worker_home=existing.home if existing else s.worker_home or f"/var/lib/{s.worker_user}")
    check_interpreter([hook, existing or accounts.would_be(s.worker_user, hook, s.worker_home)])
    run = Run(s, record, say)
    if existing and hook.gid not in existing.groups:
        run.notes.append(f"{existing.name} is not in the group {accounts.group_name(hook.gid)}, so the worker may not "
                         f"read the repositories: usermod -a -G {accounts.group_name(hook.gid)} {existing.name}")
    if files.make_folder(prefix, record):
        run.change(f"created {prefix}")
    record.settings = s._asdict()
    try:
        worker = run.worker_account(hook)
        upgraded = run.venv(checkout)
        venv = environment.venv_dir(prefix)
        check_environment([hook, worker], venv)
        run.example_config(request.example, worker, hook)
        with tempfile.TemporaryDirectory(prefix="gitea-hf-hook-install-") as cache:
            info = _ask(venv, cache, PROBE, s.config)
            if "error" in info:
                raise HookError(f"the config does not load: {info['error']}",
                                "fix it, then run install.sh again; the rest of the install waits for it")
            run.spool(venv, cache, info["spool"], worker, hook)
            audit = os.path.dirname(info["audit_log"])
            if audit in record.folders and audit not in record.data:  # made for the spool; the audit log is data
                record.data.append(audit)
            if info["log_file"]:
                run.folder_for(info["log_file"], hook, hook.gid, 0o750, "the hooks' log")
            run.hooks(venv, cache, info, upgraded)
            run.template(venv, cache, info)
            run.units(info, worker, upgraded)
            version = _ask(venv, cache, VERSION)
    finally:
        manifest.save(prefix, record)
    if not run.changed:
        say(f"nothing to change: {prefix} already holds gitea-hf-hook {version} as this checkout installs it")
    return [f"note: {n}" for n in run.notes] + next_steps(s, worker, hook, info)


def next_steps(s: options.Settings, worker: Account, hook: Account, info: dict[str, Any]) -> list[str]:
    venv = environment.venv_dir(s.prefix)
    group = accounts.group_name(hook.gid)
    tokens = os.path.join(os.path.dirname(s.config), "tokens")
    return [
        "next steps:",
        f"  1. Edit {s.config}: repos, hub.tokens, gitea.url and gitea.token_file. Check an edited copy first:",
        f"       {venv}/bin/gitea-hf-hook config check NEW.yaml",
        "  2. One fine-grained Hub token per namespace, with write access only, readable by the worker alone:",
        f"       install -o {worker.name} -g {group} -m 0600 acme.token {tokens}/acme",
        "  3. In Gitea's app.ini, so that new, forked and migrated repositories get the hooks (then restart Gitea):",
        "       [git.config]",
        f"       init.templateDir = {os.path.join(s.prefix, TEMPLATE)}",
        f"     [repository] ROOT must be {info['repo_root']} and [lfs] PATH {info['lfs_root']}, as the config says.",
        "     Gitea forks that ignore templates (Forgejo) get the hooks into new repositories from the sync timer.",
        "  4. Start the worker and the sync timer:",
        f"       systemctl enable --now {units.WORKER} {units.TIMER}",
        "  5. Run install.sh again after changing the config's paths or tokens: it updates the hooks and the units.",
    ]
