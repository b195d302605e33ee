"""Who may publish: Gitea's authenticated pusher, groups, deploy keys and pull-request merges."""

from __future__ import annotations

from tests.support.gitea_server import Clone, GiteaServer, assert_rejected

HEADER = ("hf-publish: rejected refs/heads/main of acme/bert-tiny, which publishes to "
          "https://huggingface.co/acme/bert-tiny (branch main):")


def test_a_listed_publisher_pushes_and_the_job_is_queued(clone: Clone, gitea: GiteaServer):
    commit = clone.commit(message="first weights")
    result = clone.push("main", user="alice")
    assert result.ok
    assert len(result.remote) == 1
    assert result.remote[0].startswith(
        f"hf-publish: queued acme/bert-tiny@{commit[:7]} -> https://huggingface.co/acme/bert-tiny (main), job ")
    assert len(gitea.queued_jobs()) == 1


def test_a_member_of_a_publishing_group_may_publish_over_http(clone: Clone):
    clone.commit()
    assert clone.push("main", user="bob", via="http").ok


def test_someone_not_listed_is_told_who_may(clone: Clone, gitea: GiteaServer):
    clone.commit()
    assert_rejected(clone, "main", user="carol", lines=[HEADER, "  refs/heads/main: carol may not publish to acme/bert-tiny "
                                                                 "(publishers: alice, @ml-release; ask a Gitea admin to add you)"])
    assert gitea.queued_jobs() == []


def test_a_push_without_gitea_identity_is_refused(clone: Clone):
    clone.commit()
    assert_rejected(clone, "main", user=None, lines=[HEADER, "  refs/heads/main: no Gitea pusher identity "
                                                              "(push through Gitea over SSH or HTTP so it knows who you are)"])


def test_a_push_straight_into_the_bare_repository_is_refused(clone: Clone):
    """No Gitea variables at all: the repository is known from its path, the pusher is not."""
    clone.commit()
    assert_rejected(clone, "main", via="none", lines=[
        HEADER,
        "  refs/heads/main: no Gitea pusher identity (push through Gitea over SSH or HTTP so it knows who you are)",
    ])


def test_deploy_keys_publish_only_where_allowed(server: GiteaServer, tmp_path):
    server.write_config("""\
  - match: acme/bert-tiny
    publishers: [alice]
    allow_deploy_keys: true
    checks: {model_card: false}
  - match: acme/*
    publishers: [alice]
    checks: {model_card: false}
""")
    for name in ("bert-tiny", "gpt-small"):
        server.create_repo("acme", name)
        server.install(f"acme/{name}")
    allowed = server.clone("acme", "bert-tiny", tmp_path / "a")
    allowed.commit({"x.txt": "x"})
    assert allowed.push("main", deploy_key=9).ok
    refused = server.clone("acme", "gpt-small", tmp_path / "b")
    refused.commit({"x.txt": "x"})
    result = refused.push("main", deploy_key=9)
    assert not result.ok
    assert result.remote[1] == ("  refs/heads/main: deploy keys may not publish to acme/gpt-small (push as a person "
                                "listed in publishers, or ask an admin to set allow_deploy_keys)")


def test_require_merge_publishes_pull_request_merges_only(server: GiteaServer, tmp_path):
    server.write_config("""\
  - match: acme/*
    publishers: [alice]
    require_merge: true
    checks: {model_card: false}
""")
    server.create_repo("acme", "bert-tiny")
    server.install("acme/bert-tiny")
    clone = server.clone("acme", "bert-tiny", tmp_path / "w")
    clone.commit({"x.txt": "x"})
    assert_rejected(clone, "main", user="alice", lines=[
        HEADER,
        "  refs/heads/main: only pull-request merges made in Gitea publish to acme/bert-tiny "
        "(open a pull request and merge it in Gitea)",
    ])
    assert server.queued_jobs() == []
    merged = clone.push("main", user="alice", via="pr-merge")
    assert merged.ok
    assert merged.remote[0].startswith("hf-publish: queued acme/bert-tiny@")


def test_the_merger_of_a_pull_request_must_be_a_publisher(clone: Clone):
    clone.commit()
    assert_rejected(clone, "main", user="carol", via="pr-merge", lines=[
        HEADER,
        "  refs/heads/main: carol may not publish to acme/bert-tiny "
        "(publishers: alice, @ml-release; ask a Gitea admin to add you)",
    ])


def test_gitea_bookkeeping_pushes_are_neither_checked_nor_queued(clone: Clone, gitea: GiteaServer):
    clone.commit({"model.bin": b"\x80\x04K\x01."})
    result = clone.push("main", user="alice", via="internal")
    assert result.ok and result.remote == []
    assert gitea.queued_jobs() == []


def test_a_wiki_push_through_hand_copied_hooks_is_neither_checked_nor_queued(server: GiteaServer, tmp_path):
    server.write_config("  - match: acme/*\n    publishers: [alice]\n")
    server.create_repo("acme", "bert-tiny")
    server.install("acme/bert-tiny")
    # install skips wikis, so copy the hooks there by hand as a careless admin might.
    wiki = server.create_repo("acme", "bert-tiny", wiki=True)
    for hook in ("pre-receive", "post-receive"):
        src = server.repo_root / "acme/bert-tiny.git/hooks" / f"{hook}.d" / "hf-publish"
        (wiki / "hooks" / f"{hook}.d" / "hf-publish").write_text(src.read_text())
        (wiki / "hooks" / f"{hook}.d" / "hf-publish").chmod(0o755)
    clone = Clone(server, wiki, "acme", "bert-tiny", tmp_path / "wiki")
    clone.commit({"Home.md": "no card, no rules"})
    env = {"GITEA_REPO_NAME": "bert-tiny.wiki", "GITEA_REPO_IS_WIKI": "true"}
    result = clone.push("main", user="carol", env=env)
    assert result.ok and result.remote == []
    assert server.queued_jobs() == []


def test_repositories_and_branches_without_a_rule_pass_untouched(server: GiteaServer, tmp_path):
    server.write_config("  - match: acme/*\n    publishers: [alice]\n")
    server.create_repo("other", "thing")
    server.create_repo("acme", "bert-tiny")
    server.install("--all")
    other = server.clone("other", "thing", tmp_path / "o")
    other.commit({"model.bin": b"\x80\x04K\x01."})
    assert other.push("main", user="carol").remote == []
    acme = server.clone("acme", "bert-tiny", tmp_path / "a")
    acme.commit({"model.bin": b"\x80\x04K\x01."})
    result = acme.push("main:experiment", user="carol")
    assert result.ok and result.remote == []
    assert server.queued_jobs() == []
