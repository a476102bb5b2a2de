"""Real attempts in real workers record their cost with their outcome; the Google
counters a node serves count exactly the requests and units the emulator saw."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from jobsys.store import Status
from tests.conftest import Env, StartWorkers
from tests.integration.pipeline_support import (
    Pipeline,
    pipeline_factory,  # noqa: F401  (fixture)
)
from tests.integration.test_observability import (
    EXPECTED_JOBS,
    free_port,
    named,
    run_mixed_jobs,
    scrape,
)
from tests.support.wait import wait_until

pytestmark = pytest.mark.integration


def attempt_rows(env: Env, where: str = "true") -> list[dict[str, Any]]:
    with env.store.durable.connect() as conn:
        rows = conn.exec_driver_sql(f"SELECT * FROM attempts WHERE {where} ORDER BY id")
        return [dict(r) for r in rows.mappings()]


def test_each_attempt_in_a_worker_records_its_outcome_and_cost(
    jobsys_env: Env, start_workers: StartWorkers
) -> None:
    # Given a node of two prefork children
    start_workers(1, concurrency=2)

    # When jobs succeed, retry and die
    jobs = run_mixed_jobs(jobsys_env)
    assert [j.status for j in jobs] == [Status.SUCCEEDED] * 4 + [Status.DEAD]

    # Then one row per attempt, with the outcome that the statement recorded
    rows = attempt_rows(jobsys_env)
    outcomes = Counter((r["kind"], r["outcome"]) for r in rows)
    assert outcomes == EXPECTED_JOBS
    # And each attempt's number, reason, enqueue time and due time are the job's
    flaky = [r for r in rows if r["kind"] == "test.flaky"]
    assert [(r["attempt"], r["outcome"]) for r in flaky] == [
        (1, "retried"),
        (2, "retried"),
        (3, "succeeded"),
    ]
    assert [r["reason"] for r in rows if r["outcome"] == "dead"] == ["bug"]
    for r in rows:
        assert r["created_at"] <= r["due_at"] <= r["started_at"] <= r["finished_at"]
        # And its cost measured in the child that ran it: CPU and wall time, no Google calls
        assert r["cpu_s"] > 0 and r["wall_s"] > 0, r
        assert (r["google_requests"], r["quota_units"]) == (0, 0)


def emulator_counts(p: Pipeline, email: str) -> dict[str, dict[str, int]]:
    found: dict[str, dict[str, int]] = p.emulator.stats()["users"][email]
    return found


def test_a_sync_records_the_google_requests_and_units_the_emulator_counted(
    jobsys_env: Env,
    start_workers: StartWorkers,
    pipeline_factory: Any,  # noqa: F811
    tmp_path: Path,
) -> None:
    # Given one user's small mailbox and calendar, and a node serving /metrics
    p: Pipeline = pipeline_factory(users=1, messages_per_user=12, events_per_user=4)
    ((email, user_id),) = p.users.items()
    port = free_port()
    metrics = {"JOBSYS_METRICS_PORT": str(port), "JOBSYS_METRICS_DIR": str(tmp_path / "m")}
    start_workers(1, concurrency=2, env={**p.worker_env, **metrics})

    # When the user is synced in full, and every job of it has ended
    run = p.run(user_id, full=True)
    assert run["status"] == "succeeded", run
    wait_until(
        lambda: not (p.job_statuses().keys() & {"queued", "running"}),
        timeout=60,
        what="every job to end",
    )

    # Then the attempts' Google requests and units add up to what the emulator counted
    counted = emulator_counts(p, email)
    requests = sum(c["requests"] for c in counted.values())
    units = sum(c["units"] for c in counted.values())
    assert requests > 0 and units > requests  # messages.list and .get cost 5 units each
    rows = attempt_rows(jobsys_env, f"user_id = '{user_id}'")
    assert sum(r["google_requests"] for r in rows) == requests
    assert sum(r["quota_units"] for r in rows) == units
    assert all(r["cpu_s"] > 0 and r["wall_s"] > 0 for r in rows)

    # And the node's counters give the same figures by method, all answered 200
    samples = scrape(port)
    by_method = {
        (labels["api"], labels["method"], labels["status"]): v
        for labels, v in (
            (dict(k), v) for k, v in named(samples, "jobsys_google_requests_total").items()
        )
    }
    assert by_method == {
        (method.partition(".")[0], method, "200"): float(c["requests"])
        for method, c in counted.items()
    }
    units_by_api: Counter[str] = Counter()
    for method, c in counted.items():
        units_by_api[method.partition(".")[0]] += c["units"]
    quota = {dict(k)["api"]: v for k, v in named(samples, "jobsys_quota_units_total").items()}
    assert quota == {api: float(n) for api, n in units_by_api.items()}
