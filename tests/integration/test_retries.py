"""Scenarios 2 and 3: retries with backoff, dead letters, and a retry from the DLQ."""

from __future__ import annotations

import json
import uuid
from datetime import datetime

import pytest

from jobsys import Status
from tests.conftest import Env, StartWorkers
from tests.support import kinds
from tests.support.wait import wait_until

pytestmark = pytest.mark.integration

RETRY_BASE = 0.5  # the workers' JOBSYS_RETRY_BASE in these tests
SLACK = 2.0  # delivery, claim and clock granularity on a loaded 2-core machine


def test_a_handler_failing_twice_succeeds_on_its_third_attempt_after_backoff(
    jobsys_env: Env, start_workers: StartWorkers
) -> None:
    # Given a worker whose retries back off from RETRY_BASE seconds
    start_workers(1, env={"JOBSYS_RETRY_BASE": str(RETRY_BASE)})

    # When a job fails twice, then succeeds
    job_id = uuid.UUID(kinds.flaky.delay("user-1", key="flaky", failures=2).id)
    job = wait_until(lambda: jobsys_env.finished(job_id), timeout=30, what="the job to finish")

    # Then it succeeded on its third attempt with both failures in its history
    assert job.status is Status.SUCCEEDED
    assert job.attempt == 3
    assert job.result == {"calls": 3}
    assert [(e["attempt"], e["type"], e["reason"]) for e in job.errors] == [
        (1, "JobError", "flaky"),
        (2, "JobError", "flaky"),
    ]
    assert jobsys_env.redis.get("flaky:calls") == b"3"

    # And each retry waited out its backoff: full jitter draws the n-th delay from
    # [0, base * 2**(n-1)], so the gap is bounded above, and an attempt never
    # starts before the run_after its retry set (the row keeps the last one).
    starts = [_t(e["started_at"]) for e in job.errors] + [job.started_at]
    failures = [_t(e["failed_at"]) for e in job.errors]
    for n, (failed, next_start) in enumerate(zip(failures, starts[1:], strict=True), start=1):
        gap = (next_start - failed).total_seconds()
        assert 0 <= gap <= RETRY_BASE * 2 ** (n - 1) + SLACK, f"retry {n} waited {gap:.3f}s"
    assert starts == sorted(starts)
    assert failures[-1] <= job.run_after <= job.started_at
    assert (job.run_after - failures[-1]).total_seconds() <= RETRY_BASE * 2 + 0.5


def test_an_always_failing_job_is_dead_lettered_and_runs_again_when_retried(
    jobsys_env: Env, start_workers: StartWorkers
) -> None:
    # Given a handler that fails on every attempt (max_attempts=3)
    jobsys_env.redis.set("dlq:broken", 1)
    start_workers(1)

    # When its job runs
    job_id = uuid.UUID(kinds.broken.delay("user-1", key="dlq").id)
    job = wait_until(lambda: jobsys_env.finished(job_id), timeout=30, what="the job to die")

    # Then it is dead after max_attempts, with one dead letter holding every attempt
    assert job.status is Status.DEAD
    assert job.attempt == 3
    assert jobsys_env.redis.get("dlq:calls") == b"3"
    (letter,) = jobsys_env.store.list_dead_letters()
    assert letter.job_id == job_id
    assert (letter.kind, letter.user_id, letter.payload) == (
        "test.broken",
        "user-1",
        {"key": "dlq"},
    )
    assert (letter.exc_type, letter.reason, letter.retryable) == ("RuntimeError", "bug", True)
    assert letter.message == "still broken on attempt 3"
    assert "RuntimeError: still broken on attempt 3" in letter.traceback
    assert [(a["attempt"], a["type"], a["message"]) for a in letter.attempts] == [
        (n, "RuntimeError", f"still broken on attempt {n}") for n in (1, 2, 3)
    ]
    assert all(a["worker"] and a["started_at"] and a["failed_at"] for a in letter.attempts)
    assert letter.retried_at is None

    # When the bug is fixed and the letter is retried from the CLI
    jobsys_env.redis.delete("dlq:broken")
    out = jobsys_env.cli("dlq", "retry", str(letter.id), "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"job_id": str(job_id)}

    # Then the same job runs again with a fresh set of attempts, and succeeds
    job = wait_until(
        lambda: jobsys_env.finished(job_id) if jobsys_env.redis.get("dlq:calls") == b"4" else None,
        timeout=30,
        what="the retried job to finish",
    )
    assert job.status is Status.SUCCEEDED
    assert (job.attempt, job.result, job.errors) == (1, {"fixed_on_attempt": 1}, [])
    assert jobsys_env.store.get_dead_letter(letter.id).retried_at is not None

    # And a second retry of the same letter is refused: the job is no longer dead
    again = jobsys_env.cli("dlq", "retry", str(letter.id))
    assert again.returncode != 0
    assert "succeeded" in again.stderr + again.stdout


def _t(value: str) -> datetime:
    return datetime.fromisoformat(value)
