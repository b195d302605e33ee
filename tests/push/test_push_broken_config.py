"""A broken live config blocks only the refs that published under the last valid one, and says so.

The hooks keep the routing of the last config they loaded in the hook user's cache folder. While the file is
broken, a push to a ref that routing publishes is rejected with the config error; any other push lands. Only when
no valid config is on record does every branch and tag count as publishing.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from gitea_hf_hook.config import cache
from tests.support.gitea_server import Clone, GiteaServer, assert_rejected
from tests.support.rules import GROUPS, RULE

HINT = "(fix config.yaml; README.md lists every key)"


def break_config(gitea: GiteaServer) -> str:
    """An admin misspells a key in the live config; returns the error the hooks then meet."""
    gitea.config_path.write_text(gitea.config_path.read_text().replace("publishers:", "publisher:"))
    return f"{gitea.config_path}:16: repos[0].publisher: unknown key; did you mean 'publishers'? {HINT}"


def under_last_valid(error: str, *refs: str) -> list[str]:
    return [f"hf-publish: rejected {ref} of acme/bert-tiny, which publishes to the Hub under the last valid config"
            for ref in refs] + [
        f"  the publishing config is broken: {error}",
        "  (a Gitea admin must fix it; pushes to refs that did not publish under the last valid config are let "
        "through)"]


def with_no_record(error: str, *refs: str) -> list[str]:
    return [f"hf-publish: rejected {ref} of acme/bert-tiny, which may publish to the Hub: no valid config is on "
            "record, so every branch and tag counts" for ref in refs] + [
        f"  the publishing config is broken: {error}",
        "  (a Gitea admin must fix it; until then every push to a branch or tag is rejected)"]


def cache_folder(gitea: GiteaServer) -> Path:
    """The hook user's cache folder: Gitea's git home is the hooks' HOME."""
    return gitea.home / ".cache" / "gitea-hf-hook"


def routing_record(gitea: GiteaServer) -> Path:
    return Path(cache.cache_file(str(gitea.config_path), str(gitea.home / ".cache")) + ".routing")


def test_a_broken_config_rejects_the_refs_that_published_and_lets_every_other_ref_through(
        clone: Clone, gitea: GiteaServer) -> None:
    clone.commit()
    clone.git("tag", "v1.0")
    error = break_config(gitea)
    # One push is all or nothing: the experiment branch goes down with main and the tag, and only they are named.
    assert_rejected(clone, "main", "main:experiment", "refs/tags/v1.0",
                    lines=under_last_valid(error, "refs/heads/main", "refs/tags/v1.0"))
    assert_rejected(clone, "refs/tags/v1.0", lines=under_last_valid(error, "refs/tags/v1.0"))
    pushed = clone.push("main:experiment", "main:refs/notes/review")
    assert pushed.ok and pushed.remote == []
    assert "refs/heads/experiment" in clone.server_refs()
    assert list((gitea.spool / "queue").iterdir()) == []


def test_the_routing_kept_is_the_last_valid_one_a_hook_loaded_not_what_the_broken_file_says(
        server: GiteaServer, tmp_path: Path) -> None:
    server.write_config(RULE, extra=GROUPS)
    server.create_repo("acme", "bert-tiny")
    server.install("acme/bert-tiny")
    clone = server.clone("acme", "bert-tiny", tmp_path / "work")
    clone.commit({"README.md": "---\nlicense: mit\n---\n"})
    # The admin maps release branches too, and a push sees it; then an edit breaks the file and drops main.
    server.write_config(RULE.replace("{main: main}", "{main: main, 'release/*': '{branch}'}"), extra=GROUPS)
    assert clone.push("main:scratch").ok
    server.config_path.write_text(server.config_path.read_text().replace("main: main, ", "")
                                  .replace("checks:", "checks:\n      pickle: scan"))
    error = f"{server.config_path}:18: repos[0].checks.pickle: must be one of deny, allowlist, allow (got 'scan') {HINT}"
    assert_rejected(clone, "main", lines=under_last_valid(error, "refs/heads/main"))
    assert_rejected(clone, "main:release/1", lines=under_last_valid(error, "refs/heads/release/1"))
    assert clone.push("main:experiment").ok


