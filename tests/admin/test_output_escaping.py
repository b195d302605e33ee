"""Gitea's user writes the job files, and the Hub writes the errors in them: what ``queue list``, ``queue show``,
``status`` and an error line print of them is escaped, so no ref, path, pusher, repository name or message can
forge a row, shift a column, clear the screen, plant a hyperlink or reorder text with a bidi control."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest
from click.testing import CliRunner

from gitea_hf_hook.admin.cli import cli
from gitea_hf_hook.config.load import load
from gitea_hf_hook.config.model import Config
from gitea_hf_hook.redact import escape
from gitea_hf_hook.spool import layout
from gitea_hf_hook.spool.job import Attempt, Outcome, dump
from tests.support.gitea_server import CLI, GiteaServer
from tests.support.jobs import ROUTE, jid, make_job

NOW = 1_800_018_030.0  # 2027-01-15T13:00:30Z
ESC = "\x1b"
# A branch name that clears the screen, then ends its row and starts one of its own.
REF = f"main{ESC}[2J\n{jid(99)}  done"
# A pusher whose name reverses what follows (U+202E), opens an isolate (U+2066), and holds C1 CSI and NEL.
PUSHER = "alice\u202e\u2066 ecila\x9b31m\x85"
# A repository name whose tab and carriage return would shift the columns after it.
REPOSITORY = "acme/bert\ttiny\r"
# An error naming a file whose name is an OSC 8 hyperlink, then a line break and a forged history entry.
ERROR = (f"weights.bin{ESC}]8;;https://evil.example/{ESC}\\: not on the server\n"
         "  2027-01-15T12:00:00Z  published")
# A reason as a release that only redacted stored it: the worker's own words around the Hub's raw ones.
REASON = f"the Hub answered 403: {ESC}[8mhidden{ESC}[0m\u2028\u202ethe end"


@pytest.fixture
def config(server: GiteaServer, monkeypatch: pytest.MonkeyPatch) -> Config:
    """A spool holding one queued job with hostile fields and one failed job with a raw reason."""
    loaded = load(str(server.write_config(ROUTE)))
    layout.ensure_layout(loaded.spool)
    hostile = make_job(1, revision=REF, created=NOW - 90, errors=(Attempt(NOW - 60, ERROR),))
    hostile = hostile._replace(pushed=hostile.pushed._replace(pusher=PUSHER),
                               request=hostile.request._replace(repository=REPOSITORY))
    layout.enqueue(loaded.spool, hostile)
    failed = make_job(2, kind="tag", revision="v1\u202e0", created=NOW - 30)
    failed = failed._replace(attempts=1, outcome=Outcome("failed", NOW - 20, "worker-1", 42, reason=REASON))
    layout.write_private(os.path.join(loaded.spool, "failed"), jid(2) + ".json", dump(failed))
    monkeypatch.setattr(time, "time", lambda: NOW)
    return loaded


def run(config: Config, *args: str) -> list[str]:
    result = CliRunner().invoke(cli, ["--config", config.path, *args])
    assert (result.exit_code, result.stderr) == (0, ""), result.output
    return result.stdout.splitlines()


def test_queue_list_prints_every_cell_escaped_and_no_forged_row(config: Config) -> None:
    assert run(config, "queue", "list") == [
        "ID                        STATE   TARGET                                                             COMMIT   "
        "ATTEMPTS  CREATED               NOTE",
        "20270115-080000-00000001  queued  acme/bert-tiny branch main\\x1b[2J\\n20270115-080000-00000063  done  c000000  "
        "0         2027-01-15T12:59:00Z  due",
        "20270115-080000-00000002  failed  acme/bert-tiny tag v1\\u202e0                                       c000000  "
        "1         2027-01-15T13:00:00Z  the Hub answered 403: \\x1b[8mhidden\\x1b[0m\\u2028\\u202ethe end",
    ]


def test_queue_show_prints_every_value_escaped(config: Config) -> None:
    assert run(config, "queue", "show", jid(1)) == [
        "job 20270115-080000-00000001: queued",
        "target: acme/bert-tiny branch main\\x1b[2J\\n20270115-080000-00000063  done",
        "ref: refs/heads/main\\x1b[2J\\n20270115-080000-00000063  done",
        "commit: c000000000000000000000000000000000000001",
        "pushed by: alice\\u202e\\u2066 ecila\\x9b31m\\x85 to acme/bert\\ttiny\\r",
        "created: 2027-01-15T12:59:00Z",
        "attempts: 0",
        "due: now",
        "errors:",
        "  2027-01-15T12:59:30Z  weights.bin\\x1b]8;;https://evil.example/\\x1b\\\\: not on the server\\n  "
        "2027-01-15T12:00:00Z  published",
    ]
    assert run(config, "queue", "show", jid(2))[-2:] == [
        "attempts: 1", "reason: the Hub answered 403: \\x1b[8mhidden\\x1b[0m\\u2028\\u202ethe end"]


def test_status_prints_the_failure_escaped(config: Config) -> None:
    assert run(config, "status") == [
        "queue: 1 job, 1 due, oldest queued 1m30s ago",
        "active: 0 jobs",
        "failed: 1 job",
        "  20270115-080000-00000002  acme/bert-tiny tag v1\\u202e0  the Hub answered 403: \\x1b[8mhidden\\x1b[0m"
        "\\u2028\\u202ethe end",
        "done: 0 jobs",
    ]


@pytest.mark.parametrize("command", [("queue", "list", "--json"), ("queue", "show", jid(1), "--json"),
                                     ("status", "--json")])
def test_json_output_is_ascii_and_holds_the_values_unchanged(config: Config, command: tuple[str, ...]) -> None:
    text = "\n".join(run(config, *command))
    assert text.isascii()
    data = json.loads(text)
    if command[0] == "status":
        assert data["failed"][0]["reason"] == REASON
    elif command[1] == "list":
        assert [j["target"]["revision"] for j in data] == [REF, "v1\u202e0"]
        assert data[1]["note"] == REASON
    else:
        job = data["job"]
        assert (job["request"]["ref"], job["pushed"]["pusher"], job["request"]["repository"],
                job["errors"][0]["message"]) == ("refs/heads/" + REF, PUSHER, REPOSITORY, ERROR)


def test_a_backslash_in_a_ref_cannot_pass_for_an_escape(server: GiteaServer, monkeypatch: pytest.MonkeyPatch) -> None:
    loaded = load(str(server.write_config(ROUTE)))
    layout.ensure_layout(loaded.spool)
    layout.enqueue(loaded.spool, make_job(1, revision="a\\x1b[2J", created=NOW))  # text, not an escape
    layout.enqueue(loaded.spool, make_job(2, revision=f"a{ESC}[2J", created=NOW))
    monkeypatch.setattr(time, "time", lambda: NOW)
    assert [line.split("  ")[2] for line in run(loaded, "queue", "list")[1:]] == [
        "acme/bert-tiny branch a\\\\x1b[2J", "acme/bert-tiny branch a\\x1b[2J"]


def test_an_error_line_escapes_the_path_it_names(server: GiteaServer) -> None:
    path = f"{server.base}/conf{ESC}[2J\n{ESC}]8;;https://evil.example/{ESC}\\\u202e.yaml"
    result = subprocess.run([*CLI, "--config", path, "status"], capture_output=True, text=True, timeout=120)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (f"gitea-hf-hook: error: {server.base}/conf\\x1b[2J\\n\\x1b]8;;https://evil.example/"
                             "\\x1b\\\\\\u202e.yaml: no such file (create it, or point --config or "
                             "$GITEA_HF_HOOK_CONFIG at one)\n")


@pytest.mark.parametrize(("raw", "shown"), [
    ("plain text, é and 日本", "plain text, é and 日本"),
    ("\x00\x07\t\n\r\x1b\x7f", "\\x00\\x07\\t\\n\\r\\x1b\\x7f"),  # C0 controls, ESC and DEL
    ("\x80\x85\x9b\x9f", "\\x80\\x85\\x9b\\x9f"),  # C1 controls
    ("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e", "\\u061c\\u200e\\u200f\\u202a\\u202b\\u202c\\u202d\\u202e"),
    ("\u2066\u2067\u2068\u2069\u2028\u2029", "\\u2066\\u2067\\u2068\\u2069\\u2028\\u2029"),  # isolates, separators
    ("\ud800 \udcff", "\\ud800 \\udcff"),  # lone surrogates: a name that is not UTF-8
    ("a\\b", "a\\\\b"),
])
def test_escape_leaves_printable_text_and_escapes_everything_else(raw: str, shown: str) -> None:
    assert escape(raw) == shown
