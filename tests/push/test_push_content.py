"""What would be published: model card, JSON, secrets, sizes, Git LFS objects and paths the Hub cannot hold."""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

from tests.support.gitea_server import Clone, GiteaServer, assert_rejected
from tests.support.rules import CARD, GROUPS, RULE

HEADER = ("hf-publish: rejected refs/heads/main of acme/bert-tiny, which publishes to "
          "https://huggingface.co/acme/bert-tiny (branch main):")


def fake_token() -> str:
    return "hf_" + "aB3dE5" * 5 + "xYz9"  # 34 characters after the prefix, as issued tokens have


def safetensors_bytes() -> bytes:
    header = b'{"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}}'
    return struct.pack("<Q", len(header)) + header + bytes(16)


def test_a_clean_model_repository_is_accepted(clone: Clone, gitea: GiteaServer):
    clone.write_lfs("model.safetensors", safetensors_bytes())
    clone.commit({"config.json": '{"hidden_size": 128}', "tokenizer.txt": "a b c\n"})
    result = clone.push("main")
    assert result.ok, result.output


def test_the_model_card_must_exist(clone: Clone):
    (clone.path / "README.md").unlink()
    clone.commit({"config.json": "{}"})
    assert_rejected(clone, "main", lines=[HEADER, "  README.md: missing: the Hub shows README.md as the model card (add a "
                                                   "README.md whose YAML front matter names its license, tags and so on)"])


def test_the_model_card_needs_an_allowed_license(clone: Clone):
    clone.commit({"README.md": "---\nlicense: gpl-3.0\n---\n"})
    assert_rejected(clone, "main", lines=[HEADER, "  README.md:2: license 'gpl-3.0' is not allowed "
                                          "(allowed: apache-2.0, mit)"])
    clone.commit({"README.md": "---\ntags: [bert]\n---\n"})
    assert_rejected(clone, "main", lines=[HEADER, "  README.md: model card lacks required key 'license' "
                                          "(add \"license: <id>\" to the front matter)"])


def test_metric_thresholds_gate_the_release(server: GiteaServer, tmp_path: Path):
    server.write_config(RULE.replace("licenses: [apache-2.0, mit]",
                                     'licenses: [apache-2.0, mit]\n        metrics: {accuracy: ">= 0.9"}'),
                        extra=GROUPS)
    server.create_repo("acme", "bert-tiny")
    server.install("acme/bert-tiny")
    clone = server.clone("acme", "bert-tiny", tmp_path / "w")
    card = ("---\nlicense: mit\nmodel-index:\n- name: bert-tiny\n  results:\n  - task: {type: text-classification}\n"
            "    dataset: {type: glue, name: GLUE}\n    metrics:\n    - {type: accuracy, value: %s}\n---\n")
    clone.commit({"README.md": card % "0.85"})
    assert_rejected(clone, "main", lines=[HEADER, "  README.md:9: accuracy 0.85 on GLUE does not meet >= 0.9 "
                                          "(the release requires accuracy >= 0.9 on every reported dataset)"])
    clone.commit({"README.md": card % "0.93"})
    assert clone.push("main").ok


