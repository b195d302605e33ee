"""An admin watches the worker: ``status --json`` and the metrics file the worker writes after each pass carry the
same figures, the file is read by the text format's own parser, and nothing in it can be forged by a name."""

from __future__ import annotations

import json
import logging
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from gitea_hf_hook.admin.cli import cli
from gitea_hf_hook.config.load import load
from gitea_hf_hook.config.model import Config, Target
from gitea_hf_hook.errors import PublishError
from gitea_hf_hook.spool import layout
from gitea_hf_hook.spool.job import Job
from gitea_hf_hook.spool.state import PublishResult, TargetFailure, TargetState, failure_path, target_key
from gitea_hf_hook.worker import loop as worker
from gitea_hf_hook.worker import metrics
from tests.support.gitea_server import GiteaServer
from tests.support.jobs import ROUTE, jid, make_job

NOW = 1_800_018_030.0  # 2027-01-15T13:00:30Z
REFUSED = "the Hub answered 403: you cannot write to acme/bert-tiny (give the token write access)"
MAIN = 'hub_repo="acme/bert-tiny",repo_type="model",kind="branch",revision="main"'
TAG = 'hub_repo="acme/bert-tiny",repo_type="model",kind="tag",revision="v1.0"'


def refuse_tags(config: Config, job: Job, state: TargetState | None) -> PublishResult:
    """Publisher double: the Hub refuses tags and takes branches."""
    if job.target.kind == "tag":
        raise PublishError("the Hub answered 403: you cannot write to acme/bert-tiny", "give the token write access")
    return PublishResult(git_commit=job.commit, hub_commit="b" * 40)


@dataclass
class Site:
    config: Config
    metrics_file: Path

    def status(self) -> Any:
        """``status --json``, read back."""
        result = CliRunner().invoke(cli, ["--config", self.config.path, "status", "--json"])
        assert result.exit_code == 0, result.output
        return json.loads(result.output)


@pytest.fixture
def site(server: GiteaServer) -> Iterator[Site]:
    path = server.base / "metrics" / "gitea-hf-hook.prom"
    path.parent.mkdir()
    config = load(str(server.write_config(ROUTE, extra=f"metrics_file: {path}\n")))
    layout.ensure_layout(config.spool)
    yield Site(config, path)


def busy_day(site: Site) -> None:
    """main published and the v1.0 tag refused five minutes ago; one retry waiting; a broken file queued since."""
    layout.enqueue(site.config.spool, make_job(11, created=NOW - 350))
    layout.enqueue(site.config.spool, make_job(20, kind="tag", revision="v1.0", created=NOW - 330))
    worker.loop(site.config, NOW - 300, refuse_tags)
    layout.enqueue(site.config.spool, make_job(2, revision="exp", created=NOW - 600, attempts=1,
                                               not_before=NOW + 600))
    layout.write_atomic(os.path.join(site.config.spool, "tmp"), "x", b"", site.config.spool)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a text-format file, as the format's reference parser reads it."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_the_worker_writes_the_metrics_file_at_the_end_of_each_pass(site: Site) -> None:
    busy_day(site)
    worker.loop(site.config, NOW, refuse_tags)

    text = site.metrics_file.read_text()
    assert text.splitlines() == [
        "# HELP gitea_hf_hook_last_pass_timestamp_seconds When the worker that wrote this file began its last pass.",
        "# TYPE gitea_hf_hook_last_pass_timestamp_seconds gauge",
        "gitea_hf_hook_last_pass_timestamp_seconds 1800018030.0",
        "# HELP gitea_hf_hook_queue_jobs Jobs waiting in queue/, due or not.",
        "# TYPE gitea_hf_hook_queue_jobs gauge",
        "gitea_hf_hook_queue_jobs 1",
        "# HELP gitea_hf_hook_queue_due_jobs Queued jobs that are due now.",
        "# TYPE gitea_hf_hook_queue_due_jobs gauge",
        "gitea_hf_hook_queue_due_jobs 0",
        "# HELP gitea_hf_hook_queue_oldest_age_seconds Age of the oldest queued job since its push; 0 when the "
        "queue is empty.",
        "# TYPE gitea_hf_hook_queue_oldest_age_seconds gauge",
        "gitea_hf_hook_queue_oldest_age_seconds 600.0",
        "# HELP gitea_hf_hook_active_jobs Jobs a worker holds (active/).",
        "# TYPE gitea_hf_hook_active_jobs gauge",
        "gitea_hf_hook_active_jobs 0",
        "# HELP gitea_hf_hook_failed_jobs Jobs in the dead letter (failed/).",
        "# TYPE gitea_hf_hook_failed_jobs gauge",
        "gitea_hf_hook_failed_jobs 1",
        "# HELP gitea_hf_hook_cancelled_jobs Jobs an admin cancelled (cancelled/).",
        "# TYPE gitea_hf_hook_cancelled_jobs gauge",
        "gitea_hf_hook_cancelled_jobs 0",
        "# HELP gitea_hf_hook_done_jobs Published or superseded jobs kept in done/.",
        "# TYPE gitea_hf_hook_done_jobs gauge",
        "gitea_hf_hook_done_jobs 1",
        "# HELP gitea_hf_hook_target_last_success_timestamp_seconds When each target last published.",
        "# TYPE gitea_hf_hook_target_last_success_timestamp_seconds gauge",
        f"gitea_hf_hook_target_last_success_timestamp_seconds{{{MAIN}}} 1800017730.0",
        "# HELP gitea_hf_hook_target_last_success_info The job and commits of each target's last publish (always 1).",
        "# TYPE gitea_hf_hook_target_last_success_info gauge",
        f'gitea_hf_hook_target_last_success_info{{{MAIN},job="{jid(11)}",commit="{make_job(11).commit}",'
        f'hub_commit="{"b" * 40}"}} 1',
        "# HELP gitea_hf_hook_target_last_failure_timestamp_seconds When a job of each target last ended in failed/.",
        "# TYPE gitea_hf_hook_target_last_failure_timestamp_seconds gauge",
        f"gitea_hf_hook_target_last_failure_timestamp_seconds{{{TAG}}} 1800017730.0",
        "# HELP gitea_hf_hook_target_last_failure_info The job, commit and reason of each target's last failure "
        "(always 1).",
        "# TYPE gitea_hf_hook_target_last_failure_info gauge",
        f'gitea_hf_hook_target_last_failure_info{{{TAG},job="{jid(20)}",commit="{make_job(20).commit}",'
        f'reason="{REFUSED}"}} 1',
    ]
    assert stat.filemode(site.metrics_file.stat().st_mode) == "-rw-r--r--"  # for a collector of another user
    assert sorted(os.listdir(site.metrics_file.parent)) == ["gitea-hf-hook.prom"]  # no temporary file left


