"""The pure half of the push policy, called in-process: which refs publish where, and who may publish them."""

from __future__ import annotations

import pytest

from gitea_hf_hook.checks.problems import Problem
from gitea_hf_hook.config.model import Config, RepoRule, Target
from gitea_hf_hook.config.schema import parse
from gitea_hf_hook.gitea.environment import PR_MERGE, Push, read_push
from gitea_hf_hook.gitea.hook_input import Update, is_zero, parse_updates
from gitea_hf_hook.push.policy import Verdict, check_pusher, publishing
from tests.support.gitea_server import gitea_env

OLD = "1" * 40
NEW = "2" * 40
ZERO = "0" * 40
HEAD = "refs/heads/main"
HUB = "acme/bert-tiny"
NOT_LISTED_HINT = "publishers: alice, @ml-release; ask a Gitea admin to add you"

BASE = """\
gitea:
  repo_root: /srv/gitea/repositories
groups:
  ml-release: [Bob, dave]
  empty: []
repos:
"""
RULE = """\
  - match: acme/*
    hub_repo: acme/{name}
    branches: {main: main, "release/*": "rel-{branch}", "exp/**": "{branch}"}
    tags: ["v*", "release-?"]
    publishers: [alice, "@ml-release"]
"""


def config(rules: str = RULE, base: str = BASE) -> Config:
    return parse("config.yaml", base + rules)


def push(pusher: str = "alice", *, owner: str = "acme", name: str = "bert-tiny", wiki: bool = False,
         deploy_key: str = "", trigger: str = "") -> Push:
    return Push(owner=owner, name=name, is_wiki=wiki, repo_id="7", pusher=pusher, pusher_id="2" if pusher else "",
                deploy_key_id=deploy_key, trigger=trigger, pr_id="42" if trigger == PR_MERGE else "0")


def update(ref: str, old: str = OLD, new: str = NEW) -> Update:
    return Update(old, new, ref)


def verdict(cfg: Config, p: Push, ref: str = HEAD, *, old: str = OLD, new: str = NEW) -> Verdict:
    [v] = publishing(cfg, p, [update(ref, old, new)])
    return v


# --- publishing: which refs map to a Hub target ------------------------------------------------------------------

def test_branches_and_tags_route_to_their_hub_targets():
    cfg = config()
    updates = [update("refs/heads/main"), update("refs/heads/release/1.0"), update("refs/heads/exp/a/b"),
               update("refs/tags/v1.2.0"), update("refs/tags/release-3")]
    verdicts = publishing(cfg, push(), updates)
    assert [v.target for v in verdicts] == [
        Target(HUB, "model", "branch", "main", "main"),
        Target(HUB, "model", "branch", "release/1.0", "rel-release/1.0"),
        Target(HUB, "model", "branch", "exp/a/b", "exp/a/b"),
        Target(HUB, "model", "tag", "v1.2.0", "v1.2.0"),
        Target(HUB, "model", "tag", "release-3", "release-3"),
    ]
    assert [v.update for v in verdicts] == updates
    assert all(v.rule is cfg.repos[0] and v.problems == [] and v.commit == "" for v in verdicts)


def test_refs_outside_the_branch_and_tag_globs_pass_untouched():
    updates = [update(ref) for ref in (
        "refs/heads/feature", "refs/heads/mainline", "refs/heads/release/1/2",  # '*' does not cross '/'
        "refs/heads/exp", "refs/tags/x1", "refs/tags/release-10", "refs/notes/commits", "refs/pull/3/head",
        "refs/heads", "main", "refs/remotes/origin/main")]
    assert publishing(config(), push(), updates) == []


def test_only_the_publishing_refs_of_a_mixed_push_get_verdicts():
    updates = parse_updates(f"{OLD} {NEW} refs/heads/feature\n\n{ZERO} {NEW} refs/tags/v2\n"
                            f"{OLD} {NEW} refs/heads/main\n")
    assert [(v.update.ref, v.target.kind) for v in publishing(config(), push(), updates)] == [
        ("refs/tags/v2", "tag"), (HEAD, "branch")]


def test_deletions_and_creations_still_route():
    updates = [update(HEAD, new=ZERO), update("refs/tags/v1", old=ZERO)]
    verdicts = publishing(config(), push(), updates)
    assert [(v.update.deleted, v.update.created) for v in verdicts] == [(True, False), (False, True)]
    assert is_zero(ZERO) and is_zero("0" * 64) and not is_zero(NEW)


