"""An admin's config file: the full example loads, and every mistake names the file, line and key."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from gitea_hf_hook.config.load import from_json, load, to_json
from gitea_hf_hook.config.model import CardRule
from gitea_hf_hook.config.schema import parse
from gitea_hf_hook.errors import ConfigError

FULL = """\
gitea:
  repo_root: /var/lib/gitea/data/gitea-repositories
  lfs_root: /var/lib/gitea/data/lfs
  url: https://git.example.com
  token_file: /etc/gitea-hf-hook/gitea.token
hub:
  endpoint: https://huggingface.co
  tokens:
    acme: /etc/gitea-hf-hook/tokens/acme
  xet: auto
spool: /var/lib/gitea-hf-hook/spool
audit_log: /var/lib/gitea-hf-hook/audit.jsonl
enforce: true
groups:
  ml-release: [alice, bob]
repos:
  - match: acme/*
    hub_repo: acme/{name}
    repo_type: model
    private: true
    create: true
    branches: {main: main}
    tags: "v*"
    publishers: [alice, "@ml-release"]
    require_merge: false
    allow_deploy_keys: false
    allow_force_push: false
    allow_delete: false
    subdir: ""
    include: ["**"]
    exclude: ["training/**"]
    delete_missing: true
    checks:
      model_card:
        required: [license]
        licenses: [apache-2.0, mit]
        metrics: {accuracy: ">= 0.9"}
      max_blob_mb: 10
      lfs_objects: true
      pickle: deny
      safetensors: true
      json: true
      secrets: true
      forbid: ["*.env", "id_rsa*"]
"""


def error_of(text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        parse("config.yaml", text)
    return str(caught.value)


def test_the_documented_example_loads_its_rule_checks_tokens_and_groups():
    config = parse("config.yaml", FULL)
    rule = config.rule_for("ACME/Bert-Tiny")
    assert rule is not None
    assert rule.hub_repo_for("acme", "bert-tiny") == "acme/bert-tiny"
    assert rule.tags == ("v*",)
    assert rule.checks.model_card == CardRule(("license",), ("apache-2.0", "mit"), (("accuracy", ">=", 0.9),))
    assert rule.checks.forbid == ("*.env", "id_rsa*")
    assert config.hub_tokens == {"acme": "/etc/gitea-hf-hook/tokens/acme"}
    assert config.groups == {"ml-release": ("alice", "bob")}
    assert config.rule_for("other/repo") is None


def test_a_bad_choice_names_line_key_path_and_the_choices():
    text = FULL.replace("pickle: deny", "pickle: scan")
    assert error_of(text) == ("config.yaml:40: repos[0].checks.pickle: must be one of deny, allowlist, allow "
                              "(got 'scan') (fix config.yaml; README.md lists every key)")


def test_a_misspelt_key_is_an_error_not_a_silently_skipped_check():
    text = FULL.replace("      secrets: true", "      secret: true")
    assert error_of(text).startswith("config.yaml:43: repos[0].checks.secret: unknown key; did you mean 'secrets'?")


def test_wrong_types_are_named():
    assert error_of(FULL.replace("enforce: true", "enforce: maybe")).startswith(
        "config.yaml:13: enforce: must be true or false (got 'maybe')")
    assert error_of(FULL.replace("max_blob_mb: 10", "max_blob_mb: [10]")).startswith(
        "config.yaml:38: repos[0].checks.max_blob_mb: must be a number (got a list)")
    assert error_of(FULL.replace("publishers: [alice", "publishers: [[alice]")).startswith(
        "config.yaml:24: repos[0].publishers[0]: must be a string (got a list)")


def test_relative_paths_and_missing_repo_root_are_refused():
    assert error_of(FULL.replace("spool: /var/lib/gitea-hf-hook/spool", "spool: spool")).startswith(
        "config.yaml:11: spool: must be an absolute path (got 'spool')")
    assert error_of("gitea:\n  url: https://git.example.com\n").startswith(
        "config.yaml:2: gitea.repo_root: missing; point it at Gitea's [repository] ROOT")


def test_bad_thresholds_templates_and_groups_are_refused():
    assert error_of(FULL.replace('">= 0.9"', '"at least 0.9"')).startswith(
        "config.yaml:37: repos[0].checks.model_card.metrics.accuracy: invalid threshold 'at least 0.9': "
        "expected an operator (>=, >, <=, <, ==) and a number")
    assert error_of(FULL.replace("acme/{name}", "acme/{repo}")).startswith(
        "config.yaml:18: repos[0].hub_repo: may use only {owner} and {name} (got 'acme/{repo}')")
    assert error_of(FULL.replace("acme/{name}", "acme/{name.x}")).startswith(
        "config.yaml:18: repos[0].hub_repo: may use only {owner} and {name} (got 'acme/{name.x}')")
    assert error_of(FULL.replace("branches: {main: main}", 'branches: {main: "{branch.x}"}')).startswith(
        "config.yaml:22: repos[0].branches.main: may use only {branch} (got '{branch.x}')")
    assert error_of(FULL.replace('"@ml-release"', '"@release"')).startswith(
        "config.yaml:24: repos[0].publishers[1]: names an unknown group (got '@release')")


def test_a_space_needs_its_sdk():
    assert error_of(FULL.replace("repo_type: model", "repo_type: space")).startswith(
        "config.yaml:17: repos[0]: a space needs space_sdk")


def test_yaml_syntax_errors_and_duplicate_keys_carry_their_line():
    assert error_of("gitea:\n  repo_root: [/x\n").startswith("config.yaml:3: not valid YAML")
    assert error_of("gitea:\n  repo_root: /a\n  repo_root: /b\n").startswith(
        "config.yaml:3: gitea.repo_root: appears twice")


def test_missing_empty_and_binary_files(tmp_path: Path):
    with pytest.raises(ConfigError, match=r"config.yaml: no such file \(create it, or point --config or "
                                          r"\$GITEA_HF_HOOK_CONFIG at one\)"):
        load(str(tmp_path / "config.yaml"))
    (tmp_path / "config.yaml").write_text("")
    with pytest.raises(ConfigError, match="config.yaml: the file is empty"):
        load(str(tmp_path / "config.yaml"))
    (tmp_path / "config.yaml").write_bytes(b"gitea:\xff\n")
    with pytest.raises(ConfigError, match=r"config.yaml: not UTF-8 text \(bad byte at offset 6\)"):
        load(str(tmp_path / "config.yaml"))


def test_defaults_are_the_safe_ones():
    config = parse("c.yaml", "gitea:\n  repo_root: /r\nrepos:\n  - match: '*/*'\n")
    rule = config.repos[0]
    assert (rule.private, rule.allow_force_push, rule.allow_delete, rule.allow_deploy_keys) == (True, False, False, False)
    assert (rule.checks.pickle, rule.checks.max_blob_mb, rule.checks.secrets) == ("deny", 10.0, True)
    assert rule.publishers == ()
    assert config.enforce is True


