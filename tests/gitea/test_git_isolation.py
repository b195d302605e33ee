"""Gitea's user writes the repositories and their config; the worker, which holds the Hub tokens, reads them.

The attacker's story: they plant, in a repository's own ``config`` or in the worker's home, every setting git
knows that names a program or a remote, each program a small script that leaves a canary file. The worker then
reads that repository with every function of ``git.py`` inside ``git.confined()``: the answers are right and no
canary exists. The main stories also show the trap is armed: the same call outside ``confined()`` springs it.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pytest

from gitea_hf_hook.errors import GitError
from gitea_hf_hook.gitea import git, isolation
from gitea_hf_hook.gitea.git import Entry
from tests.support.gitea_server import Clone, GiteaServer


@pytest.fixture(autouse=True)
def _porcelain_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """Confinement runs plumbing only (see tests/gitea/test_git.py); these tests lift that for porcelain such as
    ``log --show-signature`` and ``ls-remote``, to show the settings beneath hold even where a program is tempting."""
    monkeypatch.setattr(isolation, "PLUMBING", isolation.PLUMBING | {"log", "diff", "ls-remote", "show"})
    monkeypatch.setattr(isolation, "CONVERTING_OPTIONS", frozenset())

MISSING = "1" * 40
SIGNATURES = {
    "pgp": "-----BEGIN PGP SIGNATURE-----\n\niQEzBAABCAAdFiEEexample\n-----END PGP SIGNATURE-----",
    "ssh": "-----BEGIN SSH SIGNATURE-----\nU1NIU0lHZXhhbXBsZQ==\n-----END SSH SIGNATURE-----",
    "x509": "-----BEGIN SIGNED MESSAGE-----\nMIAGCSqGSIb3DQEHAqCAMIACAQEx\n-----END SIGNED MESSAGE-----",
}
HOOKS = ("pre-receive", "update", "post-receive", "post-update", "reference-transaction", "pre-auto-gc",
         "post-index-change", "post-checkout", "pre-commit", "fsmonitor-watchman", "push-to-checkout")
PLUMBING = ("cat-file", "ls-tree", "diff-tree", "merge-base", "rev-list", "rev-parse", "for-each-ref", "log")


class Traps:
    """Programs an attacker names in config, each leaving a canary file named after itself when anything runs it."""

    def __init__(self, base: Path) -> None:
        self.bin = base / "bin"
        self.canaries = base / "canaries"
        self.bin.mkdir(parents=True)
        self.canaries.mkdir()
        # A remote helper installed on the machine under a name no list of protocols holds.
        self.program("git-remote-trap")

    def program(self, name: str) -> str:
        path = self.bin / name
        path.write_text(f"#!/bin/sh\necho \"$*\" >> '{self.canaries / name}'\n")
        path.chmod(0o755)
        return str(path)

    def hooks(self, where: str) -> str:
        folder = self.bin / f"{where}.hooks"
        folder.mkdir()
        for hook in HOOKS:
            (folder / hook).symlink_to(self.program(f"{where}.hook.{hook}"))
        return str(folder)

    def sprung(self) -> list[str]:
        return sorted(p.name for p in self.canaries.iterdir())

    def reset(self) -> None:
        for canary in self.canaries.iterdir():
            canary.unlink()


class History(NamedTuple):
    """What the repository holds, read with plain git before anything was planted."""

    repo: Path
    first: str
    second: str
    tag: str
    signed: dict[str, str]  # signature format -> a commit carrying a gpgsig header of that format
    tree: list[Entry]
    blobs: dict[bytes, bytes]  # path of the second commit -> content


@pytest.fixture
def traps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Traps:
    traps = Traps(tmp_path / "attacker")
    monkeypatch.setenv("PATH", f"{traps.bin}{os.pathsep}{os.environ['PATH']}")
    return traps


@pytest.fixture
def history(server: GiteaServer, tmp_path: Path) -> History:
    """acme/model on Gitea's disk: two commits on main, an annotated tag, and three commits signed three ways."""
    bare = server.create_repo("acme", "model")
    clone = Clone(server, bare, "acme", "model", tmp_path / "work")
    first = clone.commit({"README.md": "# model\n", "config.json": "{}\n"}, "first")
    (clone.path / "README.md").unlink()
    second = clone.commit({"config.json": '{"layers": 2}\n', "data.txt": "rows\n"}, "second")
    clone.git("tag", "-a", "-m", "release", "v1")
    clone.git("push", "--quiet", str(bare), "main", "v1")
    tree_id = clone.git("rev-parse", f"{second}^{{tree}}")
    signed = {}
    for kind, signature in SIGNATURES.items():
        header = "gpgsig " + "\n ".join(signature.split("\n"))
        raw = (f"tree {tree_id}\nparent {second}\nauthor Alice Engineer <alice@example.com> 1700000000 +0000\n"
               f"committer Alice Engineer <alice@example.com> 1700000000 +0000\n{header}\n\n"
               f"Signed {kind}\n\nThe release.\n")
        signed[kind] = _git(bare, "hash-object", "-t", "commit", "-w", "--stdin", input=raw.encode())
        _git(bare, "update-ref", f"refs/heads/signed-{kind}", signed[kind])
    tree = [Entry("100644", clone.git("rev-parse", f"{second}:{name}"), name.encode())
            for name in ("config.json", "data.txt")]
    return History(bare, first, second, clone.git("rev-parse", "v1"), signed, tree,
                   {b"config.json": b'{"layers": 2}\n', b"data.txt": b"rows\n"})