def test_wikis_never_publish():
    updates = [update(HEAD), update("refs/tags/v1")]
    assert publishing(config(), push(wiki=True), updates) == []
    # Gitea names a wiki "<repo>.wiki"; the record speaks of the repository and says it is a wiki.
    env = {**gitea_env("acme", "bert-tiny.wiki", "alice"), "GITEA_REPO_IS_WIKI": "true"}
    wiki = read_push(env)
    assert (wiki.full_name, wiki.is_wiki) == (HUB, True)
    assert publishing(config(), wiki, updates) == []


def test_a_repository_no_rule_matches_publishes_nothing():
    assert publishing(config(), push(owner="other"), [update(HEAD)]) == []
    assert publishing(config(rules="  []\n"), push(), [update(HEAD)]) == []
    assert publishing(parse("config.yaml", "gitea:\n  repo_root: /srv/r\n"), push(), [update(HEAD)]) == []


def test_the_first_matching_rule_wins_and_matching_ignores_case():
    rules = ('  - match: ACME/Special-*\n    hub_repo: "acme-special/{name}"\n    repo_type: dataset\n'
             "    publishers: ['*']\n" + RULE)
    cfg = config(rules)
    special = verdict(cfg, push(name="special-corpus"))
    assert special.rule is cfg.repos[0]
    assert special.target == Target("acme-special/special-corpus", "dataset", "branch", "main", "main")
    assert special.target.repo_path == "datasets/acme-special/special-corpus"
    assert verdict(cfg, push()).rule is cfg.repos[1]


def test_the_default_rule_publishes_main_to_owner_and_name():
    cfg = config("  - match: '*/*'\n")
    assert verdict(cfg, push(owner="lab", name="vit")).target == Target("lab/vit", "model", "branch", "main",
                                                                          "main")
    assert publishing(cfg, push(), [update("refs/tags/v1")]) == []  # no tags unless listed


def test_records_built_by_hand_route_the_same_way():
    rule = RepoRule(position=0, match="acme/*", branches=(("dev", "staging"),), tags=("v*",))
    cfg = Config(path="config.yaml", repo_root="/srv/r", repos=(rule,))
    assert verdict(cfg, push(), "refs/heads/dev").target == Target(HUB, "model", "branch", "dev", "staging")
    assert publishing(cfg, push(), [update(HEAD)]) == []


# --- check_pusher: who may publish --------------------------------------------------------------------------------

def test_a_push_without_a_gitea_identity_is_refused():
    cfg = config()
    p = push("")
    assert check_pusher(cfg, p, verdict(cfg, p)) == [
        Problem(HEAD, "no Gitea pusher identity", "push through Gitea over SSH or HTTP so it knows who you are")]


def test_no_identity_is_the_only_problem_reported_even_for_a_deploy_key_under_require_merge():
    cfg = config(RULE + "    require_merge: true\n")
    p = push("", deploy_key="9")
    assert check_pusher(cfg, p, verdict(cfg, p)) == [
        Problem(HEAD, "no Gitea pusher identity", "push through Gitea over SSH or HTTP so it knows who you are")]


@pytest.mark.parametrize("who", ["alice", "Alice", "ALICE"])
def test_a_listed_publisher_may_publish(who: str):
    cfg = config()
    assert check_pusher(cfg, push(who), verdict(cfg, push(who))) == []


@pytest.mark.parametrize("who", ["bob", "BOB", "dave"])
def test_a_member_of_a_listed_group_may_publish(who: str):
    cfg = config()
    assert check_pusher(cfg, push(who), verdict(cfg, push(who))) == []


def test_a_star_lets_anyone_with_an_identity_publish():
    cfg = config(RULE.replace('[alice, "@ml-release"]', '["*"]'))
    assert check_pusher(cfg, push("carol"), verdict(cfg, push("carol"))) == []
    assert check_pusher(cfg, push(""), verdict(cfg, push("")))[0].problem == "no Gitea pusher identity"


def test_a_non_publisher_is_refused_and_told_who_may():
    cfg = config()
    p = push("carol")
    assert check_pusher(cfg, p, verdict(cfg, p)) == [
        Problem(HEAD, f"carol may not publish to {HUB}", NOT_LISTED_HINT)]
    tag = verdict(cfg, p, "refs/tags/v1")
    assert check_pusher(cfg, p, tag) == [Problem("refs/tags/v1", f"carol may not publish to {HUB}", NOT_LISTED_HINT)]


