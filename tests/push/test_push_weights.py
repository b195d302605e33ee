"""Weights in a push: safetensors headers and pickles, plain or in Git LFS, judged without being loaded."""

from __future__ import annotations

import io
import struct
import zipfile
from pathlib import Path

from tests.support.gitea_server import Clone, GiteaServer, assert_rejected
from tests.support.rules import CARD, GROUPS, RULE

FIXTURES = Path(__file__).parents[1] / "checks" / "scanners" / "fixtures"
HEADER = ("hf-publish: rejected refs/heads/main of acme/bert-tiny, which publishes to "
          "https://huggingface.co/acme/bert-tiny (branch main):")
IMPORT_HINT = "(only weights-only imports are allowed: convert to safetensors)"


def safetensors(header: bytes, data: bytes) -> bytes:
    return struct.pack("<Q", len(header)) + header + data


def allowlist_server(server: GiteaServer, tmp_path: Path) -> Clone:
    server.write_config(RULE.replace("      forbid:", "      pickle: allowlist\n      forbid:"), extra=GROUPS)
    server.create_repo("acme", "bert-tiny")
    server.install("acme/bert-tiny")
    clone = server.clone("acme", "bert-tiny", tmp_path / "w")
    clone.write({"README.md": CARD})
    return clone


def test_well_formed_safetensors_in_git_lfs_are_accepted(clone: Clone):
    header = b'{"__metadata__":{"format":"pt"},"a":{"dtype":"BF16","shape":[2,3],"data_offsets":[0,12]},' \
             b'"b":{"dtype":"F32","shape":[1],"data_offsets":[12,16]}}'
    clone.write_lfs("model.safetensors", safetensors(header, bytes(16)))
    clone.commit()
    assert clone.push("main").ok


def test_a_safetensors_header_length_beyond_reason_is_refused_without_reading_it(clone: Clone):
    clone.write_lfs("model.safetensors", struct.pack("<Q", 2**62) + b"{}")
    clone.commit()
    assert_rejected(clone, "main", lines=[
        HEADER, "  model.safetensors: safetensors header length 4611686018427387904 exceeds the 100000000-byte "
        "limit (re-save it with safetensors.torch.save_file)"])


def test_a_truncated_safetensors_file_is_refused(clone: Clone):
    header = b'{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}'
    clone.commit({"small.safetensors": safetensors(header, bytes(10))})
    assert_rejected(clone, "main", lines=[
        HEADER, "  small.safetensors: file is 6 bytes shorter than its safetensors header says (the file looks "
        "truncated: push it again with Git LFS)"])


def test_pickles_are_refused_by_default_with_the_way_out(clone: Clone):
    clone.write_lfs("pytorch_model.bin", (FIXTURES / "torch_state_dict_zip.pt").read_bytes())
    clone.commit()
    # Named for what its content is: a torch checkpoint is a zip of pickles.
    assert_rejected(clone, "main", lines=[HEADER, "  pytorch_model.bin: PyTorch zip checkpoint files can run code "
                                          "when loaded (convert the weights to safetensors)"])


def test_allowlist_accepts_a_real_torch_state_dict_from_git_lfs(server: GiteaServer, tmp_path: Path):
    clone = allowlist_server(server, tmp_path)
    clone.write_lfs("pytorch_model.bin", (FIXTURES / "torch_state_dict_zip.pt").read_bytes())
    clone.write_lfs("legacy.bin", (FIXTURES / "torch_state_dict_legacy.bin").read_bytes())
    clone.commit()
    result = clone.push("main")
    assert result.ok, result.output


def test_allowlist_refuses_os_system_through_global_and_stack_global(server: GiteaServer, tmp_path: Path):
    clone = allowlist_server(server, tmp_path)
    global_op = b"cos\nsystem\n(S'echo pwned'\ntR."
    stack_global = (b"\x80\x04\x8c\x02os\x94\x8c\x06system\x94\x93\x94\x8c\x0aecho pwned\x94\x85\x94R\x94.")
    clone.commit({"a.pkl": global_op, "b.pt": stack_global})
    assert_rejected(clone, "main", lines=[
        HEADER,
        f"  a.pkl: pickle imports os.system, which can run code when loaded {IMPORT_HINT}",
        f"  b.pt: pickle imports os.system, which can run code when loaded {IMPORT_HINT}",
    ])


def test_allowlist_refuses_eval_hidden_in_a_torch_zip(server: GiteaServer, tmp_path: Path):
    clone = allowlist_server(server, tmp_path)
    evil = b"\x80\x02cbuiltins\neval\nq\x00X\x0b\x00\x00\x00print('hi')q\x01\x85q\x02Rq\x03."
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("archive/data.pkl", evil)
        z.writestr("archive/version", "3\n")
    clone.write_lfs("model.ckpt", archive.getvalue())
    clone.commit()
    assert_rejected(clone, "main", lines=[
        HEADER, f"  model.ckpt: archive/data.pkl: pickle imports builtins.eval, which can run code when loaded "
        f"{IMPORT_HINT}"])