def _git(repo: Path, *args: str, input: bytes | None = None) -> str:  # noqa: A002 - as subprocess.run names it
    return subprocess.run(["git", "-C", str(repo), *args], input=input, capture_output=True,
                          check=True).stdout.decode().strip()


def _size(repo: Path, oid: str) -> int:
    return int(_git(repo, "cat-file", "-s", oid))


def hostile_settings(traps: Traps, where: str) -> list[tuple[str, str]]:
    """Every setting that names a program or a remote, each program its own canary (``<where>.<key>``)."""

    def trap(key: str) -> str:
        return traps.program(f"{where}.{key}".replace("/", "_"))

    attributes = traps.bin / f"{where}.attributes"
    attributes.write_text("* filter=trap diff=trap merge=trap\n")
    settings = [(key, trap(key)) for key in (
        "core.fsmonitor", "core.sshCommand", "core.gitProxy", "core.askPass", "core.pager", "core.editor",
        "core.alternateRefsCommand", "sequence.editor", "credential.helper", "credential.https://example.com.helper",
        "diff.external", "diff.trap.command", "diff.trap.textconv", "filter.trap.clean", "filter.trap.smudge",
        "filter.trap.process", "merge.trap.driver", "gpg.program", "gpg.openpgp.program", "gpg.x509.program",
        "gpg.ssh.program", "gpg.ssh.defaultKeyCommand", "interactive.diffFilter", "trailer.sign.command",
        "uploadpack.packObjectsHook", f"remote.{where}.uploadpack", f"remote.{where}.receivepack",
        *(f"pager.{command}" for command in PLUMBING))]
    settings += [(f"alias.{command}", "!" + trap(f"alias.{command}")) for command in PLUMBING]
    settings += [
        ("core.hooksPath", traps.hooks(where)),
        ("core.attributesFile", str(attributes)),
        ("filter.trap.required", "true"),
        ("gpg.ssh.allowedSignersFile", str(attributes)),  # any file that exists: verifying needs one
        ("log.showSignature", "true"),
        ("merge.verifySignatures", "true"),
        ("commit.gpgSign", "true"),
        ("tag.gpgSign", "true"),
        ("gc.auto", "1"),
        ("maintenance.auto", "true"),
        ("submodule.recurse", "true"),
        ("fetch.recurseSubmodules", "true"),
        ("transfer.bundleURI", "true"),
        ("protocol.allow", "always"),
        ("protocol.ext.allow", "always"),
        ("protocol.trap.allow", "always"),
        # Promisor remotes: a missing object would be fetched from them, by a program and by a remote helper.
        (f"remote.{where}.url", f"ext::{trap(f'remote.{where}.url')} %S"),
        (f"remote.{where}.promisor", "true"),
        (f"remote.{where}-helper.url", "trap::somewhere"),
        (f"remote.{where}-helper.promisor", "true"),
    ]
    return settings