def test_group_names_are_not_user_names():
    cfg = config()
    for who in ("ml-release", "@ml-release", "empty"):
        assert check_pusher(cfg, push(who), verdict(cfg, push(who))) == [
            Problem(HEAD, f"{who} may not publish to {HUB}", NOT_LISTED_HINT)]


def test_a_rule_without_publishers_lets_nobody_publish():
    cfg = config("  - match: acme/*\n")
    assert check_pusher(cfg, push("alice"), verdict(cfg, push("alice"))) == [
        Problem(HEAD, f"alice may not publish to {HUB}", "publishers: nobody; ask a Gitea admin to add you")]


def test_a_deploy_key_is_refused_unless_the_rule_allows_it():
    cfg = config()
    # Gitea names the repository owner as the pusher of a deploy key; only the deploy-key problem is shown.
    p = push("acme", deploy_key="9")
    assert check_pusher(cfg, p, verdict(cfg, p)) == [
        Problem(HEAD, f"deploy keys may not publish to {HUB}",
                "push as a person listed in publishers, or ask an admin to set allow_deploy_keys")]


def test_an_allowed_deploy_key_publishes_without_being_a_listed_publisher():
    cfg = config(RULE + "    allow_deploy_keys: true\n")
    p = push("acme", deploy_key="9")
    assert check_pusher(cfg, p, verdict(cfg, p)) == []
    # The same owner pushing with their own key is a person, and is not listed.
    assert check_pusher(cfg, push("acme"), verdict(cfg, push("acme"))) == [
        Problem(HEAD, f"acme may not publish to {HUB}", NOT_LISTED_HINT)]


def test_deploy_keys_are_read_from_gitea_s_environment():
    assert read_push(gitea_env("acme", "bert-tiny", "alice", deploy_key=9)).is_deploy_key
    assert not read_push(gitea_env("acme", "bert-tiny", "alice")).is_deploy_key  # GITEA_DEPLOY_KEY_ID=0
    assert read_push(gitea_env("acme", "bert-tiny", "alice", via="pr-merge")).is_pr_merge


MERGE_ONLY = Problem(HEAD, f"only pull-request merges made in Gitea publish to {HUB}",
                     "open a pull request and merge it in Gitea")


def test_require_merge_refuses_a_direct_branch_push():
    cfg = config(RULE + "    require_merge: true\n")
    assert check_pusher(cfg, push("alice"), verdict(cfg, push("alice"))) == [MERGE_ONLY]
    assert check_pusher(cfg, push("carol"), verdict(cfg, push("carol"))) == [
        MERGE_ONLY, Problem(HEAD, f"carol may not publish to {HUB}", NOT_LISTED_HINT)]


def test_require_merge_accepts_a_pull_request_merge_by_a_publisher():
    cfg = config(RULE + "    require_merge: true\n")
    merge = push("alice", trigger=PR_MERGE)
    assert check_pusher(cfg, merge, verdict(cfg, merge)) == []
    # The merge trigger does not stand in for being a publisher.
    outsider = push("carol", trigger=PR_MERGE)
    assert check_pusher(cfg, outsider, verdict(cfg, outsider)) == [
        Problem(HEAD, f"carol may not publish to {HUB}", NOT_LISTED_HINT)]
    # Gitea's own merge environment says the same.
    gitea_merge = read_push(gitea_env("acme", "bert-tiny", "alice", via="pr-merge"))
    assert check_pusher(cfg, gitea_merge, verdict(cfg, gitea_merge)) == []


def test_require_merge_spares_tags_and_deletions():
    cfg = config(RULE + "    require_merge: true\n")
    assert check_pusher(cfg, push(), verdict(cfg, push(), "refs/tags/v1")) == []
    assert check_pusher(cfg, push(), verdict(cfg, push(), new=ZERO)) == []


def test_without_require_merge_a_pull_request_merge_is_an_ordinary_push():
    cfg = config()
    merge = push("alice", trigger=PR_MERGE)
    assert check_pusher(cfg, merge, verdict(cfg, merge)) == []


def test_require_merge_and_a_refused_deploy_key_are_both_reported():
    cfg = config(RULE + "    require_merge: true\n")
    p = push("acme", deploy_key="9")
    assert check_pusher(cfg, p, verdict(cfg, p)) == [
        MERGE_ONLY, Problem(HEAD, f"deploy keys may not publish to {HUB}",
                            "push as a person listed in publishers, or ask an admin to set allow_deploy_keys")]
