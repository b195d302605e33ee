"""What the Hub says when it refuses reaches job files, ``queue show``, ``status`` and the worker's log cleaned.

A Hub answer is text from outside: a hostile Hub, a proxy in front of it, or a Hub that echoes what it was sent
may put terminal escapes, an OSC 8 hyperlink, a line break and a forged log record, bidi overrides, C1 controls or
the worker's own token in an error. Alice pushes for real; the real worker (its command, and a pass in-process
with an injected clock) publishes with the real client to a small HTTP server that answers every request with
such an error; the admin reads the outcome with the real command.
"""

from __future__ import annotations

import json
import random
import re
import string
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from gitea_hf_hook.admin.queue import when
from gitea_hf_hook.config.model import Config
from gitea_hf_hook.redact import HUB_MESSAGE_LIMIT, MESSAGE_LIMIT, clean
from gitea_hf_hook.spool.job import Job, parse
from gitea_hf_hook.worker import loop as worker
from tests.support.gitea_server import CLI, GiteaServer
from tests.support.publishing import RULE, configure

ESC, BEL, CSI = "\x1b", "\x07", "\x9b"
# What the Hub sends as its error. It clears the screen, shows a hyperlink whose text hides where it goes, ends
# its line and writes a log record of its own (the worker's log format), then hides a bidi override, an
# isolate, a C1 CSI and NEL among words, and quotes the token the request carried.
HOSTILE = (f"{ESC}[2JRepository locked. {ESC}]8;;https://evil.example/{ESC}\\see the status page{ESC}]8;;{ESC}\\"
           "\n2027-01-15 13:00:00,000 gitea-hf-hook worker[1]: published job 1: all is well"
           f"\r\nowner \u202eeulav\u202c \u2066x\u2069 {CSI}31m red\x85next, with {{token}}{BEL}")
# The same words as the worker stores them: one line, every control a U+FFFD, the token redacted.
STORED = ("\ufffd[2JRepository locked. \ufffd]8;;https://evil.example/\ufffd\\see the status page\ufffd]8;;"
          "\ufffd\\ 2027-01-15 13:00:00,000 gitea-hf-hook worker[1]: published job 1: all is well owner "
          "\ufffdeulav\ufffd \ufffdx\ufffd \ufffd31m red next, with [REDACTED]\ufffd")
# And as a terminal shows it: the stored value escaped once more, its backslashes doubled.
SHOWN = STORED.replace("\\", "\\\\")


def token() -> str:
    """A Hub-token-shaped string, built at run time so no token-shaped literal sits in the sources."""
    return "hf_" + "".join(random.choices(string.ascii_letters + string.digits, k=34))


class CraftedHub:
    """A Hub on loopback that answers every request with ``status`` and ``{"error": message}``, where ``{token}``
    in the message is the bearer token of the request (a Hub echoing what it was sent)."""

    def __init__(self) -> None:
        self.status, self.message = 400, HOSTILE
        self.paths: list[str] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def answer(self) -> None:
                hub.paths.append(f"{self.command} {self.path}")
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                said = hub.message.replace("{token}", self.headers.get("Authorization", "").rpartition(" ")[2])
                body = json.dumps({"error": said}).encode()
                self.send_response(hub.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = answer  # noqa: N815 - http.server's names

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def crafted() -> Iterator[CraftedHub]:
    hub = CraftedHub()
    yield hub
    hub.stop()


@pytest.fixture
def site(server: GiteaServer, crafted: CraftedHub, tmp_path: Path) -> Config:
    """acme/bert-tiny on Gitea, publishing to the crafted Hub with a token of alice's; alice has pushed main."""
    server.create_repo("acme", "bert-tiny")
    config = configure(server, crafted, RULE, token=token(), worker="worker:\n  max_attempts: 3\n")
    server.install("acme/bert-tiny")
    clone = server.clone("acme", "bert-tiny", tmp_path / "work")
    clone.commit({"README.md": "---\nlicense: mit\n---\n# tiny\n"}, message="Add card")
    assert clone.push("main").ok
    return config


def job_in(config: Config, folder: str) -> Job:
    [path] = Path(config.spool, folder).glob("*.json")
    return parse(path.name, path.read_bytes())


def cli(config: Config, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, "--config", config.path, *args], capture_output=True, text=True, timeout=120)


