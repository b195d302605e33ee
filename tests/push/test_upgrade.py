"""A server that upgrades the package before running install again keeps checking and queueing pushes."""

from __future__ import annotations

from tests.support.gitea_server import Clone, GiteaServer, assert_rejected

HEADER = ("hf-publish: rejected refs/heads/main of acme/bert-tiny, which publishes to "
          "https://huggingface.co/acme/bert-tiny (branch main):")


def hooks_of_release_0_1(clone: Clone) -> None:
    """Rewrite our installed hooks as release 0.1 wrote them: they import the hooks from the package's top."""
    for hook in ("pre-receive", "post-receive"):
        path = clone.bare / "hooks" / f"{hook}.d" / "hf-publish"
        text = path.read_text()
        new = f"gitea_hf_hook.push.{hook.replace('-', '_')}"
        assert new in text
        path.write_text(text.replace(new, f"gitea_hf_hook.{hook.replace('-', '_')}"))


def test_hooks_installed_by_the_previous_release_still_check_and_queue(clone: Clone, gitea: GiteaServer):
    hooks_of_release_0_1(clone)
    clone.commit({"config.json": "{"})
    assert_rejected(clone, "main", lines=[
        HEADER, "  config.json: not valid JSON at line 1 (fix the file, or exclude it)"])
    commit = clone.commit({"config.json": "{}"})
    result = clone.push("main")
    assert result.ok, result.output
    assert result.remote[0].startswith(f"hf-publish: queued acme/bert-tiny@{commit[:7]} -> ")
    assert len(gitea.queued_jobs()) == 1
