"""What the installed hooks spend on start-up, against another revision of the project, side by side in one run.

Each side is a checkout (this one, and ``--against REV`` in a temporary git worktree) with a Gitea repository
whose hooks that checkout's ``install`` wrote. On a 10-file update of a publishing branch, the hooks run as
Gitea's dispatcher runs them, alternating between the two sides so that machine noise hits both alike:

- ``imports``: each hook's own command line with ``-X importtime`` after the interpreter; the figure is the sum
  of the cumulative times of the top-level imports, that is everything imported after the interpreter's start;
- ``process``: the whole hook process, wall time, without ``-X importtime``.

    .venv/bin/python bench/hook_imports.py [--against dbe344d] [--rounds 100]
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
# "import time:       312 |        845 |   gitea_hf_hook.config": self, cumulative, and the name indented by depth.
_LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)$", re.M)

# Run inside each checkout, with its own test helpers (their module names moved between releases).
SETUP = """
import os, subprocess, sys
from pathlib import Path
sys.path.insert(0, os.getcwd())
try:
    from tests.support.gitea_server import GiteaServer
    from tests.support.rules import CARD, GROUPS, RULE
except ImportError:
    from tests.gitea_server import GiteaServer
    from tests.conftest import CARD, GROUPS, RULE
base = Path(sys.argv[1])
server = GiteaServer(base)
server.write_config(RULE, extra=GROUPS)
server.create_repo("acme", "bert-tiny")
server.install("acme/bert-tiny")
clone = server.clone("acme", "bert-tiny", base / "work")
clone.commit({"README.md": CARD, "config.json": "{}"})
assert clone.push("main").ok
old = clone.git("rev-parse", "HEAD")
new = clone.commit({f"src/file{i}.py": f"value = {i}\\n" for i in range(10)})
subprocess.run(["git", "push", "--quiet", str(clone.bare), f"{new}:refs/heads/staging"], cwd=clone.path, check=True,
               env={**os.environ, "GITEA_INTERNAL_PUSH": "true"})
print(clone.bare, old, new, server.home)
"""


class Side:
    """One checkout's installed hooks and the update they are run on."""

    def __init__(self, name: str, checkout: Path, base: Path) -> None:
        self.name = name
        base.mkdir()
        out = subprocess.run([sys.executable, "-c", SETUP, str(base)], cwd=checkout, capture_output=True, text=True)
        if out.returncode != 0:
            raise SystemExit(f"{name}: setting up failed:\n{out.stderr}")
        bare, old, new, home = out.stdout.split()
        self.bare, self.update, self.home = Path(bare), f"{old} {new} refs/heads/main\n", home
        self.imports: dict[str, list[int]] = {"pre-receive": [], "post-receive": []}
        self.process: dict[str, list[float]] = {"pre-receive": [], "post-receive": []}

    def argv(self, hook: str, *python_options: str) -> list[str]:
        script = (self.bare / "hooks" / f"{hook}.d" / "hf-publish").read_text()
        argv = shlex.split(next(line for line in script.splitlines() if line.startswith("exec "))[5:])
        return [argv[0], *python_options, *argv[1:]]

    def run(self, hook: str, env: dict[str, str]) -> None:
        env = {**env, "HOME": self.home}
        start = time.perf_counter()
        done = subprocess.run(self.argv(hook), input=self.update, text=True, capture_output=True, cwd=self.bare,
                              env=env)
        self.process[hook].append(time.perf_counter() - start)
        timed = subprocess.run(self.argv(hook, "-X", "importtime"), input=self.update, text=True,
                               capture_output=True, cwd=self.bare, env=env)
        if done.returncode != 0 or timed.returncode != 0:
            raise SystemExit(f"{self.name} {hook} failed:\n{done.stderr}{timed.stderr}")
        self.imports[hook].append(sum(int(cumulative) for _, cumulative, indent, _ in _LINE.findall(timed.stderr)
                                      if len(indent) == 1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", default="dbe344d", help="the revision to compare with [dbe344d, release 0.1]")
    parser.add_argument("--rounds", type=int, default=100)
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))
    from tests.support.gitea_server import gitea_env

    with tempfile.TemporaryDirectory() as tmp:
        os.environ.update(HOME=tmp, GIT_CONFIG_NOSYSTEM="1", GIT_AUTHOR_NAME="Bench", GIT_AUTHOR_EMAIL="b@example.com",
                          GIT_COMMITTER_NAME="Bench", GIT_COMMITTER_EMAIL="b@example.com")
        other = Path(tmp, "other")
        subprocess.run(["git", "worktree", "add", "--quiet", "--detach", str(other), args.against], cwd=HERE,
                       check=True)
        try:
            sides = [Side(args.against, other, Path(tmp, "a")), Side("this checkout", HERE, Path(tmp, "b"))]
            env = {**os.environ, **gitea_env("acme", "bert-tiny", "alice")}
            for _ in range(args.rounds):
                for side in sides:
                    for hook in ("pre-receive", "post-receive"):
                        side.run(hook, env)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(other)], cwd=HERE, check=True)
    print(f"hook start-up on a 10-file push, {os.cpu_count()} cores, Python {sys.version.split()[0]}, "
          f"{args.rounds} rounds alternating, medians")
    for hook in ("pre-receive", "post-receive"):
        for side in sides:
            print(f"{hook:<13} {side.name:<14}: imports {statistics.median(side.imports[hook]) / 1000:5.1f} ms | "
                  f"whole process {statistics.median(side.process[hook]) * 1000:5.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
