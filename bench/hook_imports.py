"""What the installed hooks spend on imports, read from Python's own ``-X importtime`` report.

Each hook is run with its own command line, as written into ``hooks/<name>.d/hf-publish``, with ``-X importtime``
added after the interpreter, on a 10-file push to a publishing branch (pre-receive, then post-receive) as
Gitea's dispatcher runs them. The figure per run is the sum of the cumulative times of the top-level imports,
which is everything the interpreter imported after its own start-up; the wall time of the whole hook process is
shown beside it.

    .venv/bin/python bench/hook_imports.py [--rounds 30]
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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.gitea_server import Clone, GiteaServer, gitea_env  # noqa: E402
from tests.support.rules import CARD, GROUPS, RULE  # noqa: E402

# "import time:       312 |        845 |   gitea_hf_hook.config": self, cumulative, and the name indented by depth.
_LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)$", re.M)


def hook_argv(clone: Clone, hook: str) -> list[str]:
    """The hook's own command line, with Python asked to report every import."""
    script = (clone.bare / "hooks" / f"{hook}.d" / "hf-publish").read_text()
    argv = shlex.split(next(line for line in script.splitlines() if line.startswith("exec "))[5:])
    return argv[:1] + ["-X", "importtime"] + argv[1:]


def imports_us(stderr: str) -> int:
    """Microseconds spent importing: the cumulative time of every top-level import."""
    return sum(int(cumulative) for _self, cumulative, indent, _name in _LINE.findall(stderr) if len(indent) == 1)


def measure(server: GiteaServer, clone: Clone, rounds: int) -> dict[str, tuple[list[int], list[float]]]:
    env = {**os.environ, **gitea_env("acme", "bert-tiny", "alice"), "HOME": str(server.home)}
    results: dict[str, tuple[list[int], list[float]]] = {"pre-receive": ([], []), "post-receive": ([], [])}
    old = clone.git("rev-parse", "HEAD")
    for r in range(rounds):
        new = clone.commit({f"src/file{i}.py": f"value = {r * 10 + i}\n" for i in range(10)}, message=f"r{r}")
        # The objects arrive as in a push; the hooks then run as Gitea's dispatcher runs them.
        subprocess.run(["git", "push", "--quiet", str(clone.bare), f"{new}:refs/heads/staging"], cwd=clone.path,
                       check=True, env={**os.environ, "GITEA_INTERNAL_PUSH": "true"})
        update = f"{old} {new} refs/heads/main\n"
        for hook in ("pre-receive", "post-receive"):
            start = time.perf_counter()
            done = subprocess.run(hook_argv(clone, hook), input=update, text=True, capture_output=True,
                                  cwd=clone.bare, env=env)
            elapsed = time.perf_counter() - start
            if done.returncode != 0:
                raise SystemExit(f"{hook} failed:\n{done.stderr}")
            results[hook][0].append(imports_us(done.stderr))
            results[hook][1].append(elapsed)
        subprocess.run(["git", "update-ref", "refs/heads/main", new, old], cwd=clone.bare, check=True)
        old = new
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.update(HOME=tmp, GIT_CONFIG_NOSYSTEM="1", GIT_AUTHOR_NAME="Bench", GIT_AUTHOR_EMAIL="b@example.com",
                          GIT_COMMITTER_NAME="Bench", GIT_COMMITTER_EMAIL="b@example.com")
        server = GiteaServer(Path(tmp))
        server.write_config(RULE, extra=GROUPS)
        server.create_repo("acme", "bert-tiny")
        server.install("acme/bert-tiny")
        clone = server.clone("acme", "bert-tiny", Path(tmp) / "work")
        clone.commit({"README.md": CARD, "config.json": "{}"})
        if not clone.push("main").ok:
            raise SystemExit("the first push failed")
        results = measure(server, clone, args.rounds)
    print(f"hook imports on a 10-file push, {os.cpu_count()} cores, Python {sys.version.split()[0]}, "
          f"{args.rounds} rounds (medians)")
    for hook, (imports, walls) in results.items():
        print(f"{hook:<13}: imports {statistics.median(imports) / 1000:5.1f} ms | "
              f"whole process {statistics.median(walls) * 1000:5.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
