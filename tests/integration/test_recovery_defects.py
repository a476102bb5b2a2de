"""Recovery defects found under fault injection: each scenario as it was seen, with real workers."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from jobsys import Job, Status, StoreUnavailableError
from tests.conftest import Env, StartWorkers
from tests.support import kinds
from tests.support.valkey import Valkey
from tests.support.wait import wait_until

pytestmark = pytest.mark.integration


def test_a_database_outage_inside_a_handler_spends_no_attempt(
    jobsys_env: Env, start_workers: StartWorkers
) -> None:
    # Given a worker, and a job of one attempt whose handler sees PostgreSQL drop
    # every connection (a restart) and then meets the closed connection
    start_workers(1, concurrency=1)
    job_id = uuid.UUID(kinds.store_blip.delay("user-1", key="blip").id)

    # When it runs
    job = wait_until(lambda: _finished(jobsys_env, job_id), timeout=60, what="the job to finish")

    # Then the outage handed the attempt back: the job ran again and succeeded on its
    # one attempt, with no error recorded and no dead letter
    assert job.status is Status.SUCCEEDED
    assert (job.attempt, job.errors) == (1, [])
    assert job.result == {"calls": 2}
    assert jobsys_env.redis.get("blip:successes") == b"1"
    assert jobsys_env.count_rows("dead_letters") == 0


def _finished(env: Env, job_id: uuid.UUID) -> Job | None:
    # This process's pooled connections die with the outage too: its first query may fail.
    try:
        return env.finished(job_id)
    except StoreUnavailableError:
        return None


# Workers that would not take a restarted node's silence for death on their own: only
# the restarted process can tell that its predecessor is gone.
PATIENT_FLEET = {"JOBSYS_WORKER_DEAD_AFTER": "120"}


def test_a_node_restarted_under_its_name_retries_its_lost_jobs_at_once(
    jobsys_env: Env, start_workers: StartWorkers
) -> None:
    # Given one node running a job whose lease lasts 92 s (heartbeats keep it so)
    (node,) = start_workers(1, concurrency=1, env=PATIENT_FLEET)
    job_id = uuid.UUID(kinds.patient.delay("user-1", key="restart", seconds=2).id)
    wait_until(lambda: jobsys_env.redis.llen("restart:started") == 1, timeout=30, what="a start")

    # When the whole node is killed and started again under the same name
    node.kill_node()
    (again,) = start_workers(1, concurrency=1, env=PATIENT_FLEET, name=node.name)

    # Then the new process retries the job at once, well before the lease would end
    job = wait_until(lambda: jobsys_env.finished(job_id), timeout=45, what="the job to finish")
    assert job.status is Status.SUCCEEDED
    assert job.attempt == 2
    assert [(e["attempt"], e["type"], e["reason"]) for e in job.errors] == [
        (1, "WorkerRestarted", "worker_lost")
    ]
    assert jobsys_env.redis.lrange("restart:started", 0, -1) == [b"1", b"2"]
    assert jobsys_env.redis.get("restart:finished") == b"1"
    rows = {w.name: (w.pid, w.status) for w in jobsys_env.store.list_workers()}
    assert rows == {node.node: (again.pid, "alive")}


def test_a_restarted_node_is_registered_before_its_first_claim(
    jobsys_env: Env, start_workers: StartWorkers
) -> None:
    # Given a node that died while 20 jobs wait for it
    (node,) = start_workers(1, concurrency=2)
    node.kill_node()
    ids = [uuid.UUID(kinds.echo.delay(f"user-{n}", value=n).id) for n in range(20)]

    # When it starts again under its name
    (again,) = start_workers(1, concurrency=2, name=node.name)
    jobs = wait_until(lambda: _all_finished(jobsys_env, ids), timeout=60, what="20 jobs to end")

    # Then its row was alive before any of its claims, so no sweep could take its
    # fresh claims for a dead worker's: each job ran once, on its first attempt
    (row,) = [w for w in jobsys_env.store.list_workers() if w.name == node.node]
    assert row.pid == again.pid
    assert all(j.started_at is not None and j.started_at > row.started_at for j in jobs)
    assert [(j.status, j.attempt, j.errors) for j in jobs] == [(Status.SUCCEEDED, 1, [])] * 20


def _all_finished(env: Env, ids: list[uuid.UUID]) -> list[Job] | None:
    found = [env.finished(i) for i in ids]
    return [j for j in found if j is not None] if all(found) else None


@pytest.fixture
def own_valkey(tmp_path: Path) -> Iterator[Valkey]:
    """A Valkey server this test may kill and start again (the shared one it may not)."""
    server = Valkey(tmp_path)
    server.start()
    yield server
    server.kill()


def test_a_node_holding_unacked_messages_survives_a_redis_restart(
    jobsys_env: Env, start_workers: StartWorkers, own_valkey: Valkey
) -> None:
    # Given a node on a Redis of its own, holding three jobs' retry messages unacked in
    # memory (each failed once and waits out a backoff of up to 30 s)
    broker = {"JOBSYS_BROKER_URL": own_valkey.url, "JOBSYS_RESULT_BACKEND": own_valkey.url}
    jobsys_env.reconfigure(**broker)
    slow_retries = {"JOBSYS_RETRY_BASE": "30", "JOBSYS_RETRY_CAP": "30", **broker}
    (node,) = start_workers(1, concurrency=2, env=slow_retries)
    server = redis.Redis.from_url(own_valkey.url)
    keys = [f"held{n}" for n in range(3)]
    for key in keys:
        server.set(f"{key}:broken", 1)  # each fails until Redis forgets this key
    ids = [uuid.UUID(kinds.broken.delay(f"user-{n}", key=k).id) for n, k in enumerate(keys)]
    wait_until(
        lambda: all(jobsys_env.store.get_job(i).errors for i in ids), timeout=30, what="3 failures"
    )

    # When the Redis server is killed and started again on its port (every key lost)
    own_valkey.restart()

    # Then the same node process lives on and serves a new job
    echo_id = uuid.UUID(kinds.echo.delay("user-9", value=1).id)
    echoed = wait_until(lambda: jobsys_env.finished(echo_id), timeout=60, what="a new job to run")
    assert (echoed.status, echoed.worker) == (Status.SUCCEEDED, node.node)
    assert node.process.poll() is None
    assert "Unrecoverable error" not in node.log_tail(400)

    # And the held jobs were not lost: each ran again and succeeded on its second attempt
    jobs = wait_until(lambda: _all_finished(jobsys_env, ids), timeout=90, what="the held jobs")
    assert [(j.status, j.attempt) for j in jobs] == [(Status.SUCCEEDED, 2)] * 3
