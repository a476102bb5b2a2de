"""Concurrency keys on real workers: the recorded start/end order shows the overlap."""

from __future__ import annotations

import uuid

import pytest

from jobsys import enqueue, enqueue_many
from jobsys.engine.dispatch import Dispatch, Why
from tests.conftest import Env, StartWorkers
from tests.support.wait import wait_until

pytestmark = pytest.mark.integration


def most_at_once(events: list[str]) -> int:
    """The most jobs between their start and end at any point of the recorded order."""
    running, most = 0, 0
    for event in events:
        running += 1 if event.startswith("start:") else -1
        most = max(most, running)
    return most


def events(env: Env, key: str) -> list[str]:
    return [e.decode() for e in env.redis.lrange(f"{key}:events", 0, -1)]


def attempts(env: Env, kind: str) -> tuple[int, int, int]:
    with env.store.durable.connect() as conn:
        row = conn.exec_driver_sql(
            "SELECT count(*), sum(attempt), sum(jsonb_array_length(errors)) FROM jobs"
            " WHERE kind = %(k)s AND status = 'succeeded'",
            {"k": kind},
        ).one()
    return int(row[0]), int(row[1] or 0), int(row[2] or 0)


@pytest.mark.parametrize(("kind", "limit"), [("test.keyed_one", 1), ("test.keyed_three", 3)])
def test_jobs_sharing_a_key_never_overlap_past_its_concurrency(
    jobsys_env: Env, start_workers: StartWorkers, kind: str, limit: int
) -> None:
    # Given a node of 4 pool processes, and 50 jobs sharing one key (from two users)
    start_workers(1, concurrency=4)
    users = ["u1", "u2"]
    jobs = [(users[i % 2], {"key": "k", "tag": str(i), "seconds": 0.03}) for i in range(50)]

    # When they are enqueued at once
    enqueue_many(kind, jobs)

    # Then all ran, once each, never more than the key's concurrency at a time
    wait_until(lambda: len(events(jobsys_env, "k")) == 100, timeout=120, what="50 jobs to run")
    order = events(jobsys_env, "k")
    assert sorted(e for e in order if e.startswith("start:")) == sorted(
        f"start:{i}" for i in range(50)
    )
    assert most_at_once(order) == limit
    # And waiting for the key spent no attempt and left no error (no busy retries)
    wait_until(lambda: attempts(jobsys_env, kind)[0] == 50, timeout=30, what="rows to settle")
    assert attempts(jobsys_env, kind) == (50, 50, 0)


def test_a_holder_that_ends_hands_its_key_to_the_next_job_without_waiting_for_a_recheck(
    jobsys_env: Env, start_workers: StartWorkers
) -> None:
    # Given a node that looks again at jobs waiting for a key only every 60 s
    start_workers(1, concurrency=2, env={"JOBSYS_KEY_RECHECK": "60"})
    users = ["u1", "u2"]
    jobs = [(users[i % 2], {"key": "h", "tag": str(i), "seconds": 0.01}) for i in range(8)]

    # When 8 jobs of one key of concurrency 1 (from two users) are enqueued at once
    enqueue_many("test.keyed_one", jobs)

    # Then each holder's end handed the key on: all 8 ran one at a time well before a
    # single recheck (7 hand-overs by recheck alone would take 7 minutes)
    wait_until(lambda: len(events(jobsys_env, "h")) == 16, timeout=45, what="8 jobs to run")
    assert most_at_once(events(jobsys_env, "h")) == 1
    wait_until(lambda: attempts(jobsys_env, "test.keyed_one")[0] == 8, timeout=30, what="rows")
    assert attempts(jobsys_env, "test.keyed_one") == (8, 8, 0)


def test_a_stale_copy_of_a_waiting_jobs_message_does_not_pass_over_its_key(
    jobsys_env: Env, start_workers: StartWorkers
) -> None:
    # Given a node with idle pool processes, a job holding a key of concurrency 1 for
    # 3 s, and a second job of that key waiting for it in the backlog
    start_workers(1, concurrency=4)
    enqueue("test.keyed_one", user_id="u1", payload={"key": "st", "tag": "holder", "seconds": 3.0})
    wait_until(lambda: events(jobsys_env, "st") == ["start:holder"], timeout=30, what="holder")
    waiter = enqueue(
        "test.keyed_one", user_id="u2", payload={"key": "st", "tag": "waiter", "seconds": 0.01}
    )
    waiter_id = uuid.UUID(waiter.id)
    assert not jobsys_env.store.dispatched(waiter_id)

    # When a stale copy of a message of the waiting job reaches the broker (as a
    # broker restores an old attempt's unacknowledged message)
    job = jobsys_env.store.get_job(waiter_id)
    jobsys_env.runtime.dispatcher.send(Dispatch.of_job(job, Why.SWEEP))

    # Then the copy is dropped: the waiting job starts only once the holder ended, and
    # runs once
    wait_until(lambda: len(events(jobsys_env, "st")) == 4, timeout=60, what="both jobs")
    assert events(jobsys_env, "st") == ["start:holder", "end:holder", "start:waiter", "end:waiter"]
    wait_until(lambda: attempts(jobsys_env, "test.keyed_one")[0] == 2, timeout=30, what="rows")
    assert attempts(jobsys_env, "test.keyed_one") == (2, 2, 0)
