"""Glob patterns: path patterns behave the way .gitignore does, name patterns match whole names.

Every path case states what .gitignore decides, and ``test_git_itself_agrees`` asks a real ``git check-ignore``
the same question, so the table cannot drift from git.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from gitea_hf_hook.config.globs import check_glob, compile_name_glob, compile_path_glob

# (pattern, path, whether .gitignore's rules say the pattern matches the path)
CASES: list[tuple[str, str, bool, str | None]] = [
    # A pattern without a slash matches a name at any depth.
    ("*.env", "prod.env", True),
    ("*.env", "deploy/prod.env", True),
    ("*.env", "a/b/c/.env", True),  # '*' matches a leading dot too
    ("*.env", ".env", True),
    ("*.env", "prod.env.bak", False),
    ("id_rsa*", "keys/id_rsa.pub", True),
    ("foo", "foo", True),
    ("foo", "x/y/foo", True),
    ("foo", "xfoo", False),
    ("foo", "foox", False),
    # '*' and '?' stay within one folder.
    ("*", "a/b", True),  # unanchored: '*' matches the name b
    ("doc/*.txt", "doc/a.txt", True),
    ("doc/*.txt", "doc/x/a.txt", False),
    ("a*b", "a/b", False),
    ("a?b", "axb", True),
    ("a?b", "a/b", False),
    ("a?b", "ab", False),
    # A slash at the start or in the middle anchors the pattern at the top.
    ("/foo", "foo", True),
    ("/foo", "x/foo", False),
    ("doc/*.txt", "x/doc/a.txt", False),
    ("training/**", "training/data/shard-0.parquet", True),
    ("training/**", "x/training/data.parquet", False),
    # '**': leading, trailing and in the middle, spanning any number of folders including none.
    ("**", "a/b/c", True),
    ("**/foo", "foo", True),
    ("**/foo", "a/b/foo", True),
    ("**/foo", "a/b/xfoo", False),
    ("**/foo/bar", "foo/bar", True),
    ("**/foo/bar", "x/y/foo/bar", True),
    ("a/**/b", "a/b", True),
    ("a/**/b", "a/x/b", True),
    ("a/**/b", "a/x/y/b", True),
    ("a/**/b", "a/xb", False),
    ("a/**/b", "x/a/b", False),
    ("a/**", "a/x/y", True),
    ("a/**", "a", False),
    ("a/**", "ab/c", False),
    # A trailing slash means a folder: everything inside it, never a file of that name.
    ("build/", "build/x", True),
    ("build/", "a/build/x/y", True),  # no other slash: any depth
    ("build/", "build", False),
    ("build/", "buildx/y", False),
    ("a/build/", "a/build/x", True),
    ("a/build/", "z/a/build/x", False),  # a slash before the end anchors it
    # Bracket expressions.
    ("[abc].txt", "b.txt", True),
    ("[abc].txt", "d.txt", False),
    ("shard-[0-9].bin", "shard-7.bin", True),
    ("shard-[0-9].bin", "shard-x.bin", False),
    ("[!abc].txt", "d.txt", True),
    ("[!abc].txt", "a.txt", False),
    ("[^abc].txt", "d.txt", True),
    ("[^abc].txt", "a.txt", False),
    ("[]a]x", "]x", True),
    ("[]a]x", "ax", True),
    ("[]a]x", "bx", False),
    ("a[!x]b", "a/b", False),
    ("a[/]b", "a/b", False),
    ("[!]a]x", "bx", True),
    ("[!]a]x", "]x", False),
    ("[[:digit:]]x", "1x", True),
    ("[[:digit:]]x", ":]x", False),
    ("[\\]]x", "]x", True),
    # Backslash escapes: '\*' is a literal star, not a wildcard.
    ("\\*.txt", "*.txt", True),
    ("\\*.txt", "d/*.txt", True),
    ("\\*.txt", "a.txt", False),
    ("\\*.txt", "\\a.txt", False),
    ("a\\?", "a?", True),
    ("a\\?", "ab", False),
    ("\\[x]", "[x]", True),
    ("\\[x]", "x", False),
    ("a\\b", "ab", True),
    ("a\\\\b", "a\\b", True),
    # '**' that is not a whole path segment is one '*'.
    ("a**b", "axxb", True),
    ("a**b", "a/x/b", False),
    ("d/**b", "d/xb", True),
    ("d/**b", "d/x/yb", False),
    ("d**/b", "dx/b", True),
    # (git itself matches "d**/b" against d/x/b: it strips the literal prefix "d" before wildmatch, which then
    # sees a leading "**/". The documentation says otherwise, so that case is left out.)
    # A pattern that matches a folder covers the files inside it.
    ("secrets", "secrets/key.txt", True),
    ("secrets", "x/secrets/key.txt", True),
    ("training/data", "training/data/x.parquet", True),
    ("*.env", "prod.env/credentials", True),
    ("training/data", "training/database", False),
]


def _param(pattern: str, path: str, matches: bool) -> object:
    return pytest.param(pattern, path, matches, id=f"{pattern} ~ {path}")


@pytest.mark.parametrize(("pattern", "path", "matches"), [_param(*case) for case in CASES])
def test_path_globs_follow_gitignore(pattern: str, path: str, matches: bool):
    assert (compile_path_glob(pattern).match(path) is not None) is matches


@pytest.fixture
def ignore_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A work tree in which git check-ignore consults nothing but its own .gitignore.

    check-ignore takes its arguments as plain path names (it refuses pathspec magic), so "*.txt" is a name.
    """
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)  # no global excludes file
    repo = tmp_path / "ignore"
    subprocess.run(["git", "init", "--quiet", str(repo)], check=True)
    (repo / ".git" / "info" / "exclude").write_text("")
    return repo