def test_with_no_valid_config_on_record_every_branch_and_tag_is_rejected(clone: Clone, gitea: GiteaServer) -> None:
    # The hooks never loaded a valid config (install ran as root in production, with root's cache).
    shutil.rmtree(cache_folder(gitea))
    gitea.config_path.write_text("repos: [\n")
    error = f"{gitea.config_path}:2: not valid YAML: expected the node content, but found '<stream end>' {HINT}"
    clone.commit()
    clone.git("tag", "anything")
    assert_rejected(clone, "main:experiment", lines=with_no_record(error, "refs/heads/experiment"))
    assert_rejected(clone, "refs/tags/anything", lines=with_no_record(error, "refs/tags/anything"))
    # A branch name the pusher chose is printed escaped: it cannot reorder or forge the lines around it.
    assert_rejected(clone, "main:a\u202eb", lines=with_no_record(error, "refs/heads/a\\u202eb"))
    assert clone.push("main:refs/notes/review").ok


def test_a_routing_record_another_user_could_write_or_that_does_not_read_back_is_not_believed(
        clone: Clone, gitea: GiteaServer) -> None:
    clone.commit()
    error = break_config(gitea)
    record = routing_record(gitea)
    kept = record.read_bytes()
    record.chmod(0o664)  # Gitea's group holds the worker's user too
    assert_rejected(clone, "main:experiment", lines=with_no_record(error, "refs/heads/experiment"))
    record.chmod(0o600)
    cache_folder(gitea).chmod(0o770)
    assert_rejected(clone, "main:experiment", lines=with_no_record(error, "refs/heads/experiment"))
    cache_folder(gitea).chmod(0o700)
    for garbled in (kept[:-2], kept.replace(b'"tags"', b'"Tags"'), kept.replace(b'"v*"', b"7")):
        record.write_bytes(garbled)
        assert_rejected(clone, "main:experiment", lines=with_no_record(error, "refs/heads/experiment"))
    record.unlink()
    record.symlink_to(gitea.base / "elsewhere.routing")
    (gitea.base / "elsewhere.routing").write_bytes(kept)
    assert_rejected(clone, "main:experiment", lines=with_no_record(error, "refs/heads/experiment"))
    record.unlink()
    record.write_bytes(kept)
    assert clone.push("main:experiment").ok


def test_the_first_time_a_hook_finds_the_config_broken_is_on_record_until_it_loads_again(
        clone: Clone, gitea: GiteaServer) -> None:
    home = str(gitea.home / ".cache")
    path = str(gitea.config_path)
    clone.commit()
    assert cache.broken_since(path, home) is None
    good = gitea.config_path.read_text()
    error = break_config(gitea)
    before = int(time.time())
    assert_rejected(clone, "main", lines=under_last_valid(error, "refs/heads/main"))
    after = time.time()
    since = cache.broken_since(path, home)
    assert since is not None and before <= since <= after
    assert clone.push("main:experiment").ok  # a push that passes saw it broken too: the first time stays
    assert cache.broken_since(path, home) == since
    gitea.config_path.write_text(good)
    assert clone.push("main").ok
    assert cache.broken_since(path, home) is None
    assert [name for name in os.listdir(cache_folder(gitea)) if name.endswith(".broken")] == []


def test_a_push_of_many_publishing_refs_names_twenty_lines_of_them_at_most(clone: Clone, gitea: GiteaServer) -> None:
    clone.commit()
    tags = [f"v1.{i:02d}" for i in range(25)]
    for tag in tags:
        clone.git("tag", tag)
    error = break_config(gitea)
    named, trailer = under_last_valid(error, *(f"refs/tags/{t}" for t in tags[:19])), under_last_valid(error)
    assert_rejected(clone, *(f"refs/tags/{t}" for t in tags),
                    lines=[*named[:19], "hf-publish: … and 6 more refs", *trailer])


def test_a_cache_folder_an_earlier_release_left_group_writable_is_made_private_by_the_next_valid_load(
        clone: Clone, gitea: GiteaServer) -> None:
    cache_folder(gitea).chmod(0o775)
    os.utime(gitea.config_path)  # the config changed, so the next push loads and records it again
    clone.commit()
    assert clone.push("main:experiment").ok
    assert cache_folder(gitea).stat().st_mode & 0o777 == 0o755
    error = break_config(gitea)
    assert clone.push("main:other").ok
    assert_rejected(clone, "main", lines=under_last_valid(error, "refs/heads/main"))


def test_status_says_since_when_the_hooks_have_found_the_config_broken(clone: Clone, gitea: GiteaServer) -> None:
    clone.commit()
    error = break_config(gitea)
    assert_rejected(clone, "main", lines=under_last_valid(error, "refs/heads/main"))
    since = cache.broken_since(str(gitea.config_path), str(gitea.home / ".cache"))
    assert since is not None
    result = gitea.cli("status")
    assert result.returncode == 1
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(since))
    assert result.stderr == (f"gitea-hf-hook: error: {error.removesuffix(' ' + HINT)}; the hooks have found it "
                             f"broken since {when}, and refuse pushes to the refs that published under the last "
                             f"valid config {HINT}\n")
