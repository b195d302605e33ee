"""No push may cost the server more than ``limits`` allows, and who may publish is decided before any content is
read: real pushes into a bare repository laid out as Gitea does."""

from __future__ import annotations

import pickle

from tests.support.gitea_server import Clone, GiteaServer, assert_rejected

HEADER = ("hf-publish: rejected refs/heads/main of acme/bert-tiny, which publishes to "
          "https://huggingface.co/acme/bert-tiny (branch main):")


def header(ref: str, kind: str, name: str) -> str:
    return (f"hf-publish: rejected {ref} of acme/bert-tiny, which publishes to https://huggingface.co/acme/bert-tiny "
            f"({kind} {name}):")


def set_limits(gitea: GiteaServer, **limits: float) -> None:
    lines = "".join(f"  {key}: {value}\n" for key, value in limits.items())
    gitea.config_path.write_text(gitea.config_path.read_text() + "limits:\n" + lines)


def test_a_push_of_more_publishing_refs_than_allowed_is_refused_without_reading_them(clone: Clone,
                                                                                     gitea: GiteaServer):
    set_limits(gitea, max_refs=2)
    clone.commit({"broken.json": "{"})
    for tag in ("v1", "v2"):
        clone.git("tag", tag)
    hint = "(push them in smaller groups, or ask a Gitea admin to raise limits.max_refs)"
    lines = []
    for ref, kind, name in (("refs/heads/main", "branch", "main"), ("refs/tags/v1", "tag", "v1"),
                            ("refs/tags/v2", "tag", "v2")):
        # No content line: broken.json was never read.
        lines += [header(ref, kind, name), f"  {ref}: this push updates 3 publishing refs, over the 2 one push may {hint}"]
    assert_rejected(clone, "main", "v1", "v2", lines=lines)


def test_a_push_listing_more_files_than_allowed_is_refused(clone: Clone, gitea: GiteaServer):
    set_limits(gitea, max_files=5)
    clone.commit({f"data/{i}.txt": str(i) for i in range(10)})
    assert_rejected(clone, "main", lines=[
        HEADER, "  refs/heads/main: this push lists more than 5 files to check (push less at once, or ask a Gitea "
                "admin to raise limits.max_files)"])


def test_a_push_holding_more_bytes_than_allowed_is_refused(clone: Clone, gitea: GiteaServer):
    set_limits(gitea, max_scan_mb=1)
    clone.commit({"a.txt": "a" * 700_000, "b.txt": "b" * 700_000})
    assert_rejected(clone, "main", lines=[
        HEADER, "  refs/heads/main: this push holds more than 1 MiB to check (push less at once, or ask a Gitea "
                "admin to raise limits.max_scan_mb)"])


def test_the_same_content_under_many_paths_and_refs_is_counted_once(clone: Clone, gitea: GiteaServer):
    # 40 paths and 6 refs of one 0.6 MiB blob: 144 MiB if each were read for each, 0.6 MiB once.
    set_limits(gitea, max_scan_mb=1)
    blob = "x = 1\n" * 100_000
    clone.commit({f"copies/{i}.py": blob for i in range(40)})
    tags = [f"v{i}" for i in range(5)]
    for tag in tags:
        clone.git("tag", tag)
    result = clone.push("main", *tags)
    assert result.ok, result.output


def test_a_push_that_takes_longer_than_the_deadline_is_refused(clone: Clone, gitea: GiteaServer):
    # A real pickle of a million ints: the allowlist walks each of its opcodes, which takes far longer than 0.1 s.
    gitea.config_path.write_text(gitea.config_path.read_text().replace("      forbid:", "      pickle: allowlist\n"
                                                                                        "      forbid:"))
    set_limits(gitea, deadline_seconds=0.1)
    clone.write_lfs("weights.pkl", pickle.dumps(list(range(1_000_000)), protocol=2))
    clone.commit()
    assert_rejected(clone, "main", lines=[
        HEADER, "  refs/heads/main: checking this push took over 0.1 s (push less at once, or ask a Gitea admin "
                "to raise limits.deadline_seconds)"])


def test_a_pusher_who_may_not_publish_learns_nothing_of_the_content(clone: Clone, gitea: GiteaServer):
    # Another repository's object and a pickle: a publisher would read findings about both.
    secret_weights = b"weights of another team " * 100
    oid = gitea.store_lfs(secret_weights, "acme/other")
    clone.write({"other.safetensors": f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\n"
                                      f"size {len(secret_weights) + 1}\n"})
    clone.commit({"model.pkl": pickle.dumps({"w": 1})})
    assert_rejected(clone, "main", user="carol", lines=[
        HEADER, "  refs/heads/main: carol may not publish to acme/bert-tiny (publishers: alice, @ml-release; ask a "
                "Gitea admin to add you)"])


