"""When things go wrong: a broken config fails closed for publishing refs only; a crash shows one line."""

from __future__ import annotations

import os
import subprocess

from tests.support.gitea_server import Clone, GiteaServer, assert_rejected, gitea_env
from tests.support.rules import GROUPS, RULE


def broken_config(ref: str, error: str) -> list[str]:
    """What a pusher of a ref that published under the last valid config reads while the config is broken."""
    return [f"hf-publish: rejected {ref} of acme/bert-tiny, which publishes to the Hub under the last valid config",
            f"  the publishing config is broken: {error} (fix config.yaml; README.md lists every key)",
            "  (a Gitea admin must fix it; pushes to refs that did not publish under the last valid config are let "
            "through)"]


def test_a_broken_config_rejects_publishing_refs_and_lets_others_pass(clone: Clone, gitea: GiteaServer):
    gitea.config_path.write_text(gitea.config_path.read_text().replace("publishers:", "publisher:"))
    clone.commit()
    assert_rejected(clone, "main", lines=broken_config(
        "refs/heads/main", f"{gitea.config_path}:16: repos[0].publisher: unknown key; did you mean 'publishers'?"))
    other = clone.push("main:experiment")
    assert other.ok and other.remote == []


def test_an_unparsable_config_and_a_missing_one_are_named_and_an_unmapped_branch_passes(clone: Clone, gitea: GiteaServer):
    gitea.config_path.write_text("repos: [\n")
    clone.commit()
    result = clone.push("main")
    assert not result.ok
    assert result.remote[1].startswith(f"  the publishing config is broken: {gitea.config_path}:2: not valid YAML")
    assert clone.push("main:experiment").ok
    gitea.config_path.unlink()
    result = clone.push("main")
    assert result.remote[1] == (f"  the publishing config is broken: {gitea.config_path}: no such file "
                                "(create it, or point --config or $GITEA_HF_HOOK_CONFIG at one)")
    # Refs that are neither branches nor tags never publish.
    assert clone.push("main:refs/notes/review").ok


def test_a_config_error_in_another_repositorys_rule_leaves_this_one_alone(server: GiteaServer, tmp_path):
    server.write_config(RULE.replace("acme/*", "other/*"), extra=GROUPS)
    server.create_repo("acme", "bert-tiny")
    server.install("acme/bert-tiny")
    server.config_path.write_text(server.config_path.read_text().replace("checks:", "checks:\n      pickle: scan"))
    clone = server.clone("acme", "bert-tiny", tmp_path / "w")
    clone.commit({"x": "x"})
    assert clone.push("main").ok


def run_hook(clone: Clone, gitea: GiteaServer, hook: str, update: str) -> subprocess.CompletedProcess[str]:
    """Run one of our installed hooks as Gitea's dispatcher would, with Gitea's environment for alice."""
    env = {**os.environ, **gitea_env("acme", "bert-tiny", "alice"), "HOME": str(gitea.home)}
    return subprocess.run([str(clone.bare / "hooks" / f"{hook}.d" / "hf-publish")], input=update,
                          capture_output=True, text=True, cwd=clone.bare, env=env)


def test_an_internal_error_gives_the_pusher_one_line_and_the_admin_a_traceback(clone: Clone, gitea: GiteaServer):
    new = clone.commit()
    assert clone.push("main").ok
    # Gitea hands the hook an update whose old id the repository does not have: git fails under us.
    proc = run_hook(clone, gitea, "pre-receive", f"{'1' * 40} {new} refs/heads/main\n")
    log = gitea.audit_log.parent / "hook.log"
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr == (f"hf-publish: rejected: internal error while checking this push (details for the admin "
                           f"in {log})\n")
    text = log.read_text()
    assert "Traceback (most recent call last)" in text and "GitError: git merge-base failed" in text
    assert "pre-receive acme/bert-tiny pusher=alice" in text


def test_post_receive_with_an_unusable_queue_exits_0_warns_the_pusher_and_logs_why(clone: Clone, gitea: GiteaServer):
    """The queue folder is unusable between the two hooks: the push stands, the pusher is told, the job waits."""
    old = clone.commit()
    assert clone.push("main").ok
    new = clone.commit({"x.txt": "x"})
    # The new objects reach the repository as they would during the push; then pre-receive runs for main.
    subprocess.run(["git", "push", "--quiet", str(clone.bare), f"{new}:refs/heads/staging"], cwd=clone.path,
                   check=True, env={**os.environ, "GITEA_INTERNAL_PUSH": "true"})
    update = f"{old} {new} refs/heads/main\n"
    assert run_hook(clone, gitea, "pre-receive", update).returncode == 0
    (gitea.spool / "queue").rename(gitea.spool / "queue-moved")
    (gitea.spool / "queue").write_text("not a folder")
    proc = run_hook(clone, gitea, "post-receive", update)
    log = gitea.audit_log.parent / "hook.log"
    assert proc.returncode == 0
    assert proc.stderr == ("hf-publish: warning: the publish job is not queued yet; the worker will queue it from "
                           f"the spool (details for the admin in {log})\n")
    assert "NotADirectoryError" in log.read_text()
    assert len(list((gitea.spool / "tmp").glob("prepared-*.json"))) == 1


def test_with_enforce_off_an_internal_error_lets_the_push_land_and_publishes_nothing(clone: Clone, gitea: GiteaServer):
    gitea.config_path.write_text(gitea.config_path.read_text() + "enforce: false\n")
    new = clone.commit()
    assert clone.push("main").ok
    for job in (gitea.spool / "tmp").glob("prepared-*.json"):
        job.unlink()
    # An old id git does not know makes the check fail, as any internal error would.
    proc = run_hook(clone, gitea, "pre-receive", f"{'1' * 40} {new} refs/heads/main\n")
    log = gitea.audit_log.parent / "hook.log"
    assert proc.returncode == 0
    assert proc.stderr == (f"hf-publish: would reject: internal error while checking this push, so it is not "
                           f"published (details for the admin in {log})\n")
    assert list((gitea.spool / "tmp").glob("prepared-*.json")) == []


def test_a_config_whose_repos_key_is_misspelt_still_routes_as_the_last_valid_one(clone: Clone, gitea: GiteaServer):
    # The broken file is never read for routing: a misspelt "repos" must not read as "nothing publishes".
    gitea.config_path.write_text(gitea.config_path.read_text().replace("repos:", "Repos:"))
    clone.commit()
    assert_rejected(clone, "main", lines=broken_config(
        "refs/heads/main", f"{gitea.config_path}:11: Repos: unknown key; did you mean 'repos'?"))
    assert clone.push("main:experiment").ok