def test_a_yaml_bomb_or_a_binary_readme_is_refused_with_its_reason(clone: Clone):
    laughs = "---\nlicense: mit\na: &a [x, x, x, x, x, x, x, x, x]\n"
    for name, prev in zip("bcdefghi", "abcdefgh", strict=True):
        laughs += f"{name}: &{name} [{', '.join(['*' + prev] * 9)}]\n"
    clone.commit({"README.md": laughs + "---\n"})
    assert_rejected(clone, "main", lines=[HEADER, "  README.md: model card front matter's aliases expand it beyond 10000 "
                                          "nodes and characters "
                                          "(simplify the front matter: no deep nesting or repeated alias "
                                          "expansion)"])
    clone.commit({"README.md": b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"})
    assert_rejected(clone, "main", lines=[HEADER, "  README.md: model card is not UTF-8 text (the model card must be "
                                          "a Markdown file with YAML front matter)"])


def test_json_files_must_parse(clone: Clone):
    clone.commit({"config.json": '{"hidden_size": 128,\n}'})
    assert_rejected(clone, "main", lines=[HEADER, "  config.json: not valid JSON at line 2 (fix the file, or exclude it)"])


def test_leaked_secrets_are_reported_by_line_and_kind_never_shown(clone: Clone):
    token = fake_token()
    clone.commit({"train.py": f"import os\n\nHF_TOKEN = '{token}'\n"})
    result = assert_rejected(clone, "main", lines=[HEADER, "  train.py:3: looks like a Hugging Face token (remove it, rewrite the commit, "
                                                   "and revoke the token)"])
    assert token not in result.output


def test_large_files_outside_git_lfs_are_refused_with_the_fix(clone: Clone):
    clone.commit({"weights.npy": b"\x93NUMPY" + b"\0" * (11 * 1024 * 1024)})
    assert_rejected(clone, "main", lines=[HEADER, "  weights.npy: 11.0 MiB is over the 10 MiB limit for files outside "
                                          "Git LFS (git lfs track \"*.npy\", then git lfs migrate "
                                          "import --include=\"weights.npy\")"])


def test_git_lfs_objects_must_be_on_the_server(clone: Clone, gitea: GiteaServer):
    oid = clone.write_lfs("model.safetensors", b"weights that were never uploaded", upload=False)
    clone.commit()
    assert_rejected(clone, "main", lines=[HEADER, f"  model.safetensors: Git LFS object {oid[:12]} is not on the "
                                          "server, or does not match its pointer (run: git lfs push --all origin, then push again)"])
    gitea.store_lfs(b"weights that were never uploaded")
    # Now uploaded, the header check reads the object from the store and finds it is no safetensors file.
    assert clone.push("main").remote[1].startswith("  model.safetensors: ")


def test_forbidden_files_symlinks_and_submodules_are_refused(clone: Clone):
    clone.write({"deploy/.env": "KEY=1\n", "keys/id_rsa.pub": "ssh-ed25519 AAAA\n"})
    (clone.path / "latest").symlink_to("README.md")
    clone.commit()
    commit = clone.git("rev-parse", "HEAD")
    clone.git("update-index", "--add", "--cacheinfo", f"160000,{commit},vendor/lib")
    clone.git("commit", "--quiet", "-m", "vendor")
    assert_rejected(clone, "main", lines=[
        HEADER,
        "  deploy/.env: matches forbidden pattern '*.env' (remove it from the commit, or ask an admin to change "
        "checks.forbid)",
        "  keys/id_rsa.pub: matches forbidden pattern 'id_rsa*' (remove it from the commit, or ask an admin to "
        "change checks.forbid)",
        "  latest: symlinks cannot be published to the Hub (commit the file it points to instead)",
        "  vendor/lib: submodules cannot be published to the Hub (commit the files themselves, or publish that "
        "repository on its own)",
    ])


def test_odd_and_undecodable_file_names_are_shown_escaped(clone: Clone):
    clone.write({"ok name with spaces.json": "{"})
    (clone.path / "evil\nhf-publish: accepted.json").write_text("{")
    (clone.path.joinpath(b"latin1-\xe9.txt".decode("utf-8", "surrogateescape"))).write_bytes(b"text")
    clone.commit()
    assert_rejected(clone, "main", lines=[
        HEADER,
        "  evil\\nhf-publish: accepted.json: not valid JSON at line 1 (fix the file, or exclude it)",
        "  latin1-\\xe9.txt: file name is not valid UTF-8, which the Hub requires (rename it, or exclude it in the rule)",
        "  ok name with spaces.json: not valid JSON at line 1 (fix the file, or exclude it)",
    ])


def test_only_the_published_part_is_checked(server: GiteaServer, tmp_path: Path):
    server.write_config(RULE.replace("    checks:", '    subdir: release\n    exclude: ["drafts/**"]\n    checks:'),
                        extra=GROUPS)
    server.create_repo("acme", "bert-tiny")
    server.install("acme/bert-tiny")
    clone = server.clone("acme", "bert-tiny", tmp_path / "w")
    clone.commit({"README.md": "not a card", "training/broken.json": "{",
                  "release/README.md": CARD, "release/drafts/broken.json": "{", "release/config.json": "{}"})
    assert clone.push("main").ok
    clone.commit({"release/config.json": "{"})
    assert_rejected(clone, "main", lines=[HEADER, "  release/config.json: not valid JSON at line 1 (fix the file, or exclude it)"])


def test_an_existing_branch_has_only_its_changed_files_checked(clone: Clone, gitea: GiteaServer):
    clone.commit({"old.json": "{"})
    gitea.config_path.write_text(gitea.config_path.read_text() + "enforce: false\n")
    assert clone.push("main").ok
    gitea.config_path.write_text(gitea.config_path.read_text().replace("enforce: false\n", ""))
    clone.commit({"new.txt": "fine"})
    assert clone.push("main").ok  # old.json is unchanged, so not checked again


def test_enforce_false_reports_would_reject_lets_the_push_land_and_publishes_nothing(clone: Clone, gitea: GiteaServer):
    gitea.config_path.write_text(gitea.config_path.read_text() + "enforce: false\n")
    new = clone.commit({"config.json": "{"})
    result = clone.push("main")
    assert result.ok
    assert result.remote == [
        "hf-publish: would reject refs/heads/main of acme/bert-tiny, which publishes to "
        "https://huggingface.co/acme/bert-tiny (branch main) (enforce is off, so it lands in Gitea but is not "
        "published):",
        "  config.json: not valid JSON at line 1 (fix the file, or exclude it)"]
    assert clone.server_refs()["refs/heads/main"] == new
    assert gitea.queued_jobs() == []


def test_enforce_false_publishes_a_push_that_passes_every_rule(clone: Clone, gitea: GiteaServer):
    gitea.config_path.write_text(gitea.config_path.read_text() + "enforce: false\n")
    clone.commit({"config.json": "{}"})
    result = clone.push("main")
    assert result.ok
    assert [line.split(", job ")[0] for line in result.remote] == [
        f"hf-publish: queued acme/bert-tiny@{clone.git('rev-parse', 'HEAD')[:7]} -> "
        "https://huggingface.co/acme/bert-tiny (main)"]
    assert len(gitea.queued_jobs()) == 1


def test_enforce_false_does_not_publish_a_non_publishers_push(clone: Clone, gitea: GiteaServer):
    gitea.config_path.write_text(gitea.config_path.read_text() + "enforce: false\n")
    clone.commit({"config.json": "{}"})
    result = clone.push("main", user="mallory")
    assert result.ok
    assert result.remote[1].startswith("  refs/heads/main: mallory may not publish to acme/bert-tiny")
    assert gitea.queued_jobs() == []


def test_a_long_list_of_problems_is_capped(clone: Clone):
    clone.commit({f"broken-{i:02}.json": "{" for i in range(30)})
    result = clone.push("main")
    assert len(result.remote) == 21
    assert result.remote[19] == "  broken-18.json: not valid JSON at line 1 (fix the file, or exclude it)"
    assert result.remote[20] == "  … and 11 more"


def test_a_push_is_refused_when_the_publish_queue_cannot_take_it(clone: Clone, gitea: GiteaServer):
    (gitea.spool / "queue").rmdir()
    clone.commit()
    assert_rejected(clone, "main", lines=[HEADER, f"  refs/heads/main: the publish queue {gitea.spool}/queue does not exist, so "
                                                   "this push could not be published (an admin must run gitea-hf-hook install, "
                                                   "which creates the spool)"])
    assert subprocess.run(["git", "rev-parse", "--verify", "--quiet", "refs/heads/main"], cwd=clone.bare,
                          capture_output=True).returncode == 1


def test_a_huge_readme_is_refused_without_being_parsed(clone: Clone):
    clone.commit({"README.md": "---\nlicense: mit\n---\n" + "x" * (11 * 1024 * 1024)})
    assert_rejected(clone, "main", lines=[
        HEADER,
        "  README.md: 11.0 MiB is too large for a model card (keep README.md small)",
        "  README.md: 11.0 MiB is over the 10 MiB limit for files outside Git LFS (git lfs track \"*.md\", then git "
        "lfs migrate import --include=\"README.md\")",
    ])
