"""Scenarios 4 and 5: the hard time limit, and a message delivered twice."""

from __future__ import annotations

import uuid

import pytest

from jobsys import Status
from jobsys.engine.dispatch import Dispatch, Why
from tests.conftest import Env, StartWorkers
from tests.support import kinds
from tests.support.wait import wait_until

pytestmark = pytest.mark.integration


def test_a_job_past_its_hard_limit_is_killed_retried_and_dead_lettered(
    jobsys_env: Env, start_workers: StartWorkers
) -> None:
    # Given a worker and a handler that ignores its 1 s soft limit (hard limit 2 s, 2 attempts)
    start_workers(1)

    # When it runs
    job_id = uuid.UUID(kinds.overrun.delay("user-1", key="overrun").id)
    job = wait_until(lambda: jobsys_env.finished(job_id), timeout=40, what="the job to die")

    # Then each attempt was killed at the hard limit, after the soft one was ignored
    assert jobsys_env.redis.get("overrun:calls") == b"2"
    assert jobsys_env.redis.get("overrun:soft") == b"2"
    assert job.status is Status.DEAD
    assert job.attempt == 2
    assert [(e["attempt"], e["reason"], e["type"]) for e in job.errors] == [
        (1, "timeout", "TimeLimitExceeded"),
        (2, "timeout", "TimeLimitExceeded"),
    ]
    for e in job.errors:
        # The pool's timer starts a moment before the claim records started_at.
        ran = _seconds(e["started_at"], e["failed_at"])
        assert 1.5 <= ran < 10.0, f"attempt {e['attempt']} ran {ran:.2f}s"

    # And it was dead-lettered as a timeout
    (letter,) = jobsys_env.store.list_dead_letters()
    assert (letter.job_id, letter.reason, letter.exc_type) == (
        job_id,
        "timeout",
        "TimeLimitExceeded",
    )
    assert len(letter.attempts) == 2


def test_the_same_message_published_twice_runs_the_handler_once(
    jobsys_env: Env, start_workers: StartWorkers
) -> None:
    # Given a job admitted from the backlog whose message was published a second time
    job_id = uuid.UUID(kinds.slow.delay("user-1", key="dup", seconds=0.5).id)
    assert [r["id"] for r in jobsys_env.store.promote("default", 1).rows] == [job_id]
    for why in (Why.ADMIT, Why.SWEEP):
        again = Dispatch(
            job_id=job_id, user_id="user-1", kind="test.slow", queue="default", why=why
        )
        jobsys_env.runtime.dispatcher.send(again)
    assert jobsys_env.queue_length() == 2

    # When two worker processes consume both messages
    start_workers(1, concurrency=2)
    job = wait_until(lambda: jobsys_env.finished(job_id), timeout=30, what="the job to finish")
    wait_until(
        lambda: jobsys_env.queue_length() == 0 and jobsys_env.unacked() == 0,
        timeout=30,
        what="every copy of the message to be consumed and acknowledged",
    )

    # Then the handler ran once, as attempt 1
    assert job.status is Status.SUCCEEDED
    assert job.attempt == 1
    assert jobsys_env.redis.lrange("dup:runs", 0, -1) == [f"1:{job.result['pid']}".encode()]
    assert jobsys_env.redis.get("dup:successes") == b"1"


def _seconds(start: str, end: str) -> float:
    from datetime import datetime

    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
