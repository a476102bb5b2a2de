"""A node killed with SIGKILL in the middle of admission loses no job and runs none twice.

Two moments are made to last so the kill lands in them: a promotion's open
transaction (another session holds a lock its last statement needs), and the
publish after a committed promotion (a test hook holds it).
"""

from __future__ import annotations

from pathlib import Path

import psycopg2
import pytest

from jobsys import Status, enqueue_many
from tests.conftest import Env, StartWorkers
from tests.support.ids import job_ids
from tests.support.wait import wait_until

pytestmark = pytest.mark.integration
JOBS = 200


def slow_jobs(prefix: str) -> list[tuple[str, dict[str, object]]]:
    return [(f"user-{n % 10}", {"key": f"{prefix}{n}", "seconds": 0.01}) for n in range(JOBS)]


def dispatched(env: Env) -> int:
    with env.store.durable.connect() as conn:
        sql = "SELECT count(*) FROM jobs WHERE dispatched_at IS NOT NULL"
        return int(conn.exec_driver_sql(sql).scalar_one())


def each_ran_once(env: Env, prefix: str, ids: list[object]) -> None:
    wait_until(
        lambda: env.store.count_by_status(ids) == {Status.SUCCEEDED: JOBS},
        timeout=120,
        what=f"all {JOBS} jobs to succeed",
        interval=0.5,
    )
    runs = [len(env.redis.lrange(f"{prefix}{n}:runs", 0, -1)) for n in range(JOBS)]
    successes = [env.redis.get(f"{prefix}{n}:successes") for n in range(JOBS)]
    assert (runs, successes) == ([1] * JOBS, [b"1"] * JOBS)
    assert env.count_rows("dead_letters") == 0


def test_a_node_killed_inside_a_promotion_loses_nothing(
    jobsys_env: Env, start_workers: StartWorkers
) -> None:
    # Given an idle node, and another session holding a lock that the last statement
    # of every promotion needs (it moves the queue's virtual clock)
    (node,) = start_workers(1, concurrency=2)
    blocker = psycopg2.connect(jobsys_env.database_url)
    try:
        with blocker.cursor() as cur:
            cur.execute("LOCK TABLE fair_queues IN EXCLUSIVE MODE")

        # When 200 jobs are enqueued, the node's promoter marks some in a transaction
        # that now waits,
        ids = job_ids(enqueue_many("test.slow", slow_jobs("tx")))
        wait_until(lambda: _promotion_waits(jobsys_env), timeout=30, what="a promotion to wait")
        # and the node is killed with SIGKILL right then
        node.kill_node()
    finally:
        blocker.rollback()
        blocker.close()

    # Then the half-done promotion is undone: nothing was published
    assert dispatched(jobsys_env) == 0 and jobsys_env.queue_length() == 0

    # And a new node runs every job exactly once
    start_workers(1, concurrency=2)
    each_ran_once(jobsys_env, "tx", ids)


def test_a_node_killed_between_a_promotion_and_its_publish_loses_nothing(
    jobsys_env: Env, start_workers: StartWorkers, tmp_path: Path
) -> None:
    # Given an idle node whose publishes of admitted jobs wait while a file exists
    hold = tmp_path / "hold"
    hold.touch()
    (node,) = start_workers(1, concurrency=2, env={"JOBSYS_TEST_HOLD_PUBLISH": str(hold)})

    # When 200 jobs are enqueued, the node's promoter commits a promotion whose
    # publish now waits, and the node is killed with SIGKILL right then
    ids = job_ids(enqueue_many("test.slow", slow_jobs("pub")))
    wait_until(lambda: Path(f"{hold}.held").exists(), timeout=30, what="a promotion to publish")
    node.kill_node()
    hold.unlink()

    # Then the promoted jobs have no message
    promoted = dispatched(jobsys_env)
    assert 0 < promoted < JOBS and jobsys_env.queue_length() == 0

    # And a new node still runs every job once (its sweeper re-publishes the
    # promoted ones as lost messages, its promoter the rest)
    start_workers(1, concurrency=2)
    each_ran_once(jobsys_env, "pub", ids)


def _promotion_waits(env: Env) -> bool:
    with env.store.durable.connect() as conn:
        sql = (
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'jobsys-admission'"
            " AND wait_event_type = 'Lock'"
        )
        return int(conn.exec_driver_sql(sql).scalar_one()) > 0