def test_the_validated_config_is_cached_until_the_file_changes(tmp_path: Path):
    """Pushes reuse the validated config; any edit, even one keeping the size, is seen at once."""
    path = tmp_path / "config.yaml"
    path.write_text(FULL)
    first = load(str(path))
    assert from_json(to_json(first)) == first
    assert load(str(path)) == first
    caches = list((tmp_path / "home" / ".cache" / "gitea-hf-hook").glob("config-*.json"))
    assert len(caches) == 1
    path.write_text(FULL.replace("pickle: deny", "pickle: scan"))
    with pytest.raises(ConfigError, match="pickle: must be one of"):
        load(str(path))
    path.write_text(FULL.replace("enforce: true", "enforce: fals"))
    with pytest.raises(ConfigError, match="enforce: must be true or false"):
        load(str(path))


def test_the_readme_example_is_a_valid_config():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = readme.split("## Configuration", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    config = parse("README.md", block)
    assert config.rule_for("acme/bert").checks.model_card.metrics == (("accuracy", ">=", 0.9),)
    assert config.worker.max_attempts == 8


def test_a_bare_off_for_xet_means_off():
    """YAML 1.1 reads `off` as false; the admin meant the word."""
    config = parse("c.yaml", "gitea:\n  repo_root: /r\nhub:\n  xet: off\n")
    assert config.hub_xet == "off"
    assert error_of("gitea:\n  repo_root: /r\nhub:\n  xet: on\n").startswith(
        "config.yaml:4: hub.xet: must be one of auto, off (got True)")


def test_a_token_pasted_where_its_file_belongs_is_not_repeated_in_the_error():
    # A broken config's error reaches every pusher of a publishing ref.
    token = "hf_" + secrets.token_hex(16) + "Zq"
    error = error_of(FULL.replace("/etc/gitea-hf-hook/tokens/acme", token))
    assert error.startswith("config.yaml:9: hub.tokens.acme: must be an absolute path (got '[REDACTED]')")
    assert token not in error
