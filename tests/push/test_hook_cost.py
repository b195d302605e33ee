"""The hook stays light: no heavy imports on the push path, and a fixed number of git processes per push."""

from __future__ import annotations

import os
import re
import shlex
import struct
import subprocess
from pathlib import Path

from tests.support.gitea_server import Clone, GiteaServer, gitea_env
from tests.support.rules import CARD

HEAVY = ("huggingface_hub", "click", "filelock", "httpx", "httpx2", "requests")


def git_processes(trace: Path) -> list[str]:
    """The git commands that ran during a push, from git's own GIT_TRACE log, minus the client's."""
    commands = re.findall(r"trace: built-in: git ([\w-]+)", trace.read_text())
    # receive-pack stores a small pack loose and a large one as a pack: one process either way.
    commands = ["unpack" if c in ("unpack-objects", "index-pack") else c for c in commands]
    return [c for c in commands if c not in ("push", "pack-objects", "send-pack")]


def test_a_push_runs_the_same_number_of_git_processes_for_3_or_300_files(clone: Clone, tmp_path: Path):
    clone.commit()
    assert clone.push("main").ok
    counts = []
    for n in (3, 300):
        clone.commit({f"data/{n}-{i}.txt": f"line {i}\n" for i in range(n)})
        trace = tmp_path / f"trace-{n}.log"
        assert clone.push("main", env={"GIT_TRACE": str(trace)}).ok
        counts.append(git_processes(trace))
    assert counts[0] == counts[1], counts
    # receive-pack's own (unpack, connectivity rev-list, alternate refs, gc --auto) and ours: the fast-forward
    # test, one diff-tree, one batch of sizes and one of contents. post-receive runs none.
    assert sorted(counts[0]) == sorted(["receive-pack", "unpack", "rev-list", "for-each-ref", "gc",
                                        "merge-base", "diff-tree", "cat-file", "cat-file"])


def test_thirty_refs_of_one_commit_read_its_files_once(clone: Clone, tmp_path: Path):
    clone.commit()
    assert clone.push("main").ok
    clone.commit({f"data/{i}.txt": f"line {i}\n" for i in range(50)})
    tags = [f"v1.{i}" for i in range(30)]
    for tag in tags:
        clone.git("tag", tag)
    trace = tmp_path / "trace.log"
    assert clone.push("main", *tags, env={"GIT_TRACE": str(trace)}).ok
    # Per ref only what cannot be shared: listing its files. The contents come in one batch for all.
    assert git_processes(trace).count("cat-file") == 3  # the tags peeled, then sizes and contents



def test_the_hook_path_never_imports_the_hub_client_or_the_cli(gitea: GiteaServer, clone: Clone):
    header = b'{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'
    clone.commit({"README.md": CARD, "config.json": "{}", "notes.txt": "text",
                  "model.safetensors": struct.pack("<Q", len(header)) + header + b"\0\0\0\0"})
    base = clone.git("rev-parse", "HEAD")
    assert clone.push("main").ok
    new = clone.commit({"more.json": "[1]", "card.txt": "more text"})
    subprocess.run(["git", "push", "--quiet", str(clone.bare), f"{new}:refs/heads/staging"], cwd=clone.path,
                   check=True, env={**os.environ, "GITEA_INTERNAL_PUSH": "true"})
    env = {**os.environ, **gitea_env("acme", "bert-tiny", "alice"), "HOME": str(gitea.home)}
    expected = {"pre-receive": ("gitea_hf_hook.push.policy", HEAVY),
                # post-receive only renames what pre-receive prepared: no YAML, no git, no policy.
                "post-receive": ("gitea_hf_hook.spool.layout",
                                 HEAVY + ("yaml", "json", "re", "typing", "subprocess", "gitea_hf_hook.push.policy"))}
    for hook, (needed, forbidden) in expected.items():
        # The installed hook's own command line, with Python asked to report every import.
        script = (clone.bare / "hooks" / f"{hook}.d" / "hf-publish").read_text()
        argv = shlex.split(next(line for line in script.splitlines() if line.startswith("exec "))[5:])
        proc = subprocess.run(argv[:1] + ["-X", "importtime"] + argv[1:], input=f"{base} {new} refs/heads/main\n",
                              capture_output=True, text=True, cwd=clone.bare, env=env)
        assert proc.returncode == 0, proc.stderr
        imported = set(re.findall(r"\|\s+([\w.]+)$", proc.stderr, re.M))
        assert needed in imported
        assert not {m for m in imported if m in forbidden or m.split(".")[0] in forbidden}
    assert proc.stderr.splitlines()[-1].startswith("hf-publish: queued acme/bert-tiny@")
