"""The git plumbing the hooks use: one batch process, safe to abandon half read."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.gitea_server import Clone, GiteaServer


def test_a_content_batch_abandoned_early_does_not_hang(server: GiteaServer, tmp_path: Path):
    """A caller that stops after the first object while git still has megabytes to say must not block."""
    clone = Clone(server, tmp_path / "unused.git", "acme", "x", tmp_path / "w")
    clone.commit({f"big{i}.bin": bytes([i]) * 300_000 for i in range(40)})
    oids = clone.git("ls-tree", "-r", "--format=%(objectname)", "HEAD").split()
    # Enough requests that neither side's pipe can hold them: the writer and git both block unless our
    # end closes first.
    script = ("import sys; from gitea_hf_hook.gitea import git; objects = git.read_objects(sys.argv[1:] * 2000); "
              "first = next(objects); objects.close(); print(first[2])")
    done = subprocess.run([sys.executable, "-c", script, *oids], cwd=clone.path, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "300000\n"
