"""The demo's story, one section at a time: the setup, three pushes, the worker's publish, the Hub's copy, the
operator's commands."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import secrets
import shlex
import string
import struct
import subprocess
from pathlib import Path

from huggingface_hub import HfApi, hf_hub_download

from tests.support.gitea_server import Clone, gitea_env

from . import show
from .sandbox import NAME, OWNER, REPOSITORY, Sandbox

CARD = "---\nlicense: apache-2.0\n---\n# bert-tiny\n\nA tiny model, published from Gitea.\n"
CONFIG_JSON = '{"hidden_size": 4, "num_labels": 2}\n'
TRAIN_SAFE = 'import os\n\nHF_TOKEN = os.environ["HF_TOKEN"]  # from the environment, never from the code\n'
GITATTRIBUTES = "*.safetensors filter=lfs diff=lfs merge=lfs -text\n"


class DemoError(Exception):
    """A step did not end as the story needs: the demo stops there, with this line after the step's output."""


def expect(done: subprocess.CompletedProcess[str], *, success: bool, what: str) -> None:
    if (done.returncode == 0) != success:
        raise DemoError(f"{what} {'failed' if success else 'succeeded'} (exit code {done.returncode}, output above)")


def leaked_token() -> str:
    """Shaped like a Hugging Face token, made now: no such value is written in this file."""
    return "hf_" + "".join(secrets.choice(string.ascii_letters) for _ in range(34))


def safetensors_file() -> bytes:
    """A small real safetensors file: two float32 tensors, the header padded to 8 bytes as the library writes it."""
    weight = [round(0.1 * (i - 8), 1) for i in range(16)]
    bias = [0.5, -0.5]
    header = {"__metadata__": {"format": "pt"},
              "classifier.weight": {"dtype": "F32", "shape": [2, 8], "data_offsets": [0, 64]},
              "classifier.bias": {"dtype": "F32", "shape": [2], "data_offsets": [64, 72]}}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + struct.pack("<16f", *weight) + struct.pack("<2f", *bias)


def clone(sandbox: Sandbox, who: str, full_name: str) -> Clone:
    """``who``'s working copy of acme/bert-tiny, with the Gitea repository as ``origin``."""
    work = sandbox.server.clone(OWNER, NAME, sandbox.base / "work" / who)
    work.git("config", "user.name", full_name)
    work.git("config", "user.email", f"{who}@example.com")
    work.git("remote", "add", "origin", str(work.bare))
    return work


def git(work: Clone, *args: str) -> subprocess.CompletedProcess[str]:
    return show.run(["git", *args], shown=shlex.join(["git", *args]), cwd=work.path)


def push(work: Clone, who: str) -> subprocess.CompletedProcess[str]:
    """``git push origin main`` as ``who`` over SSH: Gitea's environment for that push, its git home."""
    env = dict(os.environ, **gitea_env(OWNER, NAME, who), HOME=str(work.server.home))
    return show.run(["git", "push", "origin", "main"], shown=f"git push origin main        # as {who}, over SSH",
                    cwd=work.path, env=env)


def setup(sandbox: Sandbox) -> None:
    server = sandbox.server
    show.section(1, "The sandbox",
                 f"Everything lives in {sandbox.base}: Gitea's repositories under gitea/gitea-repositories, laid out "
                 "as Gitea lays them out (owner/name.git), each with Gitea's own dispatcher hooks; Gitea's LFS store "
                 "in gitea/lfs; the spool and audit trail in hf/; the config in config.yaml; the token files "
                 "hub-token and gitea-token (the worker's alone, mode 0600).",
                 f"The Hub emulator listens on {sandbox.hub.url}, and a stand-in for Gitea's API (its Git LFS "
                 f"batch endpoint and commit statuses) on {sandbox.gitea_api.url}. The config points at both:")
    show.run(["cat", str(server.config_path)], shown=f"cat {server.config_path}")
    show.say("", "Our hooks go beside Gitea's own, in hooks/pre-receive.d and hooks/post-receive.d:")
    expect(sandbox.cli("install", REPOSITORY), success=True, what="installing the hooks")
    show.run(["ls", str(sandbox.repository / "hooks" / "pre-receive.d")],
             shown=f"ls {sandbox.repository / 'hooks' / 'pre-receive.d'}")


def non_publisher(sandbox: Sandbox) -> None:
    show.section(2, "A push by someone who may not publish: rejected",
                 "bob may push to acme/bert-tiny in Gitea, but the config names only alice as a publisher of "
                 "acme/*. Each push below goes straight into the repository folder with the environment Gitea "
                 "gives git for a push over SSH (GITEA_PUSHER_NAME and the rest), so Gitea's hooks, and ours, run "
                 "exactly as on a Gitea server.")
    work = clone(sandbox, "bob", "Bob Builder")
    work.write({"README.md": CARD, "config.json": CONFIG_JSON})
    git(work, "add", "-A")
    git(work, "commit", "--quiet", "-m", "Add bert-tiny")
    expect(push(work, "bob"), success=False, what="bob's push")


def bad_content(sandbox: Sandbox) -> Clone:
    show.section(3, "A push carrying a pickle and a leaked token: rejected",
                 "alice may publish, but her commit holds pytorch_model.bin, a pickle (loading one can run any "
                 "code), and train.py with a Hugging Face token pasted into it (made up by the demo just now). "
                 "The hook names each file and the way out; it never prints the token.")
    work = clone(sandbox, "alice", "Alice Engineer")
    work.write({"README.md": CARD, "config.json": CONFIG_JSON,
                "pytorch_model.bin": pickle.dumps({"classifier.bias": [0.5, -0.5]}),
                "train.py": f'import os\n\nHF_TOKEN = "{leaked_token()}"\n'})
    git(work, "add", "-A")
    git(work, "commit", "--quiet", "-m", "Add bert-tiny")
    expect(push(work, "alice"), success=False, what="the push of a pickle and a token")
    return work


