"""Scenarios 7 and 8: Redis loses every message; PostgreSQL drops every connection."""

from __future__ import annotations

import time

import psycopg2
import pytest
from sqlalchemy.engine import make_url

from jobsys import Status, enqueue_many
from jobsys.engine.worker import sweeper
from tests.conftest import Env, StartWorkers
from tests.support.wait import wait_until

pytestmark = pytest.mark.integration


def test_queued_jobs_survive_a_redis_flush(jobsys_env: Env, start_workers: StartWorkers) -> None:
    # Given a broker that a sweeper has seen (its epoch key is set)
    assert sweeper().run().broker_reset is True
    assert sweeper().run().broker_reset is False

    # And 1,000 jobs queued with no worker running
    ids = enqueue_many("test.noop", [(f"user-{n % 50}", None) for n in range(1000)])
    assert jobsys_env.queue_length() == 1000

    # When Redis loses everything (FLUSHDB on the test's db: the epoch key is per db)
    jobsys_env.redis.flushdb()
    assert jobsys_env.queue_length() == 0
    assert jobsys_env.store.count_by_status(ids) == {Status.QUEUED: 1000}

    # And workers start
    start_workers(2, concurrency=2)

    # Then every job completes, exactly one attempt each
    wait_until(
        lambda: jobsys_env.store.count_by_status(ids) == {Status.SUCCEEDED: 1000},
        timeout=120,
        what="all 1,000 jobs to succeed",
        interval=0.5,
    )
    with jobsys_env.store.durable.connect() as conn:
        attempts = conn.exec_driver_sql("SELECT DISTINCT attempt FROM jobs").scalars().all()
    assert attempts == [1]


def test_workers_ride_out_postgres_dropping_every_connection(
    jobsys_env: Env, start_workers: StartWorkers
) -> None:
    # Given two workers busy with 60 jobs of 0.25 s each (about 4 s of work for 4 processes)
    nodes = start_workers(2, concurrency=2)
    ids = enqueue_many(
        "test.slow", [(f"user-{n % 20}", {"key": f"pg{n}", "seconds": 0.25}) for n in range(60)]
    )
    wait_until(lambda: jobsys_env.redis.exists("pg0:runs"), timeout=30, what="work to start")

    # When, for three seconds, every connection to the database is terminated as soon as
    # it appears -- what clients see of a PostgreSQL restart (the machine's server is
    # shared, so the test terminates backends instead of restarting the cluster)
    killed = _terminate_backends_for(jobsys_env.database_url, seconds=3.0)
    assert killed > 0
    assert jobsys_env.store.count_by_status(ids).get(Status.SUCCEEDED, 0) < 60

    # And more jobs arrive after it is back
    later = enqueue_many("test.echo", [(f"user-{n}", {"value": n}) for n in range(20)])

    # Then the same worker processes finish every job, none lost, none dead
    wait_until(
        lambda: jobsys_env.store.count_by_status([*ids, *later]) == {Status.SUCCEEDED: 80},
        timeout=90,
        what="all 80 jobs to succeed",
        interval=0.5,
    )
    assert jobsys_env.count_rows("dead_letters") == 0
    assert all(w.process.poll() is None for w in nodes)
    workers = jobsys_env.store.list_workers()
    assert {(w.name, w.pid, w.status) for w in workers} == {(w.node, w.pid, "alive") for w in nodes}

    # And each handler's effect happened once
    successes = [jobsys_env.redis.get(f"pg{n}:successes") for n in range(60)]
    assert successes == [b"1"] * 60


def _terminate_backends_for(database_url: str, *, seconds: float) -> int:
    """Terminate every other backend on the database, repeatedly, for ``seconds``."""
    url = make_url(database_url)
    admin = psycopg2.connect(
        host=url.host, port=url.port, user=url.username, password=url.password, dbname="postgres"
    )
    admin.autocommit = True
    killed = 0
    deadline = time.monotonic() + seconds
    try:
        with admin.cursor() as cur:
            while time.monotonic() < deadline:
                cur.execute(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = %s AND pid <> pg_backend_pid()",
                    (url.database,),
                )
                killed += int(cur.fetchone()[0])
                time.sleep(0.05)
    finally:
        admin.close()
    return killed