def write_config(path: Path, settings: list[tuple[str, str]]) -> None:
    """Append ``settings`` to a git config file in git's own syntax."""
    lines = []
    for key, value in settings:
        section, _, rest = key.partition(".")
        subsection, _, name = rest.rpartition(".")
        header = f'[{section} "{subsection}"]' if subsection else f"[{section}]"
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        lines += [header, f'\t{name} = "{escaped}"']
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write("\n".join(lines) + "\n")


def plant_in_repository(history: History, traps: Traps) -> None:
    """The repository's own config, a file it includes, its info/attributes, and a partial-clone extension."""
    included = traps.bin / "included.config"
    write_config(included, hostile_settings(traps, "include"))
    write_config(history.repo / "config", [("core.repositoryFormatVersion", "1"),
                                           ("extensions.partialClone", "repo"),
                                           ("include.path", str(included)),
                                           *hostile_settings(traps, "repo")])
    (history.repo / "info").mkdir(exist_ok=True)
    (history.repo / "info" / "attributes").write_text("* filter=trap diff=trap merge=trap\n")


def read_everything(h: History, signatures: dict[str, bytes]) -> None:
    """Every function of git.py on the repository, and the answers plain git gave before anything was planted.

    ``signatures``: what ``log --show-signature`` says of each signed commit, when it cannot check any.
    """
    cwd = str(h.repo)
    assert git.list_tree(h.second, cwd) == h.tree
    assert [(c.status, c.path) for c in git.diff(h.first, h.second, cwd)] == [
        ("D", b"README.md"), ("M", b"config.json"), ("A", b"data.txt")]
    assert git.changed_files(h.first, h.second, cwd) == h.tree
    assert git.object_info([h.second, MISSING, *h.signed.values()], cwd) == [
        (h.second, "commit", _size(h.repo, h.second)), None,
        *((oid, "commit", _size(h.repo, oid)) for oid in h.signed.values())]
    objects = list(git.read_objects([e.oid for e in h.tree] + [MISSING], cwd))
    assert objects == [(e.oid, "blob", len(h.blobs[e.path]), h.blobs[e.path]) for e in h.tree] + [None]
    assert git.is_ancestor(h.first, h.second, cwd)
    assert not git.is_ancestor(h.second, h.first, cwd)
    assert git.reachable_from_any(h.first, [h.signed["pgp"]], cwd)
    assert not git.reachable_from_any(h.signed["pgp"], [h.second, h.first], cwd)
    assert git.refs("refs/heads/", cwd) == {"refs/heads/main": h.second,
                                            **{f"refs/heads/signed-{k}": oid for k, oid in h.signed.items()}}
    assert git.rev_parse("refs/tags/v1", cwd) == h.tag
    assert git.rev_parse("refs/heads/missing", cwd) is None
    for kind, oid in h.signed.items():
        assert git.commit_message(oid, cwd) == f"Signed {kind}\n\nThe release.\n".encode()
        # Porcelain, asked outright for the signature: the program that would check it cannot be started.
        shown = git.run("log", "-1", "--show-signature", "--format=%G? %s", oid, cwd=cwd)
        assert shown.stdout == signatures[kind] + f" Signed {kind}\n".encode()
    assert git.run("rev-list", "--count", "main", cwd=cwd).stdout == b"2\n"