def valid_push(sandbox: Sandbox, work: Clone) -> tuple[str, bytes]:
    show.section(4, "A valid push with Git LFS weights: accepted and queued",
                 "alice replaces the pickle with model.safetensors, stored in Git LFS, and reads the token from "
                 "the environment, then rewrites her commit. A Git LFS client uploads the object to Gitea's LFS "
                 "store before the push and commits a small pointer; the demo does both itself, so it needs no "
                 "Git LFS client. The hook checks the safetensors header in the store and queues a publish job.")
    weights = safetensors_file()
    git(work, "rm", "--quiet", "pytorch_model.bin")
    work.write({"train.py": TRAIN_SAFE, ".gitattributes": GITATTRIBUTES})
    work.write_lfs("model.safetensors", weights)
    show.run(["cat", "model.safetensors"], shown="cat model.safetensors        # the Git LFS pointer",
             cwd=work.path)
    git(work, "add", "-A")
    git(work, "commit", "--quiet", "--amend", "-m", "Add bert-tiny")
    expect(push(work, "alice"), success=True, what="alice's valid push")
    sandbox.cli("queue", "list")
    return work.git("rev-parse", "HEAD"), weights


def worker(sandbox: Sandbox, commit: str) -> None:
    show.section(5, "The worker publishes it",
                 "The worker runs as a user of its own, the only one that reads the Hub token. It publishes what "
                 "the job names, checked again, and posts the outcome to Gitea as a commit status, which shows on "
                 "the commit in Gitea's web pages.")
    as_root = ["--allow-root"] if os.geteuid() == 0 else []
    if as_root:
        show.say("(The demo runs as root here, so the worker is told --allow-root; on a server it runs as its own "
                 "user.)")
    expect(sandbox.cli("worker", "--once", *as_root), success=True, what="the worker")
    show.say("", f"What the worker posted to Gitea's API for commit {commit[:12]} (the stand-in recorded it):")
    for request in sandbox.gitea_api.status_requests:
        body = request.payload if isinstance(request.payload, dict) else {}
        print(f"  {request.method} {request.path}")
        for key in ("state", "context", "description", "target_url"):
            if body.get(key):
                print(f"    {key}: {body[key]}")


def on_the_hub(sandbox: Sandbox, weights: bytes) -> None:
    hub = sandbox.hub
    show.section(6, "The published files, read back from the Hub with huggingface_hub",
                 "The real huggingface_hub client, pointed at the emulator with the acme token:")
    api = HfApi(endpoint=hub.url, token=hub.token)
    print(f'>>> api = HfApi(endpoint="{hub.url}", token=open("hub-token").read().strip())')
    print(f'>>> api.list_repo_files("{REPOSITORY}")')
    print(api.list_repo_files(REPOSITORY))
    print(f'>>> for f in api.list_repo_tree("{REPOSITORY}", recursive=True): print(f.path, f.size, f.lfs is not None)')
    for entry in api.list_repo_tree(REPOSITORY, recursive=True):
        print(entry.path, getattr(entry, "size", None), getattr(entry, "lfs", None) is not None)
    print(f'>>> api.list_repo_commits("{REPOSITORY}")[0].title')
    print(repr(api.list_repo_commits(REPOSITORY)[0].title))
    downloaded = Path(hf_hub_download(REPOSITORY, "model.safetensors", endpoint=hub.url, token=hub.token,
                                      cache_dir=str(sandbox.base / "downloads")))
    digest = hashlib.sha256(weights).hexdigest()
    same = "the same as" if hashlib.sha256(downloaded.read_bytes()).hexdigest() == digest else "NOT the same as"
    print(f"\nmodel.safetensors, downloaded from the Hub: {len(weights)} bytes, sha256 {digest[:12]}..., {same} in "
          "Gitea's LFS store")


def operations(sandbox: Sandbox) -> None:
    show.section(7, "What an operator sees: status and the audit trail",
                 "status sums up the spool; audit verify checks the chain of the audit trail, which the worker "
                 "appends to (the hooks' records reach it through drops the worker countersigns); audit show "
                 "prints the records.")
    sandbox.cli("status")
    sandbox.cli("audit", "verify")
    sandbox.cli("audit", "show")


def closing(sandbox: Sandbox) -> None:
    server = sandbox.server
    show.section(8, "Next steps",
                 f"The sandbox stays in {sandbox.base}, for a look around (the emulator and the stand-in are "
                 "stopped). Remove it with:")
    print(f"  rm -rf {sandbox.base}")
    show.say("", f"To point the same config ({server.config_path}) at a real Gitea and the real Hub, change:")
    for key, what in (
            ("gitea.repo_root", "Gitea's [repository] ROOT, e.g. /var/lib/gitea/data/gitea-repositories"),
            ("gitea.lfs_root", "Gitea's [lfs] PATH, e.g. /var/lib/gitea/data/lfs"),
            ("gitea.url", "Gitea's ROOT_URL, e.g. https://git.example.com"),
            ("gitea.token_file", "a file holding a Gitea token with read:repository and write:repository"),
            ("hub.endpoint", "https://huggingface.co"),
            ("hub.tokens", "one file per Hub namespace, each holding a fine-grained token that may write only there"),
            ("spool, audit_log", "folders of the production install, e.g. /var/lib/gitea-hf-hook/..."),
            ("repos", "your own rules: which repositories publish where, and who may publish")):
        print(f"  {key:<18} {what}")
    show.say("", "Then install it for production, as root: sudo ./install.sh (README.md, \"Production install\", "
             "says what it sets up: the users, the spool, the hooks in every repository, the worker service).")
