"""Scenario 1: ``.delay()`` stores the row before publishing; a worker runs the job."""

from __future__ import annotations

import json
import uuid

import pytest

from jobsys import Status
from tests.conftest import Env, StartWorkers, point_app_at
from tests.support import kinds
from tests.support.wait import wait_until

pytestmark = pytest.mark.integration


def test_delay_stores_the_row_and_a_worker_admits_and_runs_it(
    jobsys_env: Env, start_workers: StartWorkers
) -> None:
    # Given no worker is running
    # When a job is submitted with .delay()
    result = kinds.echo.delay("user-1", value={"n": 42})
    job_id = uuid.UUID(result.id)

    # Then the row is queued in Postgres's backlog, and no message exists yet
    job = jobsys_env.store.get_job(job_id)
    assert (job.status, job.attempt, job.kind, job.user_id) == (
        Status.QUEUED, 0, "test.echo", "user-1",
    )  # fmt: skip
    assert job.payload == {"value": {"n": 42}}
    assert jobsys_env.queue_length() == 0

    # When a worker starts
    start_workers(1)

    # Then it runs the job once and records its result
    done = wait_until(lambda: jobsys_env.finished(job_id), timeout=30, what="the job to succeed")
    assert done.status is Status.SUCCEEDED
    assert done.attempt == 1
    assert done.result == {"echo": {"n": 42}, "attempt": 1}
    assert done.errors == []
    assert done.finished_at is not None and done.started_at is not None
    assert done.created_at <= done.started_at <= done.finished_at


def test_cli_shows_a_finished_job_as_json(jobsys_env: Env, start_workers: StartWorkers) -> None:
    # Given a job that a worker ran to completion
    start_workers(1)
    job_id = uuid.UUID(kinds.echo.delay("user-2", value="hello").id)
    wait_until(lambda: jobsys_env.finished(job_id), timeout=30, what="the job to succeed")

    # When `jobsys job ID --json` is run against the same servers
    out = jobsys_env.cli("job", str(job_id), "--json")

    # Then it prints the job, status and result included
    assert out.returncode == 0, out.stderr
    shown = json.loads(out.stdout)
    assert shown["id"] == str(job_id)
    assert shown["status"] == "succeeded"
    assert shown["attempt"] == 1
    assert shown["result"] == {"echo": "hello", "attempt": 1}


def test_enqueues_while_the_broker_is_down_return_and_each_job_runs_once_later(
    jobsys_env: Env, start_workers: StartWorkers
) -> None:
    # Given a broker that cannot be reached
    point_app_at("redis://127.0.0.1:1/0")
    try:
        # When 100 jobs are enqueued with .delay()
        results = [kinds.flaky.delay("user-3", key=f"down-{i}", failures=0) for i in range(100)]
    finally:
        point_app_at(jobsys_env.broker_url)

    # Then every call returned, each job waits in PostgreSQL, and no message exists
    jobs = jobsys_env.store.list_jobs(limit=200)
    assert {j.id for j in jobs} == {r.job_id for r in results}
    assert {j.status for j in jobs} == {Status.QUEUED}
    assert jobsys_env.queue_length() == 0

    # And once a worker runs with the broker back, each job runs exactly once
    start_workers(1)
    wait_until(
        lambda: all(jobsys_env.finished(r.job_id) for r in results),
        timeout=60,
        what="every job to succeed",
    )
    calls = [jobsys_env.redis.get(f"down-{i}:calls") for i in range(100)]
    assert calls == [b"1"] * 100
