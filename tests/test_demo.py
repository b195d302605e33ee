"""A newcomer runs the demo: ``demo/run``, what ``./install.sh --demo`` runs once ./.venv is made, as a real process.

They read two rejections, a queued push, the worker's publish and the commit status it posted, the files listed back
from the Hub, status and audit verify, and how to go on; the demo stops what it started, and one printed command
removes the sandbox.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlsplit

import pytest

from tests.support import two_users

DEMO = Path(__file__).resolve().parents[1] / "demo" / "run"
REPO = "acme/bert-tiny"


class Shown(NamedTuple):
    """What the demo printed, by section number, and what its sandbox says about the run."""

    code: int
    stdout: str
    stderr: str
    sections: dict[int, list[str]]
    sandbox: Path
    hub: str  # the emulator's URL, as config.yaml names it
    gitea: str  # the Gitea API stand-in's URL
    hub_token: str

    @property
    def config(self) -> Path:
        return self.sandbox / "config.yaml"

    @property
    def bare(self) -> Path:
        return self.sandbox / "gitea" / "gitea-repositories" / "acme" / "bert-tiny.git"


def sections(stdout: str) -> dict[int, list[str]]:
    """Each ``== N. Title ===`` section's lines, without git's trailing padding after ``remote:`` lines."""
    found: dict[int, list[str]] = {0: []}
    current = 0
    for line in stdout.splitlines():
        heading = re.fullmatch(r"== (\d+)\. .* =+", line)
        if heading:
            current = int(heading.group(1))
            found[current] = []
        found[current].append(line.rstrip())
    for lines in found.values():
        while lines and not lines[-1]:
            lines.pop()
    return found


def config_value(config: Path, key: str) -> str:
    [value] = re.findall(rf"^  {key}: (.*)$", config.read_text(), re.MULTILINE)
    return str(value)


def shown(done: subprocess.CompletedProcess[str], sandbox: Path) -> Shown:
    config = sandbox / "config.yaml"
    return Shown(done.returncode, done.stdout, done.stderr, sections(done.stdout), sandbox,
                 config_value(config, "endpoint"), config_value(config, "url"),
                 (sandbox / "hub-token").read_text().strip())


def contiguous(lines: list[str], expected: list[str]) -> bool:
    return any(lines[i:i + len(expected)] == expected for i in range(len(lines) - len(expected) + 1))


def matching(lines: list[str], pattern: str) -> list[re.Match[str]]:
    return [m for m in (re.fullmatch(pattern, line) for line in lines) if m]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Shown:
    sandbox = tmp_path_factory.mktemp("demo") / "sandbox"
    done = subprocess.run([str(DEMO), "--dir", str(sandbox)], capture_output=True, text=True, timeout=120)
    return shown(done, sandbox)


def rejected(demo: Shown, pusher: str, reasons: list[str]) -> list[str]:
    """What ``git push origin main`` prints when the hook refuses it."""
    return [f"$ git push origin main        # as {pusher}, over SSH",
            f"remote: hf-publish: rejected refs/heads/main of {REPO}, which publishes to {demo.hub}/{REPO} (branch main):",
            *[f"remote:   {reason}" for reason in reasons],
            f"To {demo.bare}",
            " ! [remote rejected] main -> main (pre-receive hook declined)",
            f"error: failed to push some refs to '{demo.bare}'",
            "(exit code 1)"]


def test_the_demo_runs_to_the_end_with_nothing_on_standard_error(demo: Shown) -> None:
    assert (demo.code, demo.stderr) == (0, ""), demo.stdout + demo.stderr
    assert sorted(demo.sections) == list(range(9))


def test_a_push_by_someone_who_is_not_a_publisher_is_rejected(demo: Shown) -> None:
    assert contiguous(demo.sections[2], rejected(demo, "bob", [
        "refs/heads/main: bob may not publish to acme/bert-tiny (publishers: alice; ask a Gitea admin to add you)"]))


def test_a_pickle_and_a_leaked_token_are_rejected_and_the_token_is_never_printed(demo: Shown) -> None:
    assert contiguous(demo.sections[3], rejected(demo, "alice", [
        "pytorch_model.bin: pickle files can run code when loaded (convert the weights to safetensors)",
        "train.py:3: looks like a Hugging Face token (remove it, rewrite the commit, and revoke the token)"]))
    for text in (demo.stdout, demo.stderr):
        assert not re.search(r"hf_[A-Za-z0-9]{30,}", text)
        assert demo.hub_token not in text


def test_the_push_with_git_lfs_weights_is_accepted_and_queued(demo: Shown) -> None:
    lines = demo.sections[4]
    assert contiguous(lines, ["$ cat model.safetensors        # the Git LFS pointer",
                              "version https://git-lfs.github.com/spec/v1"])
    [queued] = matching(lines, rf"remote: hf-publish: queued {REPO}@([0-9a-f]{{7}}) -> {re.escape(demo.hub)}/{REPO} "
                               r"\(main\), job (\d{8}-\d{6}-[0-9a-f]{8})")
    commit, job = queued.groups()
    assert contiguous(lines, [queued.group(0), f"To {demo.bare}", " * [new branch]      main -> main"])
    assert matching(lines, rf"{job}  queued  {REPO} branch main  {commit}  0 .* due")


def test_the_worker_publishes_it_and_posts_the_commit_status_to_gitea(demo: Shown) -> None:
    lines = demo.sections[5]
    [job] = re.findall(r"job (\d{8}-\d{6}-[0-9a-f]{8})", "\n".join(demo.sections[4]))
    [published] = matching(lines, rf".* gitea-hf-hook worker\[\d+\]: published job {job}: ([0-9a-f]{{7}}) is {REPO} "
                                  r"branch main \(hub commit ([0-9a-f]{12})\)")
    commit, hub_commit = published.groups()
    [post, _] = matching(lines, rf"  POST /api/v1/repos/{REPO}/statuses/({commit}[0-9a-f]{{33}})")
    sha = post.group(1)
    assert contiguous(lines, [
        f"  POST /api/v1/repos/{REPO}/statuses/{sha}", "    state: pending", "    context: huggingface/publish",
        "    description: publishing to acme/bert-tiny branch main",
        f"  POST /api/v1/repos/{REPO}/statuses/{sha}", "    state: success", "    context: huggingface/publish",
        "    description: published to acme/bert-tiny branch main"])
    assert matching(lines, rf"    target_url: {re.escape(demo.hub)}/{REPO}/commit/{hub_commit}[0-9a-f]{{28}}")


def test_the_published_files_are_listed_back_from_the_hub_with_their_sizes(demo: Shown) -> None:
    lines = demo.sections[6]
    assert contiguous(lines, [
        f'>>> api.list_repo_files("{REPO}")',
        "['.gitattributes', 'README.md', 'config.json', 'model.safetensors', 'train.py']"])
    assert "model.safetensors 256 True" in lines and "README.md 77 False" in lines
    assert contiguous(lines, [f'>>> api.list_repo_commits("{REPO}")[0].title', "'Add bert-tiny'"])
    assert matching(lines, r"model\.safetensors, downloaded from the Hub: 256 bytes, sha256 [0-9a-f]{12}\.\.\., the same "
                           "as in Gitea's LFS store")


def test_status_and_audit_verify_say_what_happened(demo: Shown) -> None:
    lines = demo.sections[7]
    command = f"$ gitea-hf-hook --config {demo.config}"
    assert contiguous(lines, [f"{command} status", "queue: empty", "active: 0 jobs", "failed: 0 jobs", "done: 1 job",
                              "targets: 1, none failing", f"{command} audit verify"])
    verified = lines[lines.index(f"{command} audit verify") + 1]
    assert re.fullmatch(rf"{re.escape(str(demo.sandbox))}/hf/audit\.jsonl: \d+ records? verified", verified)
    assert not any(line.startswith("(exit code") for line in lines)


def test_the_demo_stops_the_emulator_and_the_gitea_stand_in_it_started(demo: Shown) -> None:
    for url in (demo.hub, demo.gitea):
        address = urlsplit(url)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((address.hostname, address.port), timeout=5).close()


def test_it_ends_with_the_keys_to_change_and_a_command_that_removes_the_sandbox(demo: Shown) -> None:
    lines = demo.sections[8]
    keys = [line.split()[0] for line in lines if re.match(r"  [a-z_.]+(, [a-z_]+)? {2,}", line)]
    assert keys == ["gitea.repo_root", "gitea.lfs_root", "gitea.url", "gitea.token_file", "hub.endpoint",
                    "hub.tokens", "spool,", "repos"]
    assert any("sudo ./install.sh" in line for line in lines)
    [clean] = [line.strip() for line in lines if line.strip().startswith("rm -rf ")]
    assert shlex.split(clean) == ["rm", "-rf", str(demo.sandbox)]
    subprocess.run(shlex.split(clean), check=True)
    assert not demo.sandbox.exists()


def test_a_folder_that_already_exists_is_refused_untouched(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine\n")
    done = subprocess.run([str(DEMO), "--dir", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == (f"demo: {tmp_path} already exists (name a new folder with --dir, or leave --dir out for "
                           "a temp one)\n")
    assert os.listdir(tmp_path) == ["notes.txt"]


@pytest.fixture
def other_users_home() -> Iterator[Path]:
    """A home folder of git's own, in a folder other users can enter (pytest's temp folders are root's alone)."""
    two_users.require_other_uids()
    base = Path(tempfile.mkdtemp(prefix="gitea-hf-hook-demo-test-"))
    base.chmod(0o755)
    home = base / "home"
    home.mkdir()
    two_users.chown_tree(home, two_users.GIT)
    yield home
    shutil.rmtree(base)


def test_a_user_other_than_root_runs_the_demo_too(other_users_home: Path) -> None:
    sandbox = other_users_home / "sandbox"
    done = two_users.run_as(two_users.GIT, other_users_home, [str(DEMO), "--dir", str(sandbox)])
    assert (done.returncode, done.stderr) == (0, ""), done.stdout + done.stderr
    run = shown(done, sandbox)
    assert matching(run.sections[5], r".* published job \S+: [0-9a-f]{7} is acme/bert-tiny branch main .*")
    assert "(The demo runs as root here" not in run.stdout
    assert sandbox.stat().st_uid == two_users.GIT.uid
