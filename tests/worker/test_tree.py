"""What a commit publishes, as the worker reads it: the same Git-path-to-Hub-path rule as push time."""

from __future__ import annotations

from pathlib import Path

import pytest

from gitea_hf_hook.config.schema import parse
from gitea_hf_hook.errors import PublishError
from gitea_hf_hook.worker import tree
from tests.support.gitea_server import Clone, GiteaServer

RULES = "gitea:\n  repo_root: /r\nrepos:\n  - match: acme/*\n    exclude: [drafts/]\n"


def test_a_path_the_hub_cannot_hold_fails_the_publish_by_name(server: GiteaServer, tmp_path: Path) -> None:
    # Pushed before the hooks were installed: the worker must not quietly publish the rest without it.
    work = Clone(server, tmp_path / "unused.git", "acme", "x", tmp_path / "w")
    commit = work.commit({"config.json": "{}", ".cache/weights.json": "{}", "drafts/.cache/x": "x"})
    rule = parse("c.yaml", RULES).repos[0]
    with pytest.raises(PublishError) as failed:
        tree.published_files(rule, commit, str(work.path))
    assert str(failed.value) == (".cache/weights.json: the Hub cannot hold a file or folder named .cache (rename or "
                                 "remove it in git, or exclude it in the rule, then push again)")


def test_an_excluded_path_is_left_out_even_under_a_cache_folder(server: GiteaServer, tmp_path: Path) -> None:
    work = Clone(server, tmp_path / "unused.git", "acme", "x", tmp_path / "w")
    commit = work.commit({"config.json": "{}", "drafts/.cache/x": "x"})
    rule = parse("c.yaml", RULES).repos[0]
    assert sorted(tree.published_files(rule, commit, str(work.path))) == ["config.json"]
