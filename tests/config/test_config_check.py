"""``gitea-hf-hook config check``: an admin validates a config before it replaces the live one."""

from __future__ import annotations

import os
from pathlib import Path

from tests.support.gitea_server import GiteaServer
from tests.support.rules import GROUPS, RULE

MORE_RULES = """\
  - match: lab/*
    repo_type: dataset
    hub_repo: "lab/{owner}-{name}"
    branches: {"release/*": "{branch}", dev: dev}
    publishers: ["*"]
    allow_deploy_keys: true
    require_merge: true
  - match: "archive/\\e[2J*"
    branches: {}
"""


def test_a_valid_file_is_summarised_rule_by_rule_with_its_targets_and_publishers(server: GiteaServer) -> None:
    server.write_config(RULE + MORE_RULES, extra=GROUPS + "enforce: false\n")
    result = server.cli("config", "check")
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.splitlines() == [
        f"{server.config_path}: valid, 3 rules (the first that matches a repository applies)",
        "repos[0] acme/*:",
        "  branch main -> https://huggingface.co/acme/{name} (branch main)",
        "  tag v* -> https://huggingface.co/acme/{name} (tag of the same name)",
        "  publishers: alice, @ml-release (bob)",
        "repos[1] lab/*:",
        "  branch release/* -> https://huggingface.co/datasets/lab/{owner}-{name} (branch {branch})",
        "  branch dev -> https://huggingface.co/datasets/lab/{owner}-{name} (branch dev)",
        "  publishers: anyone who may push, deploy keys; branches only through pull-request merges made in Gitea",
        # A string of the file is printed escaped: a terminal never acts on it.
        "repos[2] archive/\\x1b[2J*:",
        "  no branch or tag publishes",
        "  publishers: nobody, so every push to these refs is rejected",
        "enforce: false: pushes that fail the checks land in Gitea, and are not published",
    ]


def test_a_candidate_file_is_checked_without_touching_the_live_one_or_any_cache(
        server: GiteaServer, tmp_path: Path) -> None:
    live = server.write_config(RULE, extra=GROUPS).read_text()
    candidate = tmp_path / "config.new.yaml"
    candidate.write_text(live.replace("groups:", "Groups:"))
    result = server.cli("config", "check", str(candidate))
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (f"gitea-hf-hook: error: {candidate}:9: Groups: unknown key; did you mean 'groups'? "
                             "(fix config.yaml; README.md lists every key)\n")
    assert server.config_path.read_text() == live
    assert not (server.home / ".cache" / "gitea-hf-hook").exists()
    candidate.write_text(live.replace("repos:\n", "").replace(RULE, ""))
    result = server.cli("config", "check", str(candidate), config=False)
    assert (result.returncode, result.stdout, result.stderr) == (0, f"{candidate}: valid, no rules: nothing publishes\n",
                                                                 "")


def test_a_missing_or_unparsable_file_is_one_line_and_exit_1(server: GiteaServer, tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    result = server.cli("config", "check", str(missing))
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (f"gitea-hf-hook: error: {missing}: no such file "
                             "(create it, or point --config or $GITEA_HF_HOOK_CONFIG at one)\n")
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    result = server.cli("config", "check", str(fifo))  # answered at once, not held open waiting for a writer
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (f"gitea-hf-hook: error: {fifo}: not a regular file (point --config or "
                             "$GITEA_HF_HOOK_CONFIG at the config file itself)\n")
    server.config_path.write_text("gitea: {repo_root: /srv\n")
    result = server.cli("config", "check")
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (f"gitea-hf-hook: error: {server.config_path}:2: not valid YAML: expected ',' or '}}', "
                             "but got '<stream end>' (fix config.yaml; README.md lists every key)\n")
