"""Publishing cost of the worker against CI-style ``upload_folder``, side by side in one run.

Everything runs against the project's Hub emulator (subprocesses on 127.0.0.1) with the real huggingface_hub
client; nothing reaches the network. A Gitea repository holds ``--weights-mb`` MiB of Git LFS weights in
``--files`` objects of Gitea's LFS store, plus a few small files. The baseline is what CI sync tools do: a
checked-out tree with the LFS content materialised on disk, uploaded with ``HfApi.upload_folder``.

1. First publish: the worker (``worker.loop``) publishes the pushed repository to a new Hub repository, and
   ``upload_folder`` uploads the same files to another new one.
2. Incremental: a one-line ``config.json`` edit (``--repeat`` times; medians shown), pushed with real
   ``git push`` and published by the worker, and ``upload_folder`` of the edited checkout to the Hub
   repository that holds the previous version.
3. Drain: ``--jobs`` queued jobs over ``--repos`` repositories (real git commits, jobs queued as post-receive
   queues them) drained by ``service.run(once=True, workers=N)``: Hub commits made and jobs per second.

Bytes read are the ``rchar`` delta of ``/proc/self/io`` around each call (both sides run in this process):
every byte read(2) returned, from files, pipes (git's answers to the worker) and sockets (the emulator's answers,
a few KB here). ``read_bytes`` would be 0 for both, since the weights were just written and sit in the page
cache. Each side has its own emulator: the emulator stores LFS objects by sha256 across repositories, so the
second side would find the weights already stored and skip its upload. The emulators keep their data in
/dev/shm when it has room, and memory is warmed before each timed call (see ``hub_data_root`` and
``warm_memory``): without them, a 2 s first publish varied by up to 2 s from run to run on this VM.
"speedup" is upload_folder's time divided by the worker's.

    .venv/bin/python bench/publish.py [--weights-mb 1024] [--files 4] [--repeat 5] [--jobs 1000] [--repos 50]
                                      [--workers 2]

Targets: the incremental publish reads under 10 MB and is at least 20 times faster than upload_folder; a first
publish takes at most 1.1 times upload_folder's time; the drain makes one Hub commit per repository.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import mmap
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# Before huggingface_hub is imported (here or in the worker processes, which inherit the environment): the
# emulator speaks Git LFS only, and progress bars would only add noise to the timings.
os.environ["HF_HUB_DISABLE_XET"] = "1"
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import huggingface_hub.hf_api  # noqa: E402

# A running worker has these imported already: keep import time (and .pyc reads) out of the timings.
import gitea_hf_hook.worker.hub_client  # noqa: E402, F401
import gitea_hf_hook.worker.publish  # noqa: E402, F401
from gitea_hf_hook.config.model import (
    Config,  # noqa: E402
    Target,  # noqa: E402
)
from gitea_hf_hook.spool import layout as spool  # noqa: E402
from gitea_hf_hook.spool.job import Job, PushRecord, Request, new_id  # noqa: E402
from gitea_hf_hook.spool.state import TargetState  # noqa: E402
from gitea_hf_hook.worker import loop as worker  # noqa: E402
from gitea_hf_hook.worker import service  # noqa: E402
from tests.support.gitea_api import GiteaApi  # noqa: E402
from tests.support.gitea_server import Clone, GiteaServer, lfs_pointer  # noqa: E402
from tests.support.hub import Hub  # noqa: E402
from tests.support.publishing import CHECKS, configure  # noqa: E402

MiB = 1024 * 1024
RULE = "  - match: acme/*\n    hub_repo: acme/{name}\n    publishers: [alice]\n" + CHECKS
CARD = "---\nlicense: mit\n---\n# bench-llm\n\nWeights for the publish benchmark.\n"
GITATTRIBUTES = "*.safetensors filter=lfs diff=lfs merge=lfs -text\n"
SMALL = {"README.md": CARD, ".gitattributes": GITATTRIBUTES, "generation_config.json": '{"max_length": 64}\n',
         "tokenizer.json": json.dumps({"vocab": {f"tok{i}": i for i in range(2000)}}) + "\n"}
ZERO = "0" * 40
Row = tuple[str, str, str, str, str, str]  # measurement, worker, upload_folder, speedup, target, met/MISSED


class Measure:
    """Wall time, bytes this process read, and LFS bytes the emulator received, around one call."""

    def __init__(self, hub: Hub, call: Callable[[], Any], memory: int) -> None:
        os.sync()  # earlier writes (weights, the emulator's copies) must not be flushed while we time
        warm_memory(memory)
        lfs_before, read_before = hub.stats().get("lfs_bytes_received", 0), rchar()
        start = time.perf_counter()
        call()
        self.seconds = time.perf_counter() - start
        self.read = rchar() - read_before
        self.sent = hub.stats().get("lfs_bytes_received", 0) - lfs_before


def warm_memory(size: int) -> None:
    """Fault in ``size`` bytes of memory and free them again, so the call timed next finds warm pages.

    On a VM whose balloon driver reports free pages to the host, memory left free for a few seconds goes back
    to the host, and touching it again costs about 2 s per GiB instead of 0.4 s. A side that stores 1 GB on the
    emulator would pay that, or not, depending on what ran just before it: up to 2 s on a 2 s publish.
    """
    size = min(size, os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2)  # never push out the cache
    if size > 0:
        mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | mmap.MAP_POPULATE).close()


def median_run(runs: list[Measure]) -> Measure:
    """The run of median time; its bytes read are the most any run read, so nothing hides in the median."""
    middle = sorted(runs, key=lambda m: m.seconds)[len(runs) // 2]
    middle.read = max(m.read for m in runs)
    return middle


def rchar() -> int:
    with open("/proc/self/io") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("rchar:"))


def write_weights(lfs_root: Path, checkout: Path, names: list[str], size: int) -> dict[str, str]:
    """Random weights written into Gitea's LFS store and into the CI checkout; returns each file's sha256."""
    oids = {}
    for name in names:
        digest, tmp = hashlib.sha256(), lfs_root / f"incoming-{name}"
        with open(tmp, "wb") as store, open(checkout / name, "wb") as copy:
            left = size
            while left:
                chunk = os.urandom(min(left, 16 * MiB))  # differs per file and per chunk: nothing can dedupe
                digest.update(chunk)
                store.write(chunk)
                copy.write(chunk)
                left -= len(chunk)
        oid = digest.hexdigest()
        final = lfs_root / oid[0:2] / oid[2:4] / oid[4:]  # where Gitea keeps it
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp.rename(final)
        oids[name] = oid
    return oids


def hub_listing(hub: Hub, repo_id: str) -> dict[str, tuple[int, str]]:
    """path -> (size, LFS sha256 or git blob id) of a Hub repository's main branch."""
    listing = hub.api().list_repo_tree(repo_id, recursive=True)
    return {f.path: (f.size, f.lfs.sha256 if f.lfs else f.blob_id) for f in listing if hasattr(f, "blob_id")}


