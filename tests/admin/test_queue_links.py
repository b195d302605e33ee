"""Gitea's user writes ``queue/``: what it plants there (links, FIFOs, huge files, names that are not UTF-8) is
reported by ``queue list``, ``queue show``, ``status`` and ``retry`` as a line, and never followed, read or waited
on, whoever runs them, root included."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pytest

from gitea_hf_hook.config.load import load
from gitea_hf_hook.config.model import Config
from gitea_hf_hook.spool import layout
from tests.support.gitea_server import CLI, GiteaServer
from tests.support.jobs import ROOT, ROUTE, jid, make_job

NOW = 1_800_018_030.0  # 2027-01-15T13:00:30Z
SECRET = "root:only-root-reads-this\n"
LINKED = "a symbolic link, which is never followed (delete it)"


class Outside(NamedTuple):
    """A file of root's outside the spool, which nothing the queue commands do may read or change."""

    path: Path

    def state(self) -> tuple[str, int]:
        return self.path.read_text(), self.path.stat().st_mode & 0o7777


@pytest.fixture
def outside(tmp_path: Path) -> Outside:
    path = tmp_path / "outside" / "shadow"
    path.parent.mkdir()
    path.write_text(SECRET)
    path.chmod(0o600)
    return Outside(path)


@pytest.fixture
def config(server: GiteaServer) -> Config:
    loaded = load(str(server.write_config(ROUTE)))
    layout.ensure_layout(loaded.spool)
    return loaded


