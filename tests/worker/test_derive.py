"""A job file is Gitea's user's to write: the worker takes from it only names, and derives the rest again.

Each story hands the worker a job as a hostile Gitea would write it and reads the one line it answers.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from gitea_hf_hook.config.load import load
from gitea_hf_hook.config.model import Config, Target
from gitea_hf_hook.errors import PublishError
from gitea_hf_hook.gitea import git
from gitea_hf_hook.spool.job import Job
from gitea_hf_hook.worker.derive import derive
from tests.support.gitea_server import Clone, GiteaServer
from tests.support.jobs import make_job

RULE = """\
  - match: acme/*
    hub_repo: acme/{name}
    branches: {main: main}
    tags: "v*"
"""


@pytest.fixture
def config(server: GiteaServer) -> Config:
    server.create_repo("acme", "bert-tiny")
    server.create_repo("acme", "secret")
    return load(str(server.write_config(RULE)))


@pytest.fixture
def pushed(server: GiteaServer, config: Config, tmp_path: Path) -> tuple[Clone, str, str]:
    """Two commits on acme/bert-tiny's main, pushed straight into the bare repository (no hooks installed)."""
    clone = server.clone("acme", "bert-tiny", tmp_path / "work")
    first = clone.commit({"a.txt": "a\n"}, message="first")
    second = clone.commit({"b.txt": "b\n"}, message="second")
    clone.git("push", "--quiet", str(clone.bare), "main")
    return clone, first, second


def job_for(config: Config, commit: str, **request: object) -> Job:
    job = make_job(1, commit=commit, repo_dir=os.path.join(config.repo_root, "acme", "bert-tiny.git"))
    return job._replace(request=job.request._replace(**request))


def refused(config: Config, job: Job) -> str:
    with git.confined(), pytest.raises(PublishError) as error:
        derive(config, job)
    assert not error.value.retryable
    return error.value.message


def test_a_job_for_the_tip_or_an_ancestor_of_its_branch_is_published_where_the_rule_says(
        config: Config, pushed: tuple[Clone, str, str]) -> None:
    _clone, first, second = pushed
    for commit in (second, first):
        with git.confined():
            derived = derive(config, job_for(config, commit))
        assert derived.repo_dir == os.path.realpath(os.path.join(config.repo_root, "acme", "bert-tiny.git"))
        assert derived.target == Target("acme/bert-tiny", "model", "branch", "main", "main")


def test_a_job_cannot_choose_its_target_and_so_its_token(config: Config, pushed: tuple[Clone, str, str]) -> None:
    _clone, _first, second = pushed
    elsewhere = job_for(config, second, target=Target("other/bert", "model", "branch", "main", "main"))
    assert refused(config, elsewhere) == ("request.target: the job asks for other/bert branch main, but repos[0] "
                                          "publishes refs/heads/main of acme/bert-tiny to acme/bert-tiny branch main")


def test_a_repository_no_rule_maps_publishes_nothing(config: Config, pushed: tuple[Clone, str, str]) -> None:
    job = job_for(config, pushed[2], repository="private/thing")
    assert refused(config, job) == f"request.repository: private/thing matches no repos entry of {config.path}"


def test_a_ref_the_rule_does_not_publish_is_refused(config: Config, pushed: tuple[Clone, str, str]) -> None:
    job = job_for(config, pushed[2], ref="refs/heads/dev")
    assert refused(config, job) == "request.ref: refs/heads/dev of acme/bert-tiny does not publish under repos[0]"


@pytest.mark.parametrize("ref", ["refs/heads/main@{1}", "refs/heads/main^", "refs/heads/main~1",
                                 "refs/heads/main:a.txt", "refs/heads/../main"])
def test_a_ref_that_git_would_read_as_another_revision_is_refused(config: Config, pushed: tuple[Clone, str, str],
                                                                  ref: str) -> None:
    assert refused(config, job_for(config, pushed[2], ref=ref)) == f"request.ref: {ref!r} is not a ref name git accepts"


def test_the_repository_folder_comes_from_the_root_and_the_name(config: Config,
                                                                pushed: tuple[Clone, str, str]) -> None:
    secret = os.path.join(config.repo_root, "acme", "secret.git")
    job = job_for(config, pushed[2], repo_dir=secret)
    assert refused(config, job) == (f"request.repo_dir: {secret} is not the folder of acme/bert-tiny "
                                    f"({os.path.realpath(os.path.join(config.repo_root, 'acme', 'bert-tiny.git'))})")
    for name in ("acme/..", "acme/bert-tiny.wiki", "acme/x.git", "../acme/bert-tiny"):
        assert refused(config, job_for(config, pushed[2], repository=name)) == (
            f"request.repository: {name!r} is not a Gitea repository name")


def test_a_repository_folder_that_is_a_link_is_refused(server: GiteaServer, config: Config,
                                                       pushed: tuple[Clone, str, str]) -> None:
    link = Path(config.repo_root, "acme", "linked.git")
    link.symlink_to(Path(config.repo_root, "acme", "secret.git"))
    job = job_for(config, pushed[2], repository="acme/linked", target=Target("acme/linked", "model", "branch", "main",
                                                                              "main"))
    assert refused(config, job) == f"request.repository: {link} is, or lies under, a symbolic link"


def test_a_commit_that_is_not_on_the_ref_is_refused(server: GiteaServer, config: Config,
                                                    pushed: tuple[Clone, str, str]) -> None:
    clone, _first, second = pushed
    clone.git("checkout", "--quiet", "-b", "side", "HEAD~1")
    side = clone.commit({"c.txt": "c\n"}, message="side")
    clone.git("push", "--quiet", str(clone.bare), "side")  # in the repository, but not on main
    assert refused(config, job_for(config, side)) == (f"request.commit: {side[:12]} is not on refs/heads/main of "
                                                      f"acme/bert-tiny, which points at {second[:12]}")
    missing = "d" * 40
    assert refused(config, job_for(config, missing)) == f"request.commit: {missing} is not a commit of acme/bert-tiny"


def test_a_deletion_is_published_only_while_the_ref_stays_deleted(config: Config,
                                                                   pushed: tuple[Clone, str, str]) -> None:
    deletion = job_for(config, "", new="0" * 40)
    assert refused(config, deletion) == ("request.new: the job deletes refs/heads/main, which exists again in "
                                         "acme/bert-tiny")
    subprocess.run(["git", "update-ref", "-d", "refs/heads/main"], cwd=pushed[0].bare, check=True)
    with git.confined():
        assert derive(config, deletion).target.revision == "main"