@pytest.mark.parametrize(("pattern", "path", "matches"),
                         [pytest.param(p, f, m, id=f"{p} ~ {f}") for p, f, m in CASES])
def test_git_itself_agrees(ignore_repo: Path, pattern: str, path: str, matches: bool):
    (ignore_repo / ".gitignore").write_text(pattern + "\n")
    result = subprocess.run(["git", "check-ignore", "--no-index", "--quiet", "--", path],
                            cwd=ignore_repo, capture_output=True)
    assert result.returncode in (0, 1), result.stderr
    assert (result.returncode == 0) is matches


@pytest.mark.parametrize(("pattern", "name", "matches"), [
    ("main", "main", True),
    ("main", "main2", False),  # whole names: no prefix match
    ("main", "xmain", False),
    ("main", "feature/main", False),  # no .gitignore-style "any depth" for names
    ("release/*", "release/1.0", True),
    ("release/*", "release/a/b", False),  # '*' does not cross '/'
    ("release/**", "release/a/b", True),
    ("v*", "v1.2.0", True),
    ("v*", "xv1", False),
    ("v*", "v1/rc", False),
    ("v?.?", "v1.2", True),
    ("v?.?", "v1.23", False),
    ("v[0-9]*", "v2-beta", True),
    ("v[0-9]*", "vx", False),
    ("v[!0-9]*", "vx", True),
    ("acme/*", "acme/bert-tiny", True),
    ("acme/*", "acme/team/bert", False),
    ("acme/*", "other/acme", False),
    ("*/bert-*", "acme/bert-tiny", True),
])
def test_name_globs_match_whole_names(pattern: str, name: str, matches: bool):
    assert (compile_name_glob(pattern).match(name) is not None) is matches


def test_name_globs_ignore_case_only_when_asked():
    assert compile_name_glob("acme/*").match("ACME/Bert") is None
    assert compile_name_glob("acme/*", ignore_case=True).match("ACME/Bert") is not None
    assert compile_name_glob("Acme/Bert", ignore_case=True).match("acme/bert") is not None


def test_names_and_paths_may_hold_regex_characters_literally():
    assert compile_name_glob("v1.0+build").match("v1.0+build") is not None
    assert compile_name_glob("v1.0+build").match("v1x0+build") is None
    assert compile_path_glob("model (1).json").match("x/model (1).json") is not None
    assert compile_path_glob("a$^|{}.txt").match("a$^|{}.txt") is not None


def test_a_path_with_a_newline_is_matched_whole():
    # re's '$' would accept a trailing newline; a file name may hold one.
    assert compile_path_glob("*.env").match("prod.env\n") is None
    assert compile_path_glob("*.txt").match("evil\nx.txt") is not None
    assert compile_name_glob("main").match("main\n") is None


def test_an_unclosed_bracket_is_a_literal():
    assert compile_path_glob("a[b").match("a[b") is not None
    assert compile_path_glob("a[b").match("ab") is None


def test_check_glob_refuses_an_empty_pattern_and_accepts_ordinary_ones():
    assert check_glob("") == "must not be empty"
    for pattern in ("*.env", "training/**", "**/cache/", "[!a-z]*", "a[b"):
        assert check_glob(pattern) is None, pattern


def test_check_glob_accepts_a_negated_class_that_starts_with_a_bracket():
    assert check_glob("[!]a]x") is None