def test_a_repository_config_that_names_programs_runs_none_of_them(history: History, traps: Traps):
    plant_in_repository(history, traps)
    with git.confined():
        # No signature (N); a bad one (B) for ssh, whose verifier the repository's allowedSignersFile asks for.
        read_everything(history, {"pgp": b"N", "ssh": b"B", "x509": b"N"})
    assert traps.sprung() == []

    # The trap is armed: outside confined(), asking for a missing object makes git fetch it from every promisor
    # remote, a program and a remote helper, and showing a signed commit runs the configured gpg program.
    git.object_info([MISSING], str(history.repo))
    git.run("log", "-1", "--format=%G?", history.signed["pgp"], cwd=str(history.repo))
    assert traps.sprung() == ["git-remote-trap", "include.remote.include.url", "repo.gpg.openpgp.program",
                              "repo.remote.repo.url"]


def test_what_no_setting_can_override_still_runs_nothing_in_the_plumbing_we_use(history: History, traps: Traps):
    """Includes, repository extensions, keys under names the repository picks, and first-match-wins keys: -c
    cannot outrank them, and cat-file, ls-tree, diff-tree, merge-base, rev-list, rev-parse and for-each-ref
    still start nothing."""
    included = traps.bin / "included.config"
    write_config(included, [("core.fsmonitor", traps.program("included.core.fsmonitor"))])
    names = [(f"{section}.mine.{key}", traps.program(f"{section}.mine.{key}")) for section, key in (
        ("filter", "clean"), ("filter", "smudge"), ("filter", "process"), ("diff", "command"), ("diff", "textconv"),
        ("merge", "driver"), ("remote", "uploadpack"), ("remote", "receivepack"), ("difftool", "cmd"),
        ("mergetool", "cmd"), ("trailer", "command"), ("tar", "command"))]
    write_config(history.repo / "config", [
        ("include.path", str(included)), ("includeIf.gitdir:/.path", str(included)),
        ("core.repositoryFormatVersion", "1"), ("extensions.partialClone", "mine"),
        ("remote.mine.url", f"ext::{traps.program('remote.mine.url')} %S"), ("remote.mine.promisor", "true"),
        ("protocol.ext.allow", "always"), ("remote.mine.vcs", "trap"), ("protocol.trap.allow", "always"),
        ("core.gitProxy", traps.program("core.gitProxy")), ("filter.mine.required", "true"),
        *names, *((f"pager.{c}", traps.program(f"pager.{c}")) for c in PLUMBING),
        *((f"alias.{c}", "!" + traps.program(f"alias.{c}")) for c in PLUMBING)])
    (history.repo / "info").mkdir(exist_ok=True)
    (history.repo / "info" / "attributes").write_text("* filter=mine diff=mine merge=mine\n")
    with git.confined():
        read_everything(history, {"pgp": b"N", "ssh": b"No signature\nN", "x509": b"N"})
    assert traps.sprung() == []


@pytest.mark.parametrize("where", ["home", "xdg"])
def test_a_git_config_in_the_workers_home_changes_nothing(history: History, traps: Traps, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch, where: str):
    home, xdg = tmp_path / "worker-home", tmp_path / "worker-xdg"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(xdg))
    write_config(home / ".gitconfig" if where == "home" else xdg / "git" / "config", hostile_settings(traps, where))
    for attributes in (home / ".config" / "git" / "attributes", xdg / "git" / "attributes"):
        attributes.parent.mkdir(parents=True, exist_ok=True)
        attributes.write_text("* filter=trap diff=trap merge=trap\n")
    with git.confined():
        # The allowedSignersFile planted there is not read either: without one, ssh says "No signature" first.
        read_everything(history, {"pgp": b"N", "ssh": b"No signature\nN", "x509": b"N"})
    assert traps.sprung() == []

    git.object_info([MISSING], str(history.repo))
    assert traps.sprung() == ["git-remote-trap", f"{where}.remote.{where}.url"]