def run(config: Config, *args: str) -> subprocess.CompletedProcess[str]:
    """The installed command as an admin runs it; the timeout turns a read that would block into a failure."""
    return subprocess.run([*CLI, "--config", config.path, *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=120)


def queue(config: Config) -> Path:
    return Path(config.spool, "queue")


def test_a_reason_link_beside_a_broken_job_in_queue_is_never_read(config: Config, outside: Outside) -> None:
    (queue(config) / "broken.json").write_bytes(b"{oops")
    (queue(config) / "broken.reason").symlink_to(outside.path)
    problem = ("job file broken.json: not valid JSON (Expecting property name enclosed in double quotes: line 1 "
               "column 2 (char 1))")
    listed = run(config, "queue", "list")
    assert (listed.returncode, listed.stderr) == (0, "")
    assert listed.stdout.splitlines() == [
        "ID      STATE   TARGET  COMMIT  ATTEMPTS  CREATED  NOTE",
        f"broken  queued  ?       ?       ?         ?        {problem}",
    ]
    shown = run(config, "queue", "show", "broken")
    assert (shown.returncode, shown.stdout) == (0, f"job broken: queued\nproblem: {problem}\n")
    assert json.loads(run(config, "queue", "show", "broken", "--json").stdout)["problem"] == problem
    status = run(config, "status")
    assert status.stdout == "queue: 1 job, 1 due\nactive: 0 jobs\nfailed: 0 jobs\ndone: 0 jobs\n"
    assert outside.state() == (SECRET, 0o600)


def test_a_job_file_that_is_a_link_a_fifo_or_huge_is_listed_as_such(config: Config, outside: Outside) -> None:
    layout.enqueue(config.spool, make_job(1, created=NOW))
    (queue(config) / "linked.json").symlink_to(outside.path)
    os.mkfifo(queue(config) / "fifo.json")
    with open(queue(config) / "huge.json", "wb") as f:
        f.truncate(layout.MAX_FILE + 1)
    (queue(config) / "folder.json").mkdir()
    listed = run(config, "queue", "list")
    assert (listed.returncode, listed.stderr) == (0, "")
    assert listed.stdout.splitlines() == [
        "ID                        STATE   TARGET                      COMMIT   ATTEMPTS  CREATED               NOTE",
        "20270115-080000-00000001  queued  acme/bert-tiny branch main  c000000  0         2027-01-15T13:00:30Z  due",
        "fifo                      queued  ?                           ?        ?         ?                     "
        "job file fifo.json: not a regular file (delete it)",
        "folder                    queued  ?                           ?        ?         ?                     "
        "job file folder.json: not a regular file (delete it)",
        "huge                      queued  ?                           ?        ?         ?                     "
        "job file huge.json: larger than 1048576 bytes, so not a job (delete it)",
        "linked                    queued  ?                           ?        ?         ?                     "
        f"job file linked.json: {LINKED}",
    ]
    for name, problem in (("linked", f"job file linked.json: {LINKED}"),
                          ("fifo", "job file fifo.json: not a regular file (delete it)")):
        shown = run(config, "queue", "show", name)
        assert (shown.returncode, shown.stdout, shown.stderr) == (0, f"job {name}: queued\nproblem: {problem}\n", "")
    status = run(config, "status", "--json")
    assert (status.returncode, json.loads(status.stdout)["queue"]["depth"]) == (0, 5)
    assert SECRET.strip() not in listed.stdout + status.stdout
    assert outside.state() == (SECRET, 0o600)


def test_retry_reads_the_failed_job_without_following_a_link(config: Config, outside: Outside) -> None:
    failed = Path(config.spool, "failed")
    (failed / f"{jid(7)}.json").symlink_to(outside.path)
    result = run(config, "queue", "retry", jid(7))
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (f"gitea-hf-hook: error: job {jid(7)} cannot be retried: job file {jid(7)}.json: "
                             f"a symbolic link, which is never followed (fix or delete {failed}/{jid(7)}.json)\n")
    assert (failed / f"{jid(7)}.json").is_symlink()
    assert os.listdir(queue(config)) == []
    assert outside.state() == (SECRET, 0o600)


def test_the_workers_reason_in_failed_is_still_shown(config: Config) -> None:
    failed = Path(config.spool, "failed")
    (failed / "broken.json").write_bytes(b"{oops")
    (failed / "broken.reason").write_text("the worker could not read it\n")
    assert run(config, "queue", "show", "broken").stdout == "job broken: failed\nproblem: the worker could not read it\n"


def test_a_job_name_that_is_not_utf8_is_listed_escaped(config: Config) -> None:
    (queue(config) / "\udcff.json").write_bytes(b"{oops")
    problem = ("job file \\udcff.json: not valid JSON (Expecting property name enclosed in double quotes: line 1 "
               "column 2 (char 1))")
    listed = run(config, "queue", "list")
    assert (listed.returncode, listed.stderr) == (0, "")
    assert listed.stdout.splitlines() == [
        "ID      STATE   TARGET  COMMIT  ATTEMPTS  CREATED  NOTE",
        f"\\udcff  queued  ?       ?       ?         ?        {problem}",
    ]
    assert [e["id"] for e in json.loads(run(config, "queue", "list", "--json").stdout)] == ["\udcff"]
    assert run(config, "status").stdout.splitlines()[0] == "queue: 1 job, 1 due"


def test_an_unexpected_failure_naming_a_file_that_is_not_utf8_is_logged_escaped(config: Config,
                                                                                  tmp_path: Path) -> None:
    (queue(config) / "\udcff.json").write_bytes(b"{}")
    cache = tmp_path / "cache"
    script = ("import os; from gitea_hf_hook.admin import queue\n"
              "def entries(root, *folders):\n"
              "    raise ValueError('cannot list ' + os.listdir(os.path.join(root, 'queue'))[0])\n"  # a bug
              "queue.entries = entries\n"
              "from gitea_hf_hook.admin.cli import main; main()\n")
    result = subprocess.run([sys.executable, "-c", script, "--config", config.path, "queue", "list"],
                            capture_output=True, text=True, cwd=ROOT, timeout=120,
                            env={**os.environ, "XDG_CACHE_HOME": str(cache)})
    log = cache / "gitea-hf-hook" / "cli.log"
    assert (result.returncode, result.stdout) == (3, "")
    assert result.stderr == f"gitea-hf-hook: internal error: ValueError (the traceback is in {log}; please report it)\n"
    assert "ValueError: cannot list \\udcff.json" in log.read_text()
