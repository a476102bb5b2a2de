"""Fair scheduling between users: admission from PostgreSQL's backlog, seen from the start order.

Each job of ``test.stamp`` appends its tag to one Redis list when it starts,
so the tests read the order in which jobs started, not the time they took.
"""

from __future__ import annotations

import uuid
from collections import Counter

import pytest

from jobsys import enqueue, enqueue_many
from jobsys.engine.admission import Admitter, queue_size
from jobsys.engine.dispatch import Dispatch, Why
from jobsys.engine.operations import retry_dead_letter
from tests.conftest import Env, StartWorkers
from tests.contract.base import dead
from tests.support.wait import wait_until

pytestmark = pytest.mark.integration

# A node keeps at most this many messages ready per queue in the tests below, so a
# waiting job is behind at most that many, plus one reserved per pool process.
READY_MAX = 8
CONCURRENCY = 2
BOUND = READY_MAX + 2 * CONCURRENCY
# A job of a user that starts waiting goes to the buffer's front: behind what the pool
# processes hold, and what they take while its catch-up promotion runs.
FRONT_BOUND = 4 * CONCURRENCY


def starts(env: Env, key: str) -> list[str]:
    return [t.decode() for t in env.redis.lrange(f"{key}:starts", 0, -1)]


def stamps(
    user: str, key: str, n: int, seconds: float = 0.0
) -> list[tuple[str, dict[str, object]]]:
    return [(user, {"key": key, "tag": user, "seconds": seconds}) for _ in range(n)]


def light_jobs(env: Env, key: str, users: int = 5) -> tuple[list[int], list[int]]:
    """Light users enqueue one job each, each once the one before started: the heavy jobs
    that started between each one's enqueue and its start, and the messages the broker
    held at each enqueue."""
    buffered = []
    for i in range(users):
        light = f"light-{i}"
        buffered.append(env.queue_length())
        env.redis.rpush(f"{key}:starts", f"enqueued:{light}")
        enqueue("test.stamp", user_id=light, payload={"key": key, "tag": light})
        wait_until(lambda tag=light: tag in starts(env, key), timeout=60, what=f"{light} to start")
    order = starts(env, key)
    ahead = [
        order[order.index(f"enqueued:light-{i}") : order.index(f"light-{i}")].count("heavy")
        for i in range(users)
    ]
    return ahead, buffered


def test_the_ready_buffer_is_counted_over_every_priority_list(jobsys_env: Env) -> None:
    # Given four messages of three priorities in the broker (a Redis list for each)
    messages = [
        Dispatch(
            job_id=uuid.uuid4(),
            user_id="u",
            kind="test.stamp",
            queue="default",
            why=Why.ADMIT,
            priority=priority,
        )
        for priority in (0, 0, 4, 9)
    ]
    jobsys_env.runtime.dispatcher.send_many(messages)

    # Then the promoter counts the four, as the lists hold them
    assert jobsys_env.queue_length() == 4
    assert queue_size(jobsys_env.runtime, "default") == 4
    assert queue_size(jobsys_env.runtime, "other") == 0


def test_a_light_users_job_starts_behind_at_most_a_buffer_of_a_heavy_users_flood(
    jobsys_env: Env, start_workers: StartWorkers
) -> None:
    # Given one node, and a heavy user with 2,000 jobs of 10 ms queued
    start_workers(1, concurrency=CONCURRENCY, env={"JOBSYS_READY_MAX": str(READY_MAX)})
    enqueue_many("test.stamp", stamps("heavy", "nn", 2000, 0.01))
    wait_until(lambda: len(starts(jobsys_env, "nn")) >= 50, timeout=60, what="the flood to run")

    # When five light users enqueue one job each, one after the other
    ahead, _ = light_jobs(jobsys_env, "nn")

    # Then each started after at most a ready buffer of heavy jobs queued before it
    assert max(ahead) <= BOUND, ahead
    # And the heavy user's flood was still waiting, far from done
    assert starts(jobsys_env, "nn").count("heavy") < 1000


def test_messages_published_at_the_front_are_taken_next(jobsys_env: Env) -> None:
    # Given two messages in the broker
    def message(user: str) -> Dispatch:
        return Dispatch(
            job_id=uuid.uuid4(), user_id=user, kind="test.stamp", queue="default", why=Why.ADMIT
        )

    dispatcher = jobsys_env.runtime.dispatcher
    dispatcher.send_many([message("back-1"), message("back-2")])

    # When three more are published, two of them at the front
    more = [message("front-1"), message("back-3"), message("front-2")]
    dispatcher.send_many(more, ahead={more[0].job_id, more[2].job_id})

    # Then the consumer takes those two first, in their order, then the others in theirs
    with jobsys_env.runtime.app.connection_for_read() as conn:
        channel = conn.default_channel
        taken = [channel.basic_get("default", no_ack=True) for _ in range(5)]
    assert [m.payload[0][0] for m in taken] == ["front-1", "front-2", "back-1", "back-2", "back-3"]


def test_a_light_users_job_goes_ahead_of_a_long_buffer_of_a_heavy_users_flood(
    jobsys_env: Env, start_workers: StartWorkers
) -> None:
    # Given one node that keeps some 300 of a heavy user's 10 ms jobs in the broker
    env = {"JOBSYS_READY_MIN": "300", "JOBSYS_READY_MAX": "400"}
    start_workers(1, concurrency=CONCURRENCY, env=env)
    enqueue_many("test.stamp", stamps("heavy", "fr", 3000, 0.01))
    wait_until(lambda: len(starts(jobsys_env, "fr")) >= 50, timeout=60, what="the flood to run")

    # When five light users enqueue one job each, one after the other
    ahead, buffered = light_jobs(jobsys_env, "fr")

    # Then each started behind the heavy jobs its node's processes held and those that
    # started while its catch-up ran, not behind the buffer of the heavy user's jobs
    assert max(ahead) <= FRONT_BOUND, (ahead, buffered)
    assert min(buffered) > 100, buffered


