"""The world of a publish test: a Gitea server whose pushes queue jobs, and a Hub emulator to publish them to.

The emulator (``tests.hub.Hub``, the ``hub`` fixture of ``tests/conftest.py``) runs as a subprocess, driven by
the real huggingface_hub client; nothing here reaches the network.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from gitea_hf_hook.config.load import load
from gitea_hf_hook.config.model import Config
from gitea_hf_hook.hub_emulator.gitobj import DEFAULT_GITATTRIBUTES
from gitea_hf_hook.spool.job import Job, parse
from gitea_hf_hook.spool.state import PublishResult, TargetState
from gitea_hf_hook.worker.publish import publish
from tests.support.gitea_server import WORKER_GITEA_USER, GiteaServer
from tests.support.hub import Hub

TOKEN = Hub.token
READ_TOKEN = Hub.read_token
HUB_GITATTRIBUTES = DEFAULT_GITATTRIBUTES.encode()
CHECKS = "    checks: {model_card: false, pickle: allow, safetensors: false, json: false, secrets: false}\n"
# acme/* publishes to acme/<name> for alice, with v* tags; the push-time checks are tested elsewhere.
RULE = """\
  - match: acme/*
    hub_repo: acme/{name}
    publishers: [alice]
    tags: "v*"
""" + CHECKS


def configure(server: GiteaServer, hub: Hub, repos_yaml: str, *, token: str = TOKEN, worker: str = "",
              tokens: str | None = None) -> Config:
    """Write config.yaml pointing at the emulator, with a token file for the acme namespace; return it loaded."""
    token_file = server.base / "hub-token"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    server.write_config(repos_yaml, extra=worker)
    if server.gitea_api is not None:
        # The worker asks Gitea's LFS endpoint, as its own Gitea user, whether each object belongs to the repository.
        gitea_token = server.base / "gitea-token"
        gitea_token.write_text(server.gitea_api.add_token(WORKER_GITEA_USER) + "\n")
        gitea_token.chmod(0o600)
        text = server.config_path.read_text().replace(
            "  url: https://git.example.com\n",
            f"  url: {server.gitea_api.url}\n  token_file: {gitea_token}\n")
        server.config_path.write_text(text)
    hub_block = (f"hub:\n  endpoint: {hub.url}\n  xet: off\n  tokens:\n"
                 + (tokens if tokens is not None else f"    acme: {token_file}\n"))
    text = server.config_path.read_text().replace("hub:\n  endpoint: https://huggingface.co\n", hub_block)
    server.config_path.write_text(text)
    return load(str(server.config_path))


def take_job(server: GiteaServer, ref: str) -> Job:
    """The oldest queued job for ``ref``, removed from the queue (there is no worker in these tests)."""
    jobs = []
    for path in server.queued_jobs():
        job = parse(path.name, path.read_bytes())
        if job.request.ref == ref:
            jobs.append((job.created, path, job))
    assert jobs, f"no job queued for {ref}"
    _, path, job = min(jobs, key=lambda item: item[0])
    path.unlink()
    return job


def publish_job(config: Config, job: Job, last: PublishResult | None) -> PublishResult:
    """``publish`` as the worker calls it, with ``last`` as the target's state from the previous publish."""
    state = None if last is None else TargetState(job.target, job.id, job.created, job.created, last)
    return publish(config, job, state)


def git_files(bare: Path, commit: str, lfs_root: Path) -> dict[str, bytes]:
    """What a commit holds, with Git LFS pointers replaced by the objects in Gitea's store."""
    listing = subprocess.run(["git", "ls-tree", "-r", "-z", commit], cwd=bare, capture_output=True,
                             check=True).stdout
    files = {}
    for record in filter(None, listing.split(b"\0")):
        meta, _, path = record.partition(b"\t")
        oid = meta.split()[2].decode()
        data = subprocess.run(["git", "cat-file", "blob", oid], cwd=bare, capture_output=True, check=True).stdout
        if data.startswith(b"version https://git-lfs.github.com/spec/v1\n"):
            sha = data.split(b"oid sha256:")[1][:64].decode()
            data = (lfs_root / sha[0:2] / sha[2:4] / sha[4:]).read_bytes()
        files[path.decode()] = data
    return files


def lfs_store_object(server: GiteaServer, oid: str) -> Path:
    return server.lfs_root / oid[0:2] / oid[2:4] / oid[4:]


def tree_text(root: Path) -> str:
    """Every file under ``root`` concatenated, to search for leaked secrets."""
    chunks = []
    for dirpath, _, names in os.walk(root):
        for name in names:
            chunks.append(Path(dirpath, name).read_bytes().decode("utf-8", "replace"))
    return "\n".join(chunks)
