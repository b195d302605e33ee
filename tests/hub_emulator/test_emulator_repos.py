"""Repositories, identity, refs and errors, as the real client sees them."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from huggingface_hub import CommitOperationAdd
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

if TYPE_CHECKING:
    from tests.support.hub import Hub


def test_whoami_names_the_token_owner(clean_hub: Hub) -> None:
    me = clean_hub.api().whoami()
    assert me["name"] == "emulator"
    assert me["type"] == "user"
    assert me["auth"]["accessToken"]["role"] == "write"
    assert [org["name"] for org in me["orgs"]] == ["acme"]
    assert clean_hub.api(clean_hub.other_token).whoami()["name"] == "bob"
    assert clean_hub.api(clean_hub.read_token).whoami()["auth"]["accessToken"]["role"] == "read"


def test_bad_token_is_refused_with_401(clean_hub: Hub) -> None:
    with pytest.raises(HfHubHTTPError) as err:
        clean_hub.api("hf_NotAValidToken").whoami()
    assert err.value.response.status_code == 401
    with pytest.raises(HfHubHTTPError) as err:
        clean_hub.api("hf_NotAValidToken").create_repo("emulator/never")
    assert err.value.response.status_code == 401


def test_create_model_dataset_and_space(clean_hub: Hub, repo_id: str) -> None:
    api = clean_hub.api()
    model = api.create_repo(repo_id)
    dataset = api.create_repo(repo_id, repo_type="dataset", private=True)
    space = api.create_repo(repo_id, repo_type="space", space_sdk="gradio")

    assert (model.repo_type, model.repo_id) == ("model", repo_id)
    assert model.url == f"{clean_hub.url}/{repo_id}"
    assert dataset.url == f"{clean_hub.url}/datasets/{repo_id}"
    assert space.url == f"{clean_hub.url}/spaces/{repo_id}"

    assert api.model_info(repo_id).private is False
    assert api.dataset_info(repo_id).private is True
    space_info = api.space_info(repo_id)
    assert space_info.sdk == "gradio"
    # The Hub starts every repository with an "initial commit" holding .gitattributes (and a card for Spaces).
    assert api.list_repo_files(repo_id) == [".gitattributes"]
    assert sorted(api.list_repo_files(repo_id, repo_type="space")) == [".gitattributes", "README.md"]
    assert [c.title for c in api.list_repo_commits(repo_id)] == ["initial commit"]


def test_create_existing_repo_is_409_unless_exist_ok(clean_hub: Hub, repo_id: str) -> None:
    api = clean_hub.api()
    first = api.create_repo(repo_id)
    with pytest.raises(HfHubHTTPError) as err:
        api.create_repo(repo_id)
    assert err.value.response.status_code == 409
    assert err.value.response.json()["url"] == first.url
    assert api.create_repo(repo_id, exist_ok=True) == first


def test_create_in_organisation(clean_hub: Hub, repo_id: str) -> None:
    url = clean_hub.api().create_repo("acme/" + repo_id.split("/")[1])
    assert url.namespace == "acme"


def test_read_only_token_cannot_write(clean_hub: Hub, repo_id: str) -> None:
    with pytest.raises(HfHubHTTPError) as err:
        clean_hub.api(clean_hub.read_token).create_repo(repo_id)
    assert err.value.response.status_code == 403


def test_missing_repo_is_repository_not_found(clean_hub: Hub) -> None:
    api = clean_hub.api()
    with pytest.raises(RepositoryNotFoundError):
        api.model_info("emulator/does-not-exist")
    with pytest.raises(RepositoryNotFoundError):
        api.list_repo_refs("emulator/does-not-exist", repo_type="dataset")
    with pytest.raises(RepositoryNotFoundError):
        api.create_commit("emulator/does-not-exist", [CommitOperationAdd("a.txt", b"a")], commit_message="x")
    assert api.repo_exists("emulator/does-not-exist") is False


def test_private_repo_is_hidden_without_token(clean_hub: Hub, repo_id: str) -> None:
    clean_hub.api().create_repo(repo_id, private=True)
    with pytest.raises(RepositoryNotFoundError):
        clean_hub.api(token=False).model_info(repo_id)
    clean_hub.api().update_repo_settings(repo_id, private=False)
    assert clean_hub.api(token=False).model_info(repo_id).id == repo_id


def test_delete_repo(clean_hub: Hub, repo_id: str) -> None:
    api = clean_hub.api()
    api.create_repo(repo_id)
    api.delete_repo(repo_id)
    assert api.repo_exists(repo_id) is False
    with pytest.raises(RepositoryNotFoundError):
        api.delete_repo(repo_id)
    api.delete_repo(repo_id, missing_ok=True)


def test_branches(clean_hub: Hub, repo_id: str) -> None:
    api = clean_hub.api()
    api.create_repo(repo_id)
    head = api.model_info(repo_id).sha
    api.create_branch(repo_id, branch="dev")
    with pytest.raises(HfHubHTTPError) as err:
        api.create_branch(repo_id, branch="dev")
    assert err.value.response.status_code == 409
    api.create_branch(repo_id, branch="dev", exist_ok=True)

    info = api.create_commit(repo_id, [CommitOperationAdd("dev.txt", b"on dev")], commit_message="dev work",
                             revision="dev")
    refs = api.list_repo_refs(repo_id)
    assert {b.name: b.target_commit for b in refs.branches} == {"main": head, "dev": info.oid}
    assert api.list_repo_files(repo_id) == [".gitattributes"]
    assert api.list_repo_files(repo_id, revision="dev") == [".gitattributes", "dev.txt"]

    api.create_branch(repo_id, branch="from-dev", revision="dev")
    assert api.model_info(repo_id, revision="from-dev").sha == info.oid

    api.delete_branch(repo_id, branch="dev")
    assert {b.name for b in api.list_repo_refs(repo_id).branches} == {"main", "from-dev"}
    with pytest.raises(RevisionNotFoundError):
        api.model_info(repo_id, revision="dev")
    with pytest.raises(HfHubHTTPError):
        api.delete_branch(repo_id, branch="main")


def test_tags(clean_hub: Hub, repo_id: str) -> None:
    api = clean_hub.api()
    api.create_repo(repo_id)
    first = api.create_commit(repo_id, [CommitOperationAdd("v.txt", b"1")], commit_message="v1")
    api.create_commit(repo_id, [CommitOperationAdd("v.txt", b"2")], commit_message="v2")

    api.create_tag(repo_id, tag="v1.0", revision=first.oid, tag_message="first release")
    with pytest.raises(HfHubHTTPError) as err:
        api.create_tag(repo_id, tag="v1.0")
    assert err.value.response.status_code == 409
    api.create_tag(repo_id, tag="v1.0", exist_ok=True)

    refs = api.list_repo_refs(repo_id)
    assert [(t.name, t.ref, t.target_commit) for t in refs.tags] == [("v1.0", "refs/tags/v1.0", first.oid)]
    assert api.model_info(repo_id, revision="v1.0").sha == first.oid
    with pytest.raises(RevisionNotFoundError):
        api.create_tag(repo_id, tag="v9", revision="no-such-branch")

    api.delete_tag(repo_id, tag="v1.0")
    assert api.list_repo_refs(repo_id).tags == []
    with pytest.raises(RevisionNotFoundError):
        api.delete_tag(repo_id, tag="v1.0")


def test_commit_history(clean_hub: Hub, repo_id: str) -> None:
    api = clean_hub.api()
    api.create_repo(repo_id)
    made = [api.create_commit(repo_id, [CommitOperationAdd(f"f{i}.txt", b"x" * i)], commit_message=f"commit {i}",
                              commit_description=f"body {i}")
            for i in range(6)]
    # Page size is 4: seven commits span two pages, which the client follows by itself.
    commits = api.list_repo_commits(repo_id)
    assert [c.commit_id for c in commits] == [m.oid for m in reversed(made)] + [commits[-1].commit_id]
    assert [c.title for c in commits[:2]] == ["commit 5", "commit 4"]
    assert commits[0].message == "body 5"
    assert commits[0].authors == ["emulator"]
    assert all(len(c.commit_id) == 40 for c in commits)
    assert commits[0].created_at >= commits[-1].created_at
    pages = [r for r in clean_hub.requests() if "/commits/" in r["path"]]
    assert len(pages) == 2
    bob = clean_hub.api(clean_hub.other_token).create_commit(repo_id, [CommitOperationAdd("b.txt", b"b")],
                                                    commit_message="by bob")
    assert api.list_repo_commits(repo_id)[0].authors == ["bob"]
    assert api.list_repo_commits(repo_id, revision=made[0].oid)[0].commit_id == made[0].oid
    assert bob.commit_url == f"{clean_hub.url}/{repo_id}/commit/{bob.oid}"