def test_a_bulk_dead_letter_retry_takes_its_users_share_not_the_whole_broker(
    jobsys_env: Env, start_workers: StartWorkers
) -> None:
    # Given a heavy user with 600 dead letters of 50 ms jobs, all retried at once (long
    # enough that retrying them one by one ends while most still wait)
    payload = {"key": "dl", "tag": "heavy", "seconds": 0.05}
    letters = [
        dead(jobsys_env.store, user_id="heavy", kind="test.stamp", payload=payload)[1]
        for _ in range(600)
    ]
    start_workers(1, concurrency=CONCURRENCY, env={"JOBSYS_READY_MAX": str(READY_MAX)})
    for letter in letters:
        retry_dead_letter(jobsys_env.runtime, letter, actor="op")
    wait_until(lambda: len(starts(jobsys_env, "dl")) >= 20, timeout=60, what="the retries to run")

    # When a light user enqueues one job
    jobsys_env.redis.rpush("dl:starts", "enqueued:light")
    enqueue("test.stamp", user_id="light", payload={"key": "dl", "tag": "light"})
    wait_until(lambda: "light" in starts(jobsys_env, "dl"), timeout=60, what="light to start")

    # Then it started after at most a ready buffer of the retried jobs, not all of them
    order = starts(jobsys_env, "dl")
    ahead = order[order.index("enqueued:light") : order.index("light")].count("heavy")
    assert ahead <= BOUND, ahead
    assert order.count("heavy") < 300


def test_two_users_with_weights_one_and_three_start_jobs_one_to_three(
    jobsys_env: Env, start_workers: StartWorkers
) -> None:
    # Given two users with long backlogs, of weights 1 and 3
    jobsys_env.store.set_limits("three", {"weight": 3.0})
    enqueue_many("test.stamp", stamps("one", "w", 400) + stamps("three", "w", 400))

    # When a node runs 400 of their jobs
    start_workers(1, concurrency=CONCURRENCY, env={"JOBSYS_READY_MAX": str(READY_MAX)})
    wait_until(lambda: len(starts(jobsys_env, "w")) >= 400, timeout=120, what="400 starts")

    # Then the first 400 starts went 1:3, within 10%
    got = Counter(starts(jobsys_env, "w")[:400])
    assert 90 <= got["one"] <= 110 and 290 <= got["three"] <= 310, got


def test_an_urgent_job_behind_5000_bulk_jobs_is_among_the_next_two_started(
    jobsys_env: Env, start_workers: StartWorkers
) -> None:
    # Given a node running a backlog of 5,000 bulk jobs of 200 ms
    start_workers(1, concurrency=CONCURRENCY, env={"JOBSYS_READY_MAX": str(READY_MAX)})
    enqueue_many("test.stamp", stamps("bulk", "p", 5000, 0.2))
    wait_until(lambda: len(starts(jobsys_env, "p")) >= 4, timeout=60, what="the bulk to run")

    # When a priority-9 job is enqueued
    jobsys_env.redis.rpush("p:starts", "enqueued")
    enqueue("test.stamp", user_id="vip", payload={"key": "p", "tag": "vip"}, priority=9)
    wait_until(lambda: "vip" in starts(jobsys_env, "p"), timeout=60, what="the urgent job")

    # Then it was among the next two jobs started
    order = starts(jobsys_env, "p")
    assert order.index("vip") - order.index("enqueued") <= 2, order[-20:]


def test_a_delayed_job_waits_in_postgresql_and_is_delivered_once_when_due(
    jobsys_env: Env, start_workers: StartWorkers
) -> None:
    # Given a node whose broker would redeliver an unacknowledged message after 60 s
    start_workers(1, concurrency=CONCURRENCY, env={"JOBSYS_VISIBILITY_TIMEOUT": "60"})

    # When a job is enqueued with a delay of 2 hours, and a promotion looks at the backlog
    result = enqueue(
        "test.stamp", user_id="later", payload={"key": "d", "tag": "later"}, delay=7200
    )
    assert Admitter(jobsys_env.runtime, ["default"], 10).fill("default", low_water=False) is False

    # Then no message exists for it (no broker ETA held in a worker's memory)
    assert not jobsys_env.store.dispatched(result.job_id)
    assert (jobsys_env.queue_length(), jobsys_env.unacked()) == (0, 0)

    # When the two hours have passed (the row and its user's place are moved to now)
    with jobsys_env.store.durable.begin() as conn:
        conn.exec_driver_sql("UPDATE jobs SET run_after = now()")
        conn.exec_driver_sql("UPDATE fair_users SET next_due = now()")

    # Then it runs, once
    done = wait_until(lambda: jobsys_env.finished(result.job_id), timeout=30, what="the job")
    assert (done.attempt, starts(jobsys_env, "d")) == (1, ["later"])
    wait_until(
        lambda: (jobsys_env.queue_length(), jobsys_env.unacked()) == (0, 0),
        timeout=10,
        what="its message to be acknowledged",
    )
    assert starts(jobsys_env, "d") == ["later"]
