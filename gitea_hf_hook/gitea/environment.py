"""What Gitea tells a hook about a push, and where Gitea keeps things on disk."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import NamedTuple

from .hook_input import is_wiki as _is_wiki_push

PR_MERGE = "pr-merge-to-base"


class Push(NamedTuple):
    """The Gitea side of one push: which repository, who pushed, and how."""

    owner: str  # lowercase, as on disk: Gitea's URL spelling is not canonical
    name: str
    is_wiki: bool
    repo_id: str
    pusher: str  # empty when the environment carries no Gitea identity
    pusher_id: str
    deploy_key_id: str  # non-empty when a deploy key pushed; the "pusher" is then the repository owner
    trigger: str
    pr_id: str

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"

    @property
    def is_deploy_key(self) -> bool:
        return bool(self.deploy_key_id)

    @property
    def is_pr_merge(self) -> bool:
        return self.trigger == PR_MERGE


def _deploy_key(environ: Mapping[str, str]) -> str:
    key = environ.get("GITEA_DEPLOY_KEY_ID", "").strip()
    if key and key != "0":
        return key
    # Older Gitea releases said so with a boolean instead of the key's id.
    if environ.get("GITEA_IS_DEPLOY_KEY", "").strip().lower() == "true":
        return "unknown"
    return ""


def _repo_from_path(git_dir: str) -> tuple[str, str, bool]:
    """Owner and name from ``<root>/<owner>/<name>.git``, for pushes that arrive without Gitea's variables."""
    path = os.path.abspath(git_dir).rstrip(os.sep)
    owner = os.path.basename(os.path.dirname(path))
    name = os.path.basename(path)
    if name.endswith(".git"):
        name = name[:-4]
    is_wiki = name.endswith(".wiki")
    if is_wiki:
        name = name[:-5]
    return owner.lower(), name.lower(), is_wiki


def read_push(environ: Mapping[str, str], git_dir: str = ".") -> Push:
    """Read the push's identity from the environment Gitea gives its hooks."""
    owner = environ.get("GITEA_REPO_USER_NAME", "").strip().lower()
    name = environ.get("GITEA_REPO_NAME", "").strip().lower()
    is_wiki = _is_wiki_push(environ)
    if owner and name:
        # Gitea names a wiki "<repo>.wiki" here; the publishing rules speak of the repository.
        if is_wiki and name.endswith(".wiki"):
            name = name[:-5]
    else:
        owner, name, is_wiki = _repo_from_path(git_dir)
    return Push(
        owner=owner,
        name=name,
        is_wiki=is_wiki,
        repo_id=environ.get("GITEA_REPO_ID", ""),
        pusher=environ.get("GITEA_PUSHER_NAME", "").strip(),
        pusher_id=environ.get("GITEA_PUSHER_ID", "").strip(),
        deploy_key_id=_deploy_key(environ),
        trigger=environ.get("GITEA_PUSH_TRIGGER", "").strip(),
        pr_id=environ.get("GITEA_PR_ID", ""),
    )


def repo_dir(repo_root: str, owner: str, name: str) -> str:
    """Where Gitea keeps a repository: ``<root>/<lower(owner)>/<lower(name)>.git``."""
    return os.path.join(repo_root, owner.lower(), name.lower() + ".git")