def publish_state(config: Config, repo_id: str) -> TargetState:
    state = worker.read_state(config.spool, Target(repo_id, "model", "branch", "main", "main"))
    assert state is not None, f"the worker has no state for {repo_id}"
    return state


def run_worker_once(config: Config) -> worker.LoopResult:
    result = worker.loop(config)
    if len(result.published) != 1 or result.failed or result.retried:
        raise SystemExit(f"the worker did not publish the job: {result}")
    return result


def weights_side(base: Path, hub_w: Hub, hub_ci: Hub, weights_mb: int, files: int,
                 repeat: int) -> tuple[Config, list[Row]]:
    """First publish, then a one-file change, by the worker and by upload_folder; returns the table rows."""
    from huggingface_hub import HfApi

    server = GiteaServer(base / "gitea")
    server.gitea_api = GiteaApi(server.lfs_root)  # the worker asks it that each LFS object is the repository's
    config = configure(server, hub_w, RULE)
    server.create_repo("acme", "llm")
    server.install("acme/llm")
    clone = server.clone("acme", "llm", base / "work")
    checkout = base / "ci-checkout"  # what actions/checkout with lfs: true leaves on a CI runner
    checkout.mkdir()
    names = [f"model-{i + 1:05d}-of-{files:05d}.safetensors" for i in range(files)]
    size = weights_mb * MiB // files
    oids = write_weights(server.lfs_root, checkout, names, size)
    for oid in oids.values():
        server.gitea_api.link("acme/llm", oid, size)
    clone.write({name: lfs_pointer(oid, size) for name, oid in oids.items()})
    small = {**SMALL, "config.json": '{"hidden_size": 4096, "num_layers": 32}\n'}
    clone.write(small)
    for name, text in small.items():
        (checkout / name).write_text(text)
    clone.commit(message="Add bench-llm")
    push(clone)
    ci = HfApi(endpoint=hub_ci.url, token=Hub.token)

    def baseline(message: str) -> Any:
        # A sync job cannot know whether the repository exists: it creates it with exist_ok, every run.
        ci.create_repo("acme/llm-ci", private=True, exist_ok=True)
        return ci.upload_folder(folder_path=str(checkout), repo_id="acme/llm-ci", commit_message=message)

    # What an emulator allocates during a first publish: the parts of each object, then the object.
    footprint = 2 * weights_mb * MiB + 256 * MiB
    first_w = Measure(hub_w, lambda: run_worker_once(config), footprint)
    first_ci = Measure(hub_ci, lambda: baseline("Add bench-llm"), footprint)
    assert publish_state(config, "acme/llm").result.mode == "full"

    # One measurement of a 15 ms call is at the mercy of the scheduler: take the median of several edits.
    inc_w_runs, inc_ci_runs = [], []
    for i in range(repeat):
        edit = f'{{"hidden_size": 4096, "num_layers": 32, "rope_theta": {500000 + i}}}\n'
        clone.commit({"config.json": edit}, message=f"Set rope_theta ({i + 1})")
        push(clone)
        (checkout / "config.json").write_text(edit)
        inc_w_runs.append(Measure(hub_w, lambda: run_worker_once(config), 256 * MiB))
        inc_ci_runs.append(Measure(hub_ci, lambda i=i: baseline(f"Set rope_theta ({i + 1})"), 256 * MiB))
    inc_w, inc_ci = median_run(inc_w_runs), median_run(inc_ci_runs)
    state = publish_state(config, "acme/llm")
    assert (state.result.mode, state.result.uploaded) == ("incremental", 1), state
    worker_files, ci_files = hub_listing(hub_w, "acme/llm"), hub_listing(hub_ci, "acme/llm-ci")
    if worker_files != ci_files:
        raise SystemExit(f"the two Hub repositories differ:\n{worker_files}\n{ci_files}")

    weights = f"{weights_mb} MiB"
    return config, [
        timing_row("incremental: time", inc_w, inc_ci, "worker >= 20x faster", inc_ci.seconds / inc_w.seconds >= 20),
        bytes_row("incremental: bytes read", inc_w, inc_ci, "worker < 10 MB", inc_w.read < 10 * 10**6),
        sent_row("incremental: LFS sent", inc_w, inc_ci),
        timing_row("first publish: time", first_w, first_ci, "worker time <= 1.1x upload_folder's",
                   first_w.seconds <= 1.1 * first_ci.seconds),
        bytes_row("first publish: bytes read", first_w, first_ci, f"info ({weights} of weights)", None),
        sent_row("first publish: LFS sent", first_w, first_ci),
    ]