def test_no_transport_opens_whatever_the_repository_allows(history: History, traps: Traps, tmp_path: Path):
    """ls-remote stands for any command that would connect: every kind of address is refused before it runs."""
    plant_in_repository(history, traps)
    cwd = str(history.repo)
    other = tmp_path / "other.git"
    _git(tmp_path, "init", "--quiet", "--bare", str(other))
    urls = {"ext": f"ext::{traps.program('ext-url')} %S", "trap": "trap::somewhere", "file": str(other),
            "git": "git://127.0.0.1:9/x", "ssh": "ssh://example.invalid/x", "https": "https://127.0.0.1:9/x"}
    with git.confined():
        for protocol, url in urls.items():
            with pytest.raises(GitError) as caught:
                git.run("ls-remote", url, cwd=cwd)
            # Refused, and said without git's own words: a confined reader never repeats what git read.
            assert str(caught.value) == (f"git ls-remote failed in {cwd} (exit 128) (check that the repository is "
                                         "intact with git fsck)"), protocol
    assert traps.sprung() == []


def test_the_settings_alone_would_let_a_repository_allow_its_own_remote_helper(history: History, traps: Traps):
    """A protocol's own policy outranks protocol.allow, and a repository may name any helper installed here: why
    the confined environment also carries an empty GIT_ALLOW_PROTOCOL."""
    plant_in_repository(history, traps)
    env = {**isolation.environment(os.environ)}
    del env["GIT_ALLOW_PROTOCOL"]
    subprocess.run(["git", *isolation.ARGUMENTS, "-c", f"safe.directory={history.repo}", "-C", str(history.repo),
                    "ls-remote", "trap::somewhere"], env=env, capture_output=True)
    assert traps.sprung() == ["git-remote-trap"]


def test_porcelain_diff_stops_rather_than_start_an_external_diff(history: History, traps: Traps):
    """diff.external has no "off" value: confined, porcelain diff fails where it would start the program."""
    write_config(history.repo / "config", [("diff.external", traps.program("diff.external"))])
    cwd = str(history.repo)
    with git.confined(), pytest.raises(GitError) as caught:
        git.run("diff", history.first, history.second, cwd=cwd)
    assert str(caught.value) == f"git diff failed in {cwd} (exit 128) (check that the repository is intact with git fsck)"
    assert traps.sprung() == []


def test_confinement_does_not_reach_porcelain_that_converts_content(history: History, traps: Traps):
    """The limit, pinned. A repository's attributes choose filter and diff drivers under names of its own, which
    no setting can reach; the functions of git.py never convert content, porcelain diff, log -p, show and
    checkout do. Never run those through git.run(), confined or not."""
    plant_in_repository(history, traps)
    with git.confined(), pytest.raises(GitError):
        git.run("diff", "--no-ext-diff", history.first, history.second, cwd=str(history.repo))
    assert traps.sprung() == ["repo.filter.trap.process"]


def test_a_repository_of_another_owner_is_trusted_for_that_one_folder(history: History, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch):
    """Plain git run as root refuses a repository it does not own; the confined call trusts exactly its folder."""
    if os.geteuid() != 0:
        pytest.skip("hands the repository to another uid with chown")
    subprocess.run(["chown", "-R", "12345:12345", str(history.repo)], check=True)
    cwd = str(history.repo)
    with pytest.raises(GitError) as caught:
        git.refs("refs/heads/", cwd)
    assert str(caught.value) == (f"git for-each-ref refused {cwd}: fatal: detected dubious ownership in repository "
                                 f"at '{cwd}' (run this as the user that owns {cwd}, or trust that one folder in "
                                 "safe.directory)")
    link = tmp_path / "model-link.git"
    link.symlink_to(history.repo)
    monkeypatch.chdir(tmp_path)
    with git.confined():
        assert git.refs("refs/heads/main", cwd) == {"refs/heads/main": history.second}
        # Reached through a symbolic link, it is the same folder.
        assert git.rev_parse("main", str(link)) == history.second
        # With no folder given, the current one.
        os.chdir(history.repo)
        assert git.rev_parse("main") == history.second
        # A folder inside it is not the repository folder: nothing else is trusted.
        inside = str(history.repo / "refs")
        with pytest.raises(GitError) as caught:
            git.rev_parse("main", inside)
        assert str(caught.value) == (f"git rev-parse failed in {inside} (exit 128) (check that the repository is "
                                     "intact with git fsck)")