def test_a_refusal_full_of_escapes_is_stored_cleaned_and_shown_escaped(site: Config, crafted: CraftedHub) -> None:
    ran = cli(site, "worker", "--once", "--allow-root")
    assert ran.returncode == 0, ran.stderr
    assert crafted.paths == ["GET /api/models/acme/bert-tiny/refs"]
    job = job_in(site, "failed")
    reason = (f"reading the refs of acme/bert-tiny: the Hub answered 400: {STORED} (fix the cause above, then push "
              "again or requeue the job)")
    assert job.outcome is not None and job.outcome.reason == reason
    assert [e.message for e in job.errors] == [reason]

    # The log: every record one line, the Hub's words in it inert, the token nowhere.
    records = [line.partition(": ")[2] for line in ran.stderr.splitlines()]
    assert records[-3:] == [
        f"publishing job {job.id}: {job.commit[:7]} to acme/bert-tiny branch main (attempt 1)",
        f"job {job.id} failed: reading the refs of acme/bert-tiny: the Hub answered 400: {SHOWN} (fix the cause "
        "above, then push again or requeue the job)",
        "worker stopped",
    ]
    assert all(" gitea-hf-hook worker[" in line for line in ran.stderr.splitlines())

    shown = cli(site, "queue", "show", job.id)
    assert (shown.returncode, shown.stderr) == (0, "")
    lines = shown.stdout.splitlines()
    assert lines[0] == f"job {job.id}: failed"
    assert lines[-3:] == [
        f"reason: reading the refs of acme/bert-tiny: the Hub answered 400: {SHOWN} (fix the cause above, then "
        "push again or requeue the job)",
        "errors:",
        f"  {lines[-1][2:22]}  reading the refs of acme/bert-tiny: the Hub answered 400: {SHOWN} (fix the cause "
        "above, then push again or requeue the job)",
    ]
    status = cli(site, "status")
    lines = status.stdout.splitlines()
    ago = lines[-1].partition(" (")[2].partition(" ago)")[0]  # the seconds since the worker's pass
    assert lines == [
        "queue: empty",
        "active: 0 jobs",
        "failed: 1 job",
        f"  {job.id}  acme/bert-tiny branch main  reading the refs of acme/bert-tiny: the Hub answered 400: "
        f"{SHOWN} (fix the cause above, then push again or requeue the job)",
        "done: 0 jobs",
        "targets: 1, 1 failing",
        "  acme/bert-tiny branch main",
        "    last published: never",
        f"    last failed: {when(job.outcome.finished)} ({ago} ago), job {job.id}, commit {job.commit[:7]}: reading "
        f"the refs of acme/bert-tiny: the Hub answered 400: {SHOWN} (fix the cause above, then push again or requeue "
        "the job)",
    ]
    assert re.fullmatch(r"\d+s|\d+m\d\ds", ago), ago
    # JSON holds the stored value itself, in ASCII: a parser gets it back, a terminal sees no control.
    as_json = cli(site, "status", "--json").stdout
    assert as_json.isascii() and "\\u001b" not in as_json
    assert json.loads(as_json)["failed"] == [{"id": job.id, "target": "acme/bert-tiny branch main",
                                               "reason": reason}]
    assert json.loads(cli(site, "queue", "show", job.id, "--json").stdout)["job"]["outcome"]["reason"] == reason
    everything = ran.stderr + shown.stdout + status.stdout + as_json + "".join(
        p.read_text() for p in Path(site.spool).rglob("*") if p.is_file())
    assert "hf_" not in everything and ESC not in everything and "\u202e" not in everything


def test_an_outage_answer_is_cut_to_its_bound_and_retried(site: Config, crafted: CraftedHub,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    # A 503 is answered by the worker's own client guard, not the Hub client: the same cleaning applies there.
    crafted.status, crafted.message = 503, HOSTILE + " and on" * 1000
    now = job_in(site, "queue").created + 60
    with caplog.at_level("INFO", logger="gitea_hf_hook.worker"):
        result = worker.loop(site, now)
    job = job_in(site, "queue")
    assert result.retried == [job.id]
    said = clean(STORED + " and on" * 1000, HUB_MESSAGE_LIMIT)
    assert len(said) == HUB_MESSAGE_LIMIT and said.startswith(STORED + " and on") and said.endswith("...")
    message = (f"reading the refs of acme/bert-tiny: the Hub answered 503: {said} (the worker will try again)")
    assert [e.message for e in job.errors] == [message]
    delay = job.not_before - now
    assert caplog.messages[-1] == (f"job {job.id} failed (attempt 1 of 3), retrying in {delay:.0f}s: "
                                   + message.replace("\\", "\\\\"))


@pytest.mark.parametrize(("text", "stored"), [
    ("line one\nline two\r\n\tthree\u2028four\u2029five\x85six", "line one line two three four five six"),
    (f"{ESC}[31mred{ESC}[0m \u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069 \x00\x7f",
     "\ufffd[31mred\ufffd[0m \ufffd\ufffd\ufffd\ufffd\ufffd\ufffd\ufffd\ufffd\ufffd\ufffd\ufffd\ufffd \ufffd\ufffd"),
    ("a lone surrogate \udcff, and a backslash \\x1b that is text", "a lone surrogate \ufffd, and a backslash "
                                                                    "\\x1b that is text"),
    ("Authorization: Bearer not-shaped-like-a-token", "Authorization: [REDACTED]"),
])
def test_clean_makes_one_printable_line_without_tokens(text: str, stored: str) -> None:
    assert clean(text) == stored


def test_clean_bounds_a_message_and_never_leaves_a_cut_token_behind() -> None:
    assert clean("x" * (MESSAGE_LIMIT + 5)) == "x" * (MESSAGE_LIMIT - 3) + "..."
    # Only the first 16 limits of text are looked at. A token astride that edge keeps "hf_" and 5 characters
    # there, too few to be recognised as a token: the cut word is dropped, never shown in part.
    scan = MESSAGE_LIMIT * 16
    assert clean(" " * (scan - 10) + "x " + token()) == "x..."