def push(clone: Clone) -> None:
    result = clone.push("main", user="alice")
    if not result.ok:
        raise SystemExit(f"push failed:\n{result.output}")


def make_history(server: GiteaServer, name: str, commits: int, start: int) -> list[str]:
    """A bare Gitea repository with ``commits`` commits on main, made in one ``git fast-import`` run."""
    bare = server.create_repo("acme", name)
    stream = []
    for i in range(commits):
        message = f"Step {i}\n".encode()
        config = json.dumps({"step": i, "name": name}).encode() + b"\n"
        stream.append(b"commit refs/heads/main\n"
                      + f"committer Bench <bench@example.com> {start + i} +0000\n".encode()
                      + b"data %d\n%s" % (len(message), message)
                      + (b"M 100644 inline README.md\ndata %d\n%s\n" % (len(CARD), CARD.encode()) if i == 0 else b"")
                      + b"M 100644 inline config.json\ndata %d\n%s\n" % (len(config), config))
    subprocess.run(["git", "fast-import", "--quiet"], cwd=bare, input=b"".join(stream), check=True,
                   env=server.git_env())
    out = subprocess.run(["git", "rev-list", "--reverse", "main"], cwd=bare, capture_output=True, check=True)
    return out.stdout.decode().split()


def queue_jobs(server: GiteaServer, config: Config, hub: Hub, jobs: int, repos: int) -> None:
    """``jobs`` jobs over ``repos`` repositories, as post-receive queues them (push.jobs.job_for's format)."""
    per_repo = jobs // repos
    histories = {f"drain-{r:03d}": make_history(server, f"drain-{r:03d}", per_repo, 1_700_000_000)
                 for r in range(repos)}
    created = time.time()
    for i in range(per_repo):  # pushes to different repositories interleave in time
        for r, (name, commits) in enumerate(histories.items()):
            created += 0.001
            pushed = PushRecord("acme", name, str(100 + r), "alice", "2", "", "", "0")
            request = Request(repository=f"acme/{name}", repo_dir=str(server.repo_root / "acme" / f"{name}.git"),
                              ref="refs/heads/main", old=commits[i - 1] if i else ZERO, new=commits[i],
                              commit=commits[i], target=Target(f"acme/{name}", "model", "branch", "main", "main"))
            spool.enqueue(config.spool, Job(id=new_id(created), created=created, pushed=pushed, request=request))


