"""Logging configuration, job log context, job metrics and the multiprocess folder, without
services."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import structlog
from prometheus_client import REGISTRY

from jobsys.config import Settings
from jobsys.engine.hooks import Attempt, Outcome, Recorded
from jobsys.engine.runtime import Runtime
from jobsys.guards.metrics import per_user, scope
from jobsys.interfaces import obs
from jobsys.interfaces.metrics import FleetGauges, JobMetrics
from jobsys.store import Job, Status
from jobsys.store.memory import MemoryStore


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """Logging configured into a buffer for the test, put back afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    stream = io.StringIO()
    obs.configure_logging(logging.INFO, fmt="json", stream=stream)
    try:
        yield stream
    finally:
        structlog.contextvars.clear_contextvars()
        root.handlers, root.level = handlers, level
        structlog.reset_defaults()


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def a_job(**changes: object) -> Job:
    now = datetime.now(UTC)
    job = Job(
        id=uuid.uuid4(), user_id="u-1", kind="test.echo", queue="default", priority=0,
        payload={"run_id": "r-9"}, status=Status.RUNNING, attempt=2, max_attempts=5,
        unique_key=None, run_after=now - timedelta(seconds=3), lease_until=None, worker="w1",
        worker_pid=1, cancel_requested=False, result=None, errors=[], created_at=now,
        started_at=now, finished_at=None,
    )  # fmt: skip
    return job.evolve(**changes)


def test_structlog_events_and_stdlib_records_render_as_the_same_json(
    captured: io.StringIO,
) -> None:
    # Given logging configured in JSON mode
    # When structlog and a standard-library logger (as Celery's) both log
    structlog.get_logger("jobsys.engine").info("job.retry", delay=0.5)
    logging.getLogger("celery.app.trace").warning("Task %s retry", "t")
    logging.getLogger("celery.app.trace").debug("below the level")

    # Then each is one JSON line with its own level, its logger, one timestamp and the pid
    first, second = lines(captured)
    assert (first["event"], first["level"], first["logger"], first["delay"]) == (
        "job.retry", "info", "jobsys.engine", 0.5,
    )  # fmt: skip
    assert (second["event"], second["level"], second["logger"]) == (
        "Task t retry", "warning", "celery.app.trace",
    )  # fmt: skip
    assert {"timestamp", "pid"} <= set(first) & set(second)


def test_a_claimed_attempt_binds_its_ids_to_every_line_until_cleared(
    captured: io.StringIO,
) -> None:
    # Given a claimed attempt of a pipeline step (its payload names the run)
    job = a_job()
    obs.JobLogContext().after_claim(Attempt(job=job, worker="w1"))

    # When the handler and Celery log, then the task ends and something else logs
    structlog.get_logger("x").info("inside")
    logging.getLogger("celery").info("also inside")
    structlog.contextvars.clear_contextvars()
    structlog.get_logger("x").info("outside")

    # Then the lines inside carry the job's ids and the one outside none
    inside, also, outside = lines(captured)
    ids = {"job_id": str(job.id), "user_id": "u-1", "kind": "test.echo", "attempt": 2}
    wanted = ids | {"run_id": "r-9"}
    assert {k: inside.get(k) for k in wanted} == wanted
    assert {k: also.get(k) for k in wanted} == wanted
    assert "job_id" not in outside