def test_status_json_and_the_metrics_file_carry_the_same_figures(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    busy_day(site)
    worker.loop(site.config, NOW, refuse_tags)
    monkeypatch.setattr("time.time", lambda: NOW)
    status = site.status()
    read = samples(site.metrics_file.read_text())
    main = (("hub_repo", "acme/bert-tiny"), ("kind", "branch"), ("repo_type", "model"), ("revision", "main"))
    tag = (("hub_repo", "acme/bert-tiny"), ("kind", "tag"), ("repo_type", "model"), ("revision", "v1.0"))
    queue, targets = status["queue"], status["targets"]
    success, failure = targets[0]["last_success"], targets[1]["last_failure"]
    assert {
        "queue": queue["depth"], "due": queue["due"], "oldest": queue["oldest_age_seconds"],
        "failed": status["failures"], "cancelled": status["cancelled"], "done": status["done"],
        "success": success["at"], "failure": failure["at"],
        "success job": (success["job"], success["commit"], success["hub_commit"]),
        "failure job": (failure["job"], failure["commit"], failure["reason"]),
    } == {
        "queue": read[("gitea_hf_hook_queue_jobs", ())], "due": read[("gitea_hf_hook_queue_due_jobs", ())],
        "oldest": read[("gitea_hf_hook_queue_oldest_age_seconds", ())],
        "failed": read[("gitea_hf_hook_failed_jobs", ())], "cancelled": read[("gitea_hf_hook_cancelled_jobs", ())],
        "done": read[("gitea_hf_hook_done_jobs", ())],
        "success": read[("gitea_hf_hook_target_last_success_timestamp_seconds", main)],
        "failure": read[("gitea_hf_hook_target_last_failure_timestamp_seconds", tag)],
        "success job": (jid(11), make_job(11).commit, "b" * 40),
        "failure job": (jid(20), make_job(20).commit, REFUSED),
    }
    info = {name: dict(labels) for name, labels in read if name.endswith("_info")}
    assert (info["gitea_hf_hook_target_last_success_info"]["job"],
            info["gitea_hf_hook_target_last_failure_info"]["reason"]) == (jid(11), REFUSED)


def test_status_reads_the_figures_but_never_writes_the_metrics_file(site: Site) -> None:
    busy_day(site)
    site.metrics_file.unlink()
    assert site.status()["failures"] == 1
    assert not site.metrics_file.exists()


def test_a_branch_name_and_a_hub_answer_cannot_forge_a_sample(server: GiteaServer, tmp_path: Path) -> None:
    path = tmp_path / "gitea-hf-hook.prom"
    config = load(str(server.write_config(ROUTE, extra=f"metrics_file: {path}\n")))
    layout.ensure_layout(config.spool)
    branch = 'we"ird"}gitea_hf_hook_failed_jobs{x="'  # git takes quotes and braces in a ref name, not spaces or backslashes
    said = 'bad \\ "path" \r\ngitea_hf_hook_failed_jobs 0 \u2028'

    def hostile(config: Config, job: Job, state: TargetState | None) -> PublishResult:
        raise PublishError(f"the Hub answered 400: {said}")

    layout.enqueue(config.spool, make_job(1, revision=branch, created=NOW - 60))
    worker.loop(config, NOW, hostile)

    text = path.read_text()
    lines = text.splitlines()
    assert [line for line in lines if line.startswith("gitea_hf_hook_failed_jobs")] == ["gitea_hf_hook_failed_jobs 1"]
    assert lines[-1] == (
        'gitea_hf_hook_target_last_failure_info{hub_repo="acme/bert-tiny",repo_type="model",kind="branch",'
        'revision="we\\"ird\\"}gitea_hf_hook_failed_jobs{x=\\"",'
        f'job="{jid(1)}",commit="{make_job(1).commit}",'
        'reason="the Hub answered 400: bad \\\\ \\"path\\" gitea_hf_hook_failed_jobs 0"} 1')
    read = samples(text)
    [(labels, value)] = [(dict(k[1]), v) for k, v in read.items() if k[0] == "gitea_hf_hook_target_last_failure_info"]
    assert (labels["revision"], labels["reason"], value) == (
        branch, 'the Hub answered 400: bad \\ "path" gitea_hf_hook_failed_jobs 0', 1.0)
    assert read[("gitea_hf_hook_failed_jobs", ())] == 1.0


def test_label_values_escape_backslash_quote_and_line_feed_and_replace_other_line_breaks() -> None:
    target = Target("acme/x", "model", "branch", "main", 'a\\b"c\nd\re\u2028f\udcff')
    failure = TargetFailure(target, jid(1), "acme/x", "refs/heads/main", "", NOW, "why\\")
    figures = metrics.Figures(NOW, 0, 0, None, 0, 1, 0, 0, (metrics.TargetFigures(target, None, failure),))
    text = metrics.render(figures)
    assert text.splitlines()[-1] == ('gitea_hf_hook_target_last_failure_info{hub_repo="acme/x",repo_type="model",'
                                     'kind="branch",revision="a\\\\b\\"c\\nd\ufffde\ufffdf\ufffd",'
                                     f'job="{jid(1)}",commit="",reason="why\\\\"}} 1')
    read = samples(text)
    [labels] = [dict(k[1]) for k in read if k[0] == "gitea_hf_hook_target_last_failure_info"]
    assert labels["revision"] == 'a\\b"c\nd\ufffde\ufffdf\ufffd'
    assert read[("gitea_hf_hook_queue_oldest_age_seconds", ())] == 0.0  # an empty queue


def test_a_link_at_the_metrics_file_is_replaced_never_written_through(site: Site, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.write_text("root's file\n")
    site.metrics_file.symlink_to(outside)
    worker.loop(site.config, NOW, refuse_tags)
    assert outside.read_text() == "root's file\n"
    assert not site.metrics_file.is_symlink()
    assert site.metrics_file.read_text().startswith("# HELP gitea_hf_hook_last_pass_timestamp_seconds ")


def test_a_metrics_folder_that_is_a_link_is_logged_once_and_never_stops_the_worker(
        site: Site, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder = site.metrics_file.parent
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    folder.rmdir()
    folder.symlink_to(elsewhere)
    layout.enqueue(site.config.spool, make_job(1, created=NOW - 60))
    caplog.set_level(logging.INFO, logger="gitea_hf_hook.worker")

    assert worker.loop(site.config, NOW, refuse_tags).published == [jid(1)]
    worker.loop(site.config, NOW + 2, refuse_tags)
    folder.unlink()
    folder.mkdir()
    worker.loop(site.config, NOW + 4, refuse_tags)

    said = [r.getMessage() for r in caplog.records if "metrics_file" in r.getMessage()]
    assert said == [
        f"metrics_file {site.metrics_file} was not written: its folder {folder} is a symbolic link (set "
        "metrics_file to a path in the folder itself)",
        f"metrics_file {site.metrics_file} is written again",
    ]
    assert os.listdir(elsewhere) == []
    assert site.metrics_file.is_file()


def test_a_failure_is_recorded_beside_the_targets_state_and_changes_nothing_the_worker_reads(
        site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("time.time", lambda: NOW)
    layout.enqueue(site.config.spool, make_job(11, created=NOW - 350))
    worker.loop(site.config, NOW - 300, refuse_tags)
    target = make_job(11).target
    published = worker.read_state(site.config.spool, target)
    assert published is not None and published.job == jid(11)

    def refuse(config: Config, job: Job, state: TargetState | None) -> PublishResult:
        raise PublishError("the Hub answered 403: you cannot write to acme/bert-tiny", "give the token write access")

    layout.enqueue(site.config.spool, make_job(12, created=NOW - 200))
    worker.loop(site.config, NOW - 100, refuse)

    assert worker.read_state(site.config.spool, target) == published
    assert sorted(os.listdir(Path(site.config.spool, "state", "targets"))) == [
        f"{target_key(target)}.failure.json", f"{target_key(target)}.json"]
    [shown] = site.status()["targets"]
    assert (shown["last_success"]["job"], shown["last_failure"]["job"], shown["last_failure"]["reason"]) == (
        jid(11), jid(12), REFUSED)
    text = CliRunner().invoke(cli, ["--config", site.config.path, "status"]).output.splitlines()
    assert text[-4:] == [
        "targets: 1, 1 failing",
        "  acme/bert-tiny branch main",
        f"    last published: 2027-01-15T12:55:30Z (5m00s ago), job {jid(11)}, commit c000000",
        f"    last failed: 2027-01-15T12:58:50Z (1m40s ago), job {jid(12)}, commit c000000: {REFUSED}",
    ]

    layout.enqueue(site.config.spool, make_job(13, created=NOW - 50))
    worker.loop(site.config, NOW - 20, refuse_tags)
    text = CliRunner().invoke(cli, ["--config", site.config.path, "status"]).output.splitlines()
    assert text[-2:] == ["done: 2 jobs", "targets: 1, none failing"]  # published since it failed


def test_a_failed_job_for_a_target_the_config_does_not_map_names_no_target(site: Site) -> None:
    # Written by Gitea's user, not by our hooks: a target the rule does not map, and a ref git would refuse.
    strays = [make_job(1, hub_repo="acme/elsewhere", created=NOW - 60),
              make_job(2, revision="main 1", created=NOW - 50)]
    for stray in strays:
        layout.enqueue(site.config.spool, stray)
    worker.loop(site.config, NOW, refuse_tags)

    assert site.status()["failures"] == 2
    assert site.status()["targets"] == []
    # Nothing is written for them in the worker's own state: Gitea's user could otherwise fill it.
    assert not any(Path(failure_path(site.config.spool, target_key(s.target))).exists() for s in strays)
    assert "gitea_hf_hook_target_last_failure_info{" not in site.metrics_file.read_text()


def refuse(config: Config, job: Job, state: TargetState | None) -> PublishResult:
    raise PublishError("the Hub answered 403: you cannot write", "give the token write access")


def test_a_forged_job_cannot_hide_a_targets_real_failure(site: Site) -> None:
    layout.enqueue(site.config.spool, make_job(11, created=NOW - 350))
    worker.loop(site.config, NOW - 300, refuse)
    [before] = site.status()["targets"]
    assert before["last_failure"]["reason"].startswith("the Hub answered 403")
    # Gitea's user queues a job for the same target from a repository no rule maps to it.
    forged = make_job(12, created=NOW - 100)
    layout.enqueue(site.config.spool, forged._replace(request=forged.request._replace(repository="zz/zz")))
    worker.loop(site.config, NOW - 50, refuse)
    assert site.status()["failures"] == 2
    [after] = site.status()["targets"]
    assert (after["label"], after["last_failure"]["job"], after["last_failure"]["reason"]) == (
        before["label"], jid(11), before["last_failure"]["reason"])


def test_state_files_that_do_not_parse_or_name_another_target_are_left_out(site: Site) -> None:
    layout.enqueue(site.config.spool, make_job(11, created=NOW - 350))
    worker.loop(site.config, NOW - 300, refuse_tags)
    targets = Path(site.config.spool, "state", "targets")
    [good] = targets.iterdir()
    (targets / ("0" * 32 + ".json")).write_bytes(good.read_bytes())  # speaks of another key's target
    (targets / ("1" * 32 + ".failure.json")).write_bytes(b"{oops")
    (targets / "notes.txt").write_text("an admin's notes\n")
    assert [t["label"] for t in site.status()["targets"]] == ["acme/bert-tiny branch main"]