@contextmanager
def stderr_to(path: Path) -> Iterator[None]:
    """File descriptor 2 into ``path``: the worker logs a line per job, and its processes inherit the fd."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(path, "ab") as log:
        os.dup2(log.fileno(), 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def drain_side(base: Path, config: Config, hub: Hub, jobs: int, repos: int, workers: int) -> list[Row]:
    """Queue the jobs, drain them with ``worker.run(once=True)``, and count the Hub commits it made."""
    server = GiteaServer(base / "gitea")  # the same Gitea root and spool as the weights side
    queue_jobs(server, config, hub, jobs, repos)
    queued = len(spool.job_names(config.spool, "queue"))
    done_before = len(spool.job_names(config.spool, "done"))
    commits_before = hub.stats()["commits"]
    log = base / "worker.log"
    start = time.perf_counter()
    with stderr_to(log):
        status = service.run(config, once=True, workers=workers)
    seconds = time.perf_counter() - start
    per_repo = {repo: n - commits_before.get(repo, 0) for repo, n in hub.stats()["commits"].items()}
    commits = sum(per_repo.values())
    one_each = sorted(n for repo, n in per_repo.items() if repo.startswith("acme/drain-")) == [1] * repos
    left = {folder: len(spool.job_names(config.spool, folder)) for folder in ("queue", "active", "failed")}
    done = len(spool.job_names(config.spool, "done")) - done_before
    if status != 0 or any(left.values()) or done != queued:
        tail = "\n".join(log.read_text().splitlines()[-20:])
        raise SystemExit(f"the drain did not finish every job: exit {status}, {done} done, {left}\n{tail}")
    return [
        ("drain: Hub commits", f"{commits} for {repos} repos", "-", "-", "one per repository",
         ok_text(commits == repos and one_each)),
        ("drain: throughput", f"{queued / seconds:.0f} jobs/s", "-", "-",
         f"info ({queued} jobs, {seconds:.1f} s, {workers} workers)", "-"),
    ]


def ok_text(ok: bool | None) -> str:
    return "-" if ok is None else "met" if ok else "MISSED"


def timing_row(label: str, w: Measure, ci: Measure, target: str, ok: bool) -> Row:
    return (label, f"{w.seconds:.3f} s", f"{ci.seconds:.3f} s", f"{ci.seconds / w.seconds:.1f}x", target,
            ok_text(ok))


def bytes_row(label: str, w: Measure, ci: Measure, target: str, ok: bool | None) -> Row:
    return label, megabytes(w.read), megabytes(ci.read), "-", target, ok_text(ok)


def sent_row(label: str, w: Measure, ci: Measure) -> Row:
    return label, megabytes(w.sent), megabytes(ci.sent), "-", "info (LFS bytes the emulator received)", "-"


def megabytes(n: int) -> str:
    return f"{n / 10**6:.3f} MB" if n < 10**7 else f"{n / 10**6:.0f} MB"


def print_table(rows: list[Row]) -> None:
    header: Row = ("measurement", "worker", "upload_folder", "speedup", "target", "")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(6)]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def hub_data_root(weights_mb: int) -> str | None:
    """Where the emulators keep their data: in memory when there is room, else the default temporary folder.

    The emulators stand in for a remote service, whose storage is not what we compare. On disk, each first
    publish makes an emulator write twice the weights (the parts, then the assembled object): here that added
    0.7 to 1.3 s, differing between the two sides and from run to run, to a first publish of 1.9 s.
    """
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK) and shutil.disk_usage(shm).free > 6 * weights_mb * MiB:
        return str(shm)
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights-mb", type=int, default=1024, help="MiB of LFS weights in the repository")
    parser.add_argument("--files", type=int, default=4, help="LFS objects the weights are split into")
    parser.add_argument("--jobs", type=int, default=1000, help="jobs queued for the drain")
    parser.add_argument("--repos", type=int, default=50, help="repositories the drain's jobs spread over")
    parser.add_argument("--workers", type=int, default=2, help="worker processes for the drain")
    parser.add_argument("--repeat", type=int, default=5, help="one-file changes timed; the median is shown")
    args = parser.parse_args()
    if args.files < 1 or args.weights_mb < args.files or args.repos < 1 or args.jobs < args.repos:
        parser.error("need --files >= 1, --weights-mb >= --files, --repos >= 1 and --jobs >= --repos")
    with tempfile.TemporaryDirectory(prefix="bench-publish-") as tmp, \
            tempfile.TemporaryDirectory(prefix="bench-publish-hub-", dir=hub_data_root(args.weights_mb)) as hub_tmp:
        base = Path(tmp)
        os.environ.update(HOME=str(base / "home"), GIT_CONFIG_NOSYSTEM="1", GIT_AUTHOR_NAME="Bench",
                          GIT_AUTHOR_EMAIL="b@example.com", GIT_COMMITTER_NAME="Bench",
                          GIT_COMMITTER_EMAIL="b@example.com")
        # The emulator's default page size (1000), not the tests' tiny pages, as the Hub pages its listings.
        hub_w = Hub(Path(hub_tmp, "worker"), base / "hub-worker.log", "--org", "acme")
        hub_ci = Hub(Path(hub_tmp, "ci"), base / "hub-ci.log", "--org", "acme")
        try:
            print(f"{args.weights_mb} MiB of Git LFS weights in {args.files} files; {os.cpu_count()} cores, "
                  f"Python {sys.version.split()[0]}, huggingface_hub {huggingface_hub.__version__}; "
                  f"emulator data in {Path(hub_tmp).parent}")
            config, rows = weights_side(base, hub_w, hub_ci, args.weights_mb, args.files, args.repeat)
            rows += drain_side(base, config, hub_w, args.jobs, args.repos, args.workers)
        finally:
            hub_w.stop()
            hub_ci.stop()
    print_table(rows)
    return 1 if any(row[-1] == "MISSED" for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