def test_the_format_follows_the_setting_else_the_terminal() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    plain = Settings.from_variables({})
    assert obs.log_format(plain, io.StringIO()) == "json"
    assert obs.log_format(plain, Tty()) == "console"
    forced = Settings.from_variables({"JOBSYS_LOG_FORMAT": "json"})
    assert obs.log_format(forced, Tty()) == "json"


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_the_job_metrics_hook_counts_outcomes_and_times_handlers_and_starts() -> None:
    # Given a hook and a claimed job that was due three seconds before its start
    hook, job = JobMetrics(), a_job(kind="unit.metrics")
    before = {o: sample("jobsys_jobs_total", kind="unit.metrics", outcome=o) for o in Outcome}

    # When it is claimed, its handler runs, and four outcomes are recorded (one lost)
    hook.after_claim(Attempt(job=job, worker="w1"))
    assert hook.around_handler(Attempt(job=job, worker="w1"), lambda: 42) == 42
    for outcome in (Outcome.RETRIED, Outcome.SUCCEEDED, Outcome.LOST, Outcome.DEAD):
        hook.after_record(Recorded(job=job, outcome=outcome))

    # Then each recorded outcome counts once, a lost one not at all
    after = {o: sample("jobsys_jobs_total", kind="unit.metrics", outcome=o) for o in Outcome}
    assert {o: after[o] - before[o] for o in Outcome if after[o] != before[o]} == {
        Outcome.RETRIED: 1.0, Outcome.SUCCEEDED: 1.0, Outcome.DEAD: 1.0,
    }  # fmt: skip
    assert sample("jobsys_job_duration_seconds_count", kind="unit.metrics") == 1.0
    latency = "jobsys_job_start_latency_seconds"
    assert sample(f"{latency}_count", kind="unit.metrics", queue="default") == 1.0
    assert sample(f"{latency}_bucket", kind="unit.metrics", queue="default", le="2.5") == 0.0
    assert sample(f"{latency}_bucket", kind="unit.metrics", queue="default", le="5.0") == 1.0


def test_a_lease_the_sweeper_settles_counts_as_expired() -> None:
    before = sample("jobsys_lease_expired_total")
    JobMetrics().after_record(Recorded(job=a_job(), outcome=Outcome.RETRIED, actor="sweeper"))
    JobMetrics().after_record(Recorded(job=a_job(), outcome=Outcome.RETRIED, actor="w1"))
    assert sample("jobsys_lease_expired_total") - before == 1.0


def test_fleet_gauges_on_a_store_without_postgresql_report_empty_families() -> None:
    rt = Runtime(Settings.from_variables({}), store=MemoryStore())
    families = {f.name: f.samples for f in FleetGauges(rt).collect()}
    assert families == {
        "jobsys_queue_depth": [],
        "jobsys_oldest_queued_seconds": [],
        "jobsys_dead_letters": [],
        "jobsys_workers": [],
    }


def test_guard_labels_fold_a_users_id_away() -> None:
    assert scope("google:user:ann@example.com") == "google:user"
    assert scope("google") == "google"
    assert per_user("google:user:u-1") and not per_user("google")


def test_a_node_folder_is_emptied_and_named_after_the_node(tmp_path: Path) -> None:
    # Given a folder a previous run of the node left files in
    settings = Settings.from_variables({"JOBSYS_METRICS_DIR": str(tmp_path)})
    folder = obs.node_dir(settings, "w1@host/x")
    folder.mkdir(parents=True)
    (folder / "counter_1.db").write_bytes(b"old")

    # When the node prepares it (in a child process: it sets the process's environment)
    code = f"from pathlib import Path; from jobsys.interfaces import obs; obs.prepare_multiprocess(Path({str(folder)!r})); import os; print(os.environ['PROMETHEUS_MULTIPROC_DIR'])"  # noqa: E501
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)

    # Then it is empty, and the process keeps its metrics there
    assert folder.name == "w1@host_x"
    assert list(folder.iterdir()) == []
    assert out.stdout.strip() == str(folder)


def test_values_made_after_the_switch_are_kept_in_the_folder(tmp_path: Path) -> None:
    # Given a process that imported the guards' metrics (as Celery imports the job
    # modules before celeryd_init), then prepared a node's folder
    code = (
        "import os; from pathlib import Path; import jobsys.guards.metrics as m;"
        "from jobsys.interfaces import obs;"
        f"obs.prepare_multiprocess(Path({str(tmp_path / 'n')!r}));"
        "m.STORAGE_ERRORS.labels('unit').inc(); print(os.getpid())"
    )
    # When a guard counts something
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)

    # Then its count is in the folder, in the process's own file
    assert [p.name for p in (tmp_path / "n").iterdir()] == [f"counter_{out.stdout.strip()}.db"]
