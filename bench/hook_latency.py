"""Push latency with and without gitea-hf-hook, side by side in one run.

Pushes go through Gitea's dispatcher hooks with Gitea's environment, as in the tests. Two repositories are
identical but for our hooks; pushes alternate between them so machine noise hits both alike.

    .venv/bin/python bench/hook_latency.py [--rounds 25] [--files 10] [--big 10000]

Targets: at most 50 ms added to a 10-file push; at most 2 s to evaluate an initial push of 10,000 files;
post-receive (which queues the job) at most 30 ms, flat in the depth of the queue: it is timed alone, run as
Gitea runs it, with an empty queue and with ``--depth`` jobs waiting.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gitea_hf_hook.spool.job import dump  # noqa: E402
from tests.support.gitea_server import Clone, GiteaServer, gitea_env  # noqa: E402
from tests.support.jobs import make_job  # noqa: E402
from tests.support.rules import CARD, GROUPS, RULE  # noqa: E402


def timed_push(clone: Clone, *refspecs: str) -> float:
    start = time.perf_counter()
    result = clone.push(*refspecs, user="alice")
    elapsed = time.perf_counter() - start
    if not result.ok:
        raise SystemExit(f"push failed:\n{result.output}")
    return elapsed


def setup(base: Path) -> tuple[GiteaServer, Clone, Clone]:
    server = GiteaServer(base)
    # release/* publishes too, so each big push creates a publishing branch.
    server.write_config(RULE.replace("branches: {main: main}", 'branches: {main: main, "release/*": "{branch}"}'),
                        extra=GROUPS)
    server.create_repo("acme", "hooked")
    server.create_repo("acme", "plain")
    server.install("acme/hooked")
    hooked = server.clone("acme", "hooked", base / "w-hooked")
    plain = server.clone("acme", "plain", base / "w-plain")
    for clone in (hooked, plain):
        clone.commit({"README.md": CARD, "config.json": "{}"})
        timed_push(clone, "main")
    return server, hooked, plain


def small_pushes(hooked: Clone, plain: Clone, rounds: int, files: int) -> tuple[list[float], list[float]]:
    with_hook, without = [], []
    for r in range(rounds):
        for clone, times in ((hooked, with_hook), (plain, without)):
            clone.commit({f"src/file{i}.py": f"value = {r * files + i}\n" for i in range(files)})
            times.append(timed_push(clone, "main"))
    return with_hook, without


def big_push(hooked: Clone, plain: Clone, files: int, rounds: int) -> tuple[list[float], list[float]]:
    """An initial push of a new publishing branch holding ``files`` files (text, JSON and a model card).

    The branch is new, so every file is checked, as on a repository's first push.
    """
    with_hook, without = [], []
    for r in range(rounds):
        for clone, times in ((hooked, with_hook), (plain, without)):
            clone.git("checkout", "--quiet", "--orphan", f"big{r}")
            clone.git("rm", "-r", "--quiet", "--cached", ".")
            content = {"README.md": CARD}
            for i in range(files - 1):
                content[f"shard{i // 1000}/f{i}.{'json' if i % 2 else 'txt'}"] = (
                    f'{{"i": {i}, "r": {r}}}' if i % 2 else f"row {i} {r}\n")
            clone.commit(content, message=f"big {r}")
            times.append(timed_push(clone, f"big{r}:release/big{r}"))
            clone.git("checkout", "--quiet", "main")
    return with_hook, without


def post_receive_alone(server: GiteaServer, hooked: Clone, rounds: int) -> list[float]:
    """post-receive's own time for one update, each preceded by the pre-receive that prepares its job."""
    old = hooked.git("rev-parse", "HEAD")
    env = {**os.environ, **gitea_env("acme", "hooked", "alice"), "HOME": str(server.home)}
    hooks = hooked.bare / "hooks"
    times = []
    for r in range(rounds):
        new = hooked.commit({"post.txt": f"{r}\n"}, message=f"post {r}")
        # The objects arrive as in a push; the hooks then run as Gitea's dispatcher runs them.
        subprocess.run(["git", "push", "--quiet", str(hooked.bare), f"{new}:refs/heads/staging"], cwd=hooked.path,
                       check=True, env={**os.environ, "GITEA_INTERNAL_PUSH": "true"})
        update = f"{old} {new} refs/heads/main\n"
        subprocess.run([str(hooks / "pre-receive.d" / "hf-publish")], input=update, text=True, cwd=hooked.bare,
                       env=env, check=True)
        start = time.perf_counter()
        done = subprocess.run([str(hooks / "post-receive.d" / "hf-publish")], input=update, text=True,
                              capture_output=True, cwd=hooked.bare, env=env)
        times.append(time.perf_counter() - start)
        if "queued" not in done.stderr:
            raise SystemExit(f"post-receive did not queue: {done.stderr}")
    return times


def fill_queue(server: GiteaServer, depth: int) -> None:
    """``depth`` waiting jobs in queue/, written as the spool writes them but without an fsync each."""
    queue = server.spool / "queue"
    for i in range(depth):
        job = make_job(i)._replace(id=f"20261125-000000-{i:08x}")
        (queue / f"{job.id}.json").write_bytes(dump(job))


def report_alone(label: str, times: list[float], target_ms: float) -> bool:
    median = statistics.median(times) * 1000
    ok = median <= target_ms
    print(f"{label:<27}: median {median:5.1f} ms | target <= {target_ms:.0f} ms: {'met' if ok else 'MISSED'}")
    return ok


def report(label: str, with_hook: list[float], without: list[float], target_ms: float, *, added: bool) -> bool:
    a, b = statistics.median(with_hook) * 1000, statistics.median(without) * 1000
    diff = a - b
    ok = diff <= target_ms
    print(f"{label:<27}: median with hooks {a:7.1f} ms | without {b:7.1f} ms | added {diff:6.1f} ms | "
          f"ratio {a / b:4.2f}"
          f" | target {'added' if added else 'evaluation'} <= {target_ms:.0f} ms: {'met' if ok else 'MISSED'}")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=25)
    parser.add_argument("--files", type=int, default=10)
    parser.add_argument("--big", type=int, default=10_000)
    parser.add_argument("--big-rounds", type=int, default=3)
    parser.add_argument("--depth", type=int, default=10_000, help="queued jobs for the post-receive measurement")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.update(HOME=tmp, GIT_CONFIG_NOSYSTEM="1", GIT_AUTHOR_NAME="Bench", GIT_AUTHOR_EMAIL="b@example.com",
                          GIT_COMMITTER_NAME="Bench", GIT_COMMITTER_EMAIL="b@example.com")
        server, hooked, plain = setup(Path(tmp))
        print(f"git push through Gitea's dispatcher, {os.cpu_count()} cores, Python {sys.version.split()[0]}")
        ok = report(f"{args.files}-file push", *small_pushes(hooked, plain, args.rounds, args.files), 50,
                    added=True)
        ok &= report(f"{args.big}-file first push", *big_push(hooked, plain, args.big, args.big_rounds), 2000,
                     added=False)
        empty = post_receive_alone(server, hooked, args.rounds)
        fill_queue(server, args.depth)
        deep = post_receive_alone(server, hooked, args.rounds)
        ok &= report_alone("post-receive, queue empty", empty, 30)
        ok &= report_alone(f"post-receive, {args.depth} queued", deep, 30)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
