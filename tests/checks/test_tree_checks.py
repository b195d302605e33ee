"""The content checks of a tree, called in-process on a real bare repository.

Commits are built with git's own plumbing (hash-object, mktree, commit-tree) so that a test can hold what a work
tree cannot: a ``.git`` folder, a file name that is not UTF-8, a symlink or a submodule on any file system.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from gitea_hf_hook.checks.content import check
from gitea_hf_hook.checks.problems import Problem
from gitea_hf_hook.config.model import Config, RepoRule, unfit
from gitea_hf_hook.config.schema import parse

MIB = 1024 * 1024
SYMLINK = "120000"
EXEC = "100755"
RENAME = "rename it, or exclude it in the rule"
JSON_HINT = "fix the file, or exclude it"
FORBID_HINT = "remove it from the commit, or ask an admin to change checks.forbid"

Content = bytes | str | tuple[str, bytes | str]  # a regular file, or (mode, content); "160000" takes a commit id


class Bare:
    """A bare repository, the current directory of the test, whose commits are built from dicts of files."""

    def __init__(self, path: Path) -> None:
        self.path = path
        subprocess.run(["git", "init", "--bare", "--quiet", "--initial-branch=main", str(path)], check=True)

    def git(self, *args: str, stdin: bytes | None = None) -> str:
        proc = subprocess.run(["git", *args], cwd=self.path, input=stdin, capture_output=True)
        assert proc.returncode == 0, f"git {' '.join(args)}: {proc.stderr.decode()}"
        return proc.stdout.decode().strip()

    def _tree(self, files: dict[bytes, tuple[str, bytes | str]]) -> str:
        entries: list[bytes] = []
        folders: dict[bytes, dict[bytes, tuple[str, bytes | str]]] = {}
        for path, (mode, content) in files.items():
            top, slash, rest = path.partition(b"/")
            if slash:
                folders.setdefault(top, {})[rest] = (mode, content)
            elif mode == "160000":
                entries.append(f"160000 commit {content}\t".encode() + top)
            else:
                data = content.encode() if isinstance(content, str) else content
                oid = self.git("hash-object", "-w", "--stdin", stdin=data)
                entries.append(f"{mode} blob {oid}\t".encode() + top)
        for name, inner in folders.items():
            entries.append(f"040000 tree {self._tree(inner)}\t".encode() + name)
        return self.git("mktree", "-z", stdin=b"".join(e + b"\0" for e in entries))

    def commit(self, files: dict[str | bytes, Content], parent: str | None = None) -> str:
        normal = {(p.encode() if isinstance(p, str) else p): (c if isinstance(c, tuple) else ("100644", c))
                  for p, c in files.items()}
        return self.git("commit-tree", self._tree(normal), "-m", "update", *(("-p", parent) if parent else ()))


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Bare:
    bare = Bare(tmp_path / "acme" / "bert-tiny.git")
    monkeypatch.chdir(bare.path)  # check() runs git in the current directory, as the hook does
    return bare


@pytest.fixture
def make_rule(tmp_path: Path):
    """A Config and its one rule from the YAML of a ``repos`` entry; the model card check is off unless asked."""

    def make(extra: str = "", checks: str = "") -> tuple[Config, RepoRule]:
        text = (f"gitea:\n  repo_root: {tmp_path}\n  lfs_root: {tmp_path / 'lfs'}\n"
                f"spool: {tmp_path / 'spool'}\n"
                f"repos:\n  - match: acme/*\n{extra}"
                f"    checks:\n      model_card: false\n{checks}")
        config = parse("config.yaml", text)
        return config, config.repos[0]

    return make


def problems_of(make_rule, repo: Bare, files: dict[str | bytes, Content], *, extra: str = "",
                checks: str = "") -> list[Problem]:
    config, rule = make_rule(extra, checks)
    return check(config, rule, repo.commit(files), None)


# --- paths the Hub cannot hold, and symlinks and submodules -------------------------------------------------------

def test_a_clean_tree_has_no_problems(make_rule, repo: Bare):
    assert problems_of(make_rule, repo, {"config.json": '{"hidden_size": 128}', "tokenizer.txt": "a b c\n",
                                         "run.sh": (EXEC, "#!/bin/sh\n"), ".gitattributes": "*.bin filter=lfs\n",
                                         ".github/workflows/ci.yml": "on: push\n"}) == []


def test_a_symlink_is_refused_and_never_read(make_rule, repo: Bare):
    # Its "content" is the link target; as a JSON file it would fail to parse, but it is no file at all.
    assert problems_of(make_rule, repo, {"config.json": "{}", "latest": (SYMLINK, "config.json"),
                                         "weights/link.json": (SYMLINK, "../../etc/passwd")}) == [
        Problem("latest", "symlinks cannot be published to the Hub", "commit the file it points to instead"),
        Problem("weights/link.json", "symlinks cannot be published to the Hub",
                "commit the file it points to instead"),
    ]


def test_a_symlink_matching_a_forbidden_pattern_is_reported_once_as_a_symlink(make_rule, repo: Bare):
    assert problems_of(make_rule, repo, {"prod.env": (SYMLINK, "/run/secrets/env")},
                       checks='      forbid: ["*.env"]\n') == [
        Problem("prod.env", "symlinks cannot be published to the Hub", "commit the file it points to instead")]


def test_a_submodule_is_refused(make_rule, repo: Bare):
    other = repo.commit({"lib.py": "x = 1\n"})
    assert problems_of(make_rule, repo, {"vendor/lib": ("160000", other), "a.txt": "a"}) == [
        Problem("vendor/lib", "submodules cannot be published to the Hub",
                "commit the files themselves, or publish that repository on its own")]


def test_a_symlink_outside_the_published_scope_is_not_checked(make_rule, repo: Bare):
    assert problems_of(make_rule, repo, {"scratch/latest": (SYMLINK, "x"), "a.txt": "a"},
                       extra='    exclude: ["scratch/"]\n') == []


def test_forbidden_patterns_are_reported_with_the_first_pattern_that_matches(make_rule, repo: Bare):
    files = {"deploy/.env": "KEY=1\n", "keys/id_rsa.pub": "ssh-ed25519 AAAA\n", "id_rsa.env": "both\n",
             "secrets/a.txt": "x\n", "x/secrets/b.txt": "y\n", "model.environment": "fine\n", "ok.txt": "fine\n"}
    assert problems_of(make_rule, repo, files, checks='      forbid: ["*.env", "id_rsa*", "/secrets/**"]\n') == [
        Problem("deploy/.env", "matches forbidden pattern '*.env'", FORBID_HINT),
        Problem("id_rsa.env", "matches forbidden pattern '*.env'", FORBID_HINT),
        Problem("keys/id_rsa.pub", "matches forbidden pattern 'id_rsa*'", FORBID_HINT),
        Problem("secrets/a.txt", "matches forbidden pattern '/secrets/**'", FORBID_HINT),
    ]


def test_forbidden_patterns_apply_to_the_hub_path_under_subdir(make_rule, repo: Bare):
    files = {"release/README.md": "# card\n", "release/top.env": "K=1\n", "release/deep/top.env": "K=2\n",
             "top.env": "outside the published scope\n"}
    assert problems_of(make_rule, repo, files, extra="    subdir: release\n",
                       checks='      forbid: ["/top.env"]\n') == [
        Problem("release/top.env", "matches forbidden pattern '/top.env'", FORBID_HINT)]


def test_a_file_name_that_is_not_utf8_is_refused_by_its_escaped_name(make_rule, repo: Bare):
    assert problems_of(make_rule, repo, {b"latin1-\xe9.txt": "text\n", b"caf\xc3\xa9.txt": "utf-8 is fine\n"}) == [
        Problem("latin1-\\xe9.txt", "file name is not valid UTF-8, which the Hub requires", RENAME)]


def test_a_file_name_that_is_not_utf8_may_be_excluded(make_rule, repo: Bare):
    assert problems_of(make_rule, repo, {b"legacy/latin1-\xe9.txt": "text\n", "a.txt": "a"},
                       extra='    exclude: ["legacy/**"]\n') == []


def test_control_characters_in_a_name_are_escaped_not_refused(make_rule, repo: Bare):
    assert problems_of(make_rule, repo, {"evil\nhf-publish: accepted.json": "{"}) == [
        Problem("evil\\nhf-publish: accepted.json", "not valid JSON at line 1", JSON_HINT)]


@pytest.mark.parametrize("segment", [".git", ".cache"])
def test_a_git_or_cache_folder_inside_the_published_scope_is_refused(make_rule, repo: Bare, segment: str):
    why = f"the Hub cannot hold a file or folder named {segment}"
    assert unfit(f"models/{segment}/blob.txt") == why
    assert problems_of(make_rule, repo, {f"models/{segment}/blob.txt": "x\n", f"{segment}/config": "y\n",
                                         f"{segment}x/fine.txt": "z\n", f"models/x{segment}": "z\n"}) == [
        Problem(f"{segment}/config", why, RENAME),
        Problem(f"models/{segment}/blob.txt", why, RENAME),
    ]


@pytest.mark.parametrize("segment", [".git", ".cache"])
def test_a_forbidden_folder_counts_from_subdir_and_only_inside_it(make_rule, repo: Bare, segment: str):
    why = f"the Hub cannot hold a file or folder named {segment}"
    files = {"release/README.md": "# card\n", f"release/{segment}/x.txt": "x\n", f"{segment}/top.txt": "outside\n",
             f"release/cached/{segment}/y.txt": "y\n", f"release/ok/{segment}/z.txt": "excluded\n"}
    assert problems_of(make_rule, repo, files, extra='    subdir: release\n    exclude: ["ok/"]\n') == [
        Problem(f"release/{segment}/x.txt", why, RENAME),
        Problem(f"release/cached/{segment}/y.txt", why, RENAME),
    ]


def test_a_path_refused_for_its_folder_is_also_checked_for_forbidden_patterns(make_rule, repo: Bare):
    assert problems_of(make_rule, repo, {"deploy/.cache/prod.env": "K=1\n"},
                       checks='      forbid: ["*.env"]\n') == [
        Problem("deploy/.cache/prod.env", "the Hub cannot hold a file or folder named .cache", RENAME),
        Problem("deploy/.cache/prod.env", "matches forbidden pattern '*.env'", FORBID_HINT),
    ]


# --- which files are published: subdir, include, exclude ---------------------------------------------------------

def test_only_files_under_subdir_and_include_minus_exclude_are_checked(make_rule, repo: Bare):
    files = {
        "broken.json": "{",  # outside subdir
        "releases/broken.json": "{",  # a sibling whose name starts like subdir
        "release/config.json": "{",  # published: reported by its git path
        "release/drafts/broken.json": "{",  # excluded
        "release/nested/drafts/broken.json": "{",  # "drafts/**" is anchored at subdir
        "release/notes.env": "K=1\n",  # not included, so not forbidden either
        "release/model/weights.json": "[1,",
    }
    extra = '    subdir: release\n    include: ["*.json"]\n    exclude: ["drafts/**"]\n'
    assert problems_of(make_rule, repo, files, extra=extra, checks='      forbid: ["*.env"]\n') == [
        Problem("release/config.json", "not valid JSON at line 1", JSON_HINT),
        Problem("release/model/weights.json", "not valid JSON at line 1", JSON_HINT),
        Problem("release/nested/drafts/broken.json", "not valid JSON at line 1", JSON_HINT),
    ]


def test_hub_paths_drop_subdir_and_keep_undecodable_bytes_nameable(make_rule):
    _, rule = make_rule('    subdir: release\n    exclude: ["*.tmp"]\n')
    assert rule.hub_path(b"release/a/b.json") == "a/b.json"
    assert rule.hub_path(b"releases/a.json") is None
    assert rule.hub_path(b"release") is None
    assert rule.hub_path(b"release/x.tmp") is None
    path = rule.hub_path(b"release/\xe9.txt")
    assert path == "\udce9.txt" and unfit(path) == "file name is not valid UTF-8, which the Hub requires"


def test_only_files_changed_since_the_base_are_checked(make_rule, repo: Bare):
    config, rule = make_rule()
    old = repo.commit({"old.json": "{", "gone.json": "{", "kept.json": "{}"})
    new = repo.commit({"old.json": "{", "kept.json": "[", "added.json": "{"}, parent=old)
    assert check(config, rule, new, old) == [
        Problem("added.json", "not valid JSON at line 1", JSON_HINT),
        Problem("kept.json", "not valid JSON at line 1", JSON_HINT),
    ]
    assert check(config, rule, new, None) == [
        Problem("added.json", "not valid JSON at line 1", JSON_HINT),
        Problem("kept.json", "not valid JSON at line 1", JSON_HINT),
        Problem("old.json", "not valid JSON at line 1", JSON_HINT),
    ]


# --- sizes and JSON ------------------------------------------------------------------------------------------------

def test_a_blob_over_the_limit_is_refused_with_the_git_lfs_fix(make_rule, repo: Bare):
    big = b"\x93NUMPY" + bytes(MIB + MIB // 2 - 6)  # 1.5 MiB
    files = {"weights.npy": big, "exact.npy": bytes(MIB), "data/blob": big, "release-notes.txt": "fine\n"}
    assert problems_of(make_rule, repo, files, checks="      max_blob_mb: 1\n") == [
        Problem("data/blob", "1.5 MiB is over the 1 MiB limit for files outside Git LFS",
                'git lfs track "data/blob", then git lfs migrate import --include="data/blob"'),
        Problem("weights.npy", "1.5 MiB is over the 1 MiB limit for files outside Git LFS",
                'git lfs track "*.npy", then git lfs migrate import --include="weights.npy"'),
    ]


def test_an_oversized_file_is_reported_by_size_alone_and_not_parsed(make_rule, repo: Bare):
    assert problems_of(make_rule, repo, {"sub/huge.JSON": b"{" * (2 * MIB)},
                       checks="      max_blob_mb: 1.5\n") == [
        Problem("sub/huge.JSON", "2.0 MiB is over the 1.5 MiB limit for files outside Git LFS",
                'git lfs track "*.json", then git lfs migrate import --include="sub/huge.JSON"')]


def test_the_default_limit_is_ten_mib(make_rule, repo: Bare):
    assert problems_of(make_rule, repo, {"w.npy": bytes(10 * MIB)}) == []
    assert problems_of(make_rule, repo, {"w.npy": bytes(10 * MIB + 1)}) == [
        Problem("w.npy", "10.0 MiB is over the 10 MiB limit for files outside Git LFS",
                'git lfs track "*.npy", then git lfs migrate import --include="w.npy"')]


def test_invalid_json_is_reported_with_its_line(make_rule, repo: Bare):
    files = {"config.json": '{"hidden_size": 128,\n}', "ok.json": '{"a": [1, 2]}', "CAPS.JSON": "nope",
             "latin1.json": b'{"name": "caf\xe9"}', "empty.json": "", "notes.txt": "{"}
    assert problems_of(make_rule, repo, files) == [
        Problem("CAPS.JSON", "not valid JSON at line 1", JSON_HINT),
        Problem("config.json", "not valid JSON at line 2", JSON_HINT),
        Problem("empty.json", "not valid JSON at line 1", JSON_HINT),
        Problem("latin1.json", "not valid JSON", JSON_HINT),
    ]


def test_the_json_check_can_be_switched_off(make_rule, repo: Bare):
    assert problems_of(make_rule, repo, {"config.json": "{"}, checks="      json: false\n") == []