def test_a_wrong_size_and_a_missing_object_read_the_same(clone: Clone, gitea: GiteaServer):
    stored = b"weights that are on the server"
    oid = gitea.store_lfs(stored, "acme/bert-tiny")
    missing = "ab" * 32
    clone.write({"a.safetensors": f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\n"
                                  f"size {len(stored) + 1}\n",
                 "b.safetensors": f"version https://git-lfs.github.com/spec/v1\noid sha256:{missing}\nsize 5\n"})
    clone.commit()
    hint = "(run: git lfs push --all origin, then push again)"
    assert_rejected(clone, "main", lines=[
        HEADER,
        f"  a.safetensors: Git LFS object {oid[:12]} is not on the server, or does not match its pointer {hint}",
        f"  b.safetensors: Git LFS object {missing[:12]} is not on the server, or does not match its pointer {hint}",
    ])


def test_forbidden_patterns_match_whatever_the_case(clone: Clone):
    clone.commit({"deploy/PROD.ENV": "KEY=1\n", "keys/ID_RSA": "key\n"})
    hint = "(remove it from the commit, or ask an admin to change checks.forbid)"
    assert_rejected(clone, "main", lines=[
        HEADER,
        f"  deploy/PROD.ENV: matches forbidden pattern '*.env' {hint}",
        f"  keys/ID_RSA: matches forbidden pattern 'id_rsa*' {hint}",
    ])


def test_json_that_nests_too_deeply_is_reported_as_such(clone: Clone):
    clone.commit({"config.json": "[" * 100_000})
    assert_rejected(clone, "main", lines=[
        HEADER, "  config.json: not valid JSON: it nests too deeply (flatten the file, or exclude it)"])


def test_secrets_are_found_in_binary_files_and_in_git_lfs_objects(clone: Clone):
    token = "hf_" + "aB3dE5" * 5 + "xYz9"
    clone.write_lfs("notes.txt", f"the token is {token}\n".encode())
    clone.commit({"blob.bin.dat": b"\x00\x01binary\n" + token.encode() + b"\n"})
    hint = "(remove it, rewrite the commit, and revoke the token)"
    assert_rejected(clone, "main", lines=[
        HEADER,
        f"  blob.bin.dat:2: looks like a Hugging Face token {hint}",
        f"  notes.txt:1: looks like a Hugging Face token {hint}",
    ])


def test_a_secret_deep_in_a_large_git_lfs_text_is_found_on_its_line(clone: Clone):
    # The scanner reads LFS objects a window at a time; this token straddles the first window's end.
    token = "hf_" + "aB3dE5" * 5 + "xYz9"
    head = b"x" * 99 + b"\n"
    lines = (1024 * 1024 - 10) // len(head)
    text = head * lines + b" " * ((1024 * 1024 - 10) % len(head)) + token.encode() + b"\n" + head * 20_000
    clone.write_lfs("train.log", text)
    clone.commit()
    assert_rejected(clone, "main", lines=[
        HEADER, f"  train.log:{lines + 1}: looks like a Hugging Face token (remove it, rewrite the commit, "
                "and revoke the token)"])


def test_a_pickle_is_known_by_its_content_whatever_its_name(clone: Clone):
    clone.commit({"model.dat": pickle.dumps({"w": [1.0, 2.0]}, protocol=4)})
    assert_rejected(clone, "main", lines=[
        HEADER, "  model.dat: pickle files can run code when loaded (convert the weights to safetensors)"])


def test_a_bidi_control_in_a_tag_name_cannot_reorder_the_push_output(clone: Clone):
    clone.commit()
    tag = "v1\u202egpj.exe"
    clone.git("tag", tag)
    # The tagged commit is on no publishing branch yet, so the tag is refused, and its name printed escaped.
    result = clone.push(f"refs/tags/{tag}")
    assert result.remote[:2] == [
        header("refs/tags/v1\\u202egpj.exe", "tag", "v1\\u202egpj.exe"),
        "  refs/tags/v1\\u202egpj.exe: tagged commit "
        f"{clone.git('rev-parse', 'HEAD')[:12]} is not on a publishing branch (push it to main first, or in the same push)"]


def test_a_line_separator_in_a_ref_name_is_not_read_as_another_ref(clone: Clone):
    first = clone.commit()
    assert clone.push("main").ok
    second = clone.commit({"more.txt": "x"})
    assert clone.push("main").ok
    # "main" U+2028 "x" is a ref name git allows: it must not read as a creation of main at the old commit.
    result = clone.push(f"{first}:refs/heads/main\u2028x")
    assert result.ok
    assert result.remote == []  # refs/heads/main<LS>x does not publish, and main is untouched
    assert clone.server_refs()["refs/heads/main"] == second
    assert clone.server_refs()["refs/heads/main\u2028x"] == first