def git_children() -> list[int]:
    """The git processes this process started and has not reaped yet."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path("/proc", entry, "stat").read_text()
        except OSError:
            continue
        name, fields = stat[stat.index("(") + 1:stat.rindex(")")], stat[stat.rindex(")") + 2:].split()
        if name == "git" and int(fields[1]) == os.getpid():
            found.append(int(entry))
    return found


def test_confined_git_gets_an_environment_built_from_scratch(history: History, monkeypatch: pytest.MonkeyPatch,
                                                             tmp_path: Path):
    # Big blobs, so that git is still alive answering a batch we have only begun to read.
    cwd = str(history.repo)
    oids = [_git(history.repo, "hash-object", "-w", "--stdin", input=bytes([i]) * 1_000_000) for i in range(3)]
    token = "hf_" + secrets.token_hex(16)
    for name, value in {"HF_TOKEN": token, "GIT_DIR": str(tmp_path), "GIT_OBJECT_DIRECTORY": str(tmp_path),
                        "GIT_CONFIG_PARAMETERS": "'core.fsmonitor'='/bin/false'", "GIT_CONFIG_COUNT": "1",
                        "GIT_CONFIG_KEY_0": "core.pager", "GIT_CONFIG_VALUE_0": "less", "GIT_SSH_COMMAND": "ssh",
                        "GIT_ASKPASS": "/bin/false", "SSH_ASKPASS": "/bin/false", "GIT_EXTERNAL_DIFF": "/bin/false",
                        "PAGER": "less", "GIT_PAGER": "less", "EDITOR": "vi", "VISUAL": "vi", "GIT_EDITOR": "vi",
                        "XDG_CONFIG_HOME": str(tmp_path), "https_proxy": "http://127.0.0.1:9",
                        "GIT_TRACE2_EVENT": str(tmp_path / "trace")}.items():
        monkeypatch.setenv(name, value)
    with git.confined():
        objects = git.read_objects(oids, cwd)
        assert next(objects) == (oids[0], "blob", 1_000_000, bytes([0]) * 1_000_000)
        [pid] = git_children()
        environ = Path(f"/proc/{pid}/environ").read_bytes().decode().split("\0")[:-1]
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]
        objects.close()
    assert dict(line.split("=", 1) for line in environ) == {
        "PATH": os.environ["PATH"], "HOME": "/nonexistent", "LC_ALL": "C", "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_TERMINAL_PROMPT": "0", "GIT_NO_REPLACE_OBJECTS": "1",
        "GIT_NO_LAZY_FETCH": "1", "GIT_ATTR_NOSYSTEM": "1", "GIT_PROTOCOL_FROM_USER": "0", "GIT_ALLOW_PROTOCOL": ""}
    assert argv == ["git", *isolation.ARGUMENTS, "-c", f"safe.directory={os.path.realpath(cwd)}",
                    "--git-dir", os.path.realpath(cwd), "cat-file", "--batch"]
    assert not [arg for arg in argv if arg.startswith("safe.directory=") and arg.endswith("*")]
    for key in ("core.fsmonitor", "core.hooksPath", "core.sshCommand", "core.gitProxy", "core.askPass",
                "core.pager", "core.editor", "sequence.editor", "core.alternateRefsCommand", "credential.helper",
                "diff.external", "gpg.program", "gpg.openpgp.program", "gpg.x509.program", "gpg.ssh.program",
                "gpg.ssh.defaultKeyCommand", "log.showSignature", "protocol.allow", "uploadpack.packObjectsHook",
                "core.attributesFile"):
        assert key in dict(isolation.OVERRIDES), key


def test_outside_confined_the_hook_environment_still_reaches_git(history: History, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch):
    """During pre-receive, pushed objects sit in a quarantine folder that only GIT_OBJECT_DIRECTORY names."""
    quarantine = tmp_path / "incoming"
    quarantine.mkdir()
    env = {**os.environ, "GIT_OBJECT_DIRECTORY": str(quarantine),
           "GIT_ALTERNATE_OBJECT_DIRECTORIES": str(history.repo / "objects")}
    pushed = subprocess.run(["git", "hash-object", "-w", "--stdin"], input=b"pushed\n", cwd=history.repo, env=env,
                            capture_output=True, check=True).stdout.decode().strip()
    for name in ("GIT_OBJECT_DIRECTORY", "GIT_ALTERNATE_OBJECT_DIRECTORIES"):
        monkeypatch.setenv(name, env[name])
    cwd = str(history.repo)
    commit = (history.second, "commit", _size(history.repo, history.second))
    assert git.object_info([pushed, history.second], cwd) == [(pushed, "blob", 7), commit]
    with git.confined():
        assert git.object_info([pushed, history.second], cwd) == [None, commit]
        with git.confined():
            pass
        assert git.object_info([pushed], cwd) == [None], "leaving an inner confined() ended the outer one"
    assert git.object_info([pushed], cwd) == [(pushed, "blob", 7)]


def test_the_hook_path_never_imports_the_isolation_module(history: History):
    script = ("import sys; from gitea_hf_hook.gitea import git; git.refs('refs/heads/', sys.argv[1]); "
              "print('gitea_hf_hook.gitea.isolation' in sys.modules); "
              "git.confined().__enter__(); print('gitea_hf_hook.gitea.isolation' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", script, str(history.repo)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "False\nTrue\n"



def test_git_never_repeats_what_it_read_for_a_confined_reader(history: History, tmp_path: Path):
    """Gitea's user can point packed-refs at any file the reader may read; git then quotes its first line in its
    error. The confined reader's message says only what failed, so no such line reaches a job or a log."""
    secret = tmp_path / "token"
    secret.write_text("0123456789abcdef0123456789abcdef01234567\n")  # shaped like a ref line's object id
    _git(history.repo, "pack-refs", "--all")
    (history.repo / "refs" / "heads" / "main").unlink(missing_ok=True)
    packed = history.repo / "packed-refs"
    packed.unlink()
    packed.symlink_to(secret)
    with git.confined(), pytest.raises(GitError) as caught:
        git.rev_parse("main", str(history.repo))
    assert "0123456789abcdef" not in str(caught.value)
    assert str(caught.value) == (f"git rev-parse failed in {history.repo} (exit 128) (check that the repository is "
                                 "intact with git fsck)")


def test_a_git_file_in_a_bare_repository_sends_the_confined_reader_nowhere(history: History, tmp_path: Path):
    """A bare repository is named with --git-dir: a ".git" file inside it that points elsewhere is not read."""
    other = tmp_path / "other.git"
    _git(tmp_path, "init", "--quiet", "--bare", str(other))
    (history.repo / ".git").write_text(f"gitdir: {other}\n")
    with git.confined():
        assert git.rev_parse("main", str(history.repo)) == history.second


def test_a_fifo_in_the_repository_cannot_hold_a_confined_reader(history: History, monkeypatch: pytest.MonkeyPatch):
    """A FIFO where the config should be blocks git when it opens it: the confined call is stopped at its
    deadline and says so, instead of holding the worker forever."""
    monkeypatch.setattr(git, "CONFINED_DEADLINE", 1.0)
    (history.repo / "config").unlink()
    os.mkfifo(history.repo / "config")
    with git.confined(), pytest.raises(GitError) as caught:
        git.rev_parse("main", str(history.repo))
    assert str(caught.value) == (f"git rev-parse in {history.repo} ran over 1 s and was stopped (something in the "
                                 "repository blocks reading it, such as a FIFO: look at its files)")
