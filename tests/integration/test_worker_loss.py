"""Scenarios 6 and 9: workers killed mid-job, and a handler that kills its own process."""

from __future__ import annotations

import os
import signal
import uuid

import pytest

from jobsys import Status, enqueue_many
from tests.conftest import Env, StartWorkers
from tests.support import kinds
from tests.support.ids import job_ids
from tests.support.wait import wait_until

pytestmark = pytest.mark.integration


def test_a_job_whose_pool_process_is_killed_completes_exactly_once(
    jobsys_env: Env, start_workers: StartWorkers
) -> None:
    # Given a slow job running in a worker's pool process
    start_workers(1, concurrency=2)
    job_id = uuid.UUID(kinds.slow.delay("user-1", key="child", seconds=3).id)
    wait_until(
        lambda: jobsys_env.redis.llen("child:runs") == 1, timeout=30, what="the job to start"
    )
    running = jobsys_env.store.get_job(job_id)
    assert running.status is Status.RUNNING and running.worker_pid is not None

    # When that pool process is killed with SIGKILL
    os.kill(running.worker_pid, signal.SIGKILL)

    # Then the worker records the lost attempt and the job runs again, to success, once
    job = wait_until(lambda: jobsys_env.finished(job_id), timeout=40, what="the job to finish")
    assert job.status is Status.SUCCEEDED
    assert job.attempt == 2
    assert [(e["attempt"], e["reason"]) for e in job.errors] == [(1, "worker_lost")]
    runs = jobsys_env.redis.lrange("child:runs", 0, -1)
    assert runs == [f"1:{running.worker_pid}".encode(), f"2:{job.result['pid']}".encode()]
    assert job.result["pid"] != running.worker_pid
    assert jobsys_env.redis.get("child:successes") == b"1"


def test_a_job_on_a_lost_worker_node_completes_on_another_node_exactly_once(
    jobsys_env: Env, start_workers: StartWorkers
) -> None:
    # Given two worker nodes and a slow job running on one of them
    nodes = {w.node: w for w in start_workers(2, concurrency=1)}
    job_id = uuid.UUID(kinds.slow.delay("user-1", key="node", seconds=3).id)
    wait_until(lambda: jobsys_env.redis.llen("node:runs") == 1, timeout=30, what="the job to start")
    running = jobsys_env.store.get_job(job_id)
    assert running.status is Status.RUNNING and running.worker in nodes
    lost = nodes.pop(running.worker)
    (survivor,) = nodes.values()

    # When that whole node (main process and pool) is killed with SIGKILL
    lost.kill_node()

    # Then the survivor's sweeper declares the node dead, and the job runs there once
    job = wait_until(lambda: jobsys_env.finished(job_id), timeout=60, what="the job to finish")
    assert job.status is Status.SUCCEEDED
    assert job.attempt == 2
    assert job.worker == survivor.node
    assert [(e["attempt"], e["reason"], e["worker"]) for e in job.errors] == [
        (1, "worker_lost", lost.node)
    ]
    assert jobsys_env.redis.llen("node:runs") == 2
    assert jobsys_env.redis.get("node:successes") == b"1"
    statuses = {w.name: w.status for w in jobsys_env.store.list_workers()}
    assert statuses == {lost.node: "dead", survivor.node: "alive"}


def test_a_handler_that_exits_its_process_is_dead_lettered_and_the_worker_keeps_serving(
    jobsys_env: Env, start_workers: StartWorkers
) -> None:
    # Given a worker
    start_workers(1, concurrency=2)

    # When a poison job that calls os._exit(1) runs among ordinary jobs
    poison = uuid.UUID(kinds.exits.delay("user-1", key="poison").id)
    ordinary = job_ids(enqueue_many("test.echo", [(f"user-{n}", {"value": n}) for n in range(20)]))

    # Then the poison job is dead-lettered after max_attempts as worker_lost
    job = wait_until(lambda: jobsys_env.finished(poison), timeout=40, what="the poison job to die")
    assert job.status is Status.DEAD
    assert job.attempt == 3
    assert jobsys_env.redis.get("poison:calls") == b"3"
    assert [e["reason"] for e in job.errors] == ["worker_lost"] * 3
    (letter,) = jobsys_env.store.list_dead_letters()
    assert (letter.job_id, letter.reason, len(letter.attempts)) == (poison, "worker_lost", 3)

    # And every ordinary job succeeded on the same worker
    wait_until(
        lambda: jobsys_env.store.count_by_status(ordinary) == {Status.SUCCEEDED: 20},
        timeout=40,
        what="the ordinary jobs to succeed",
    )
    results = sorted(jobsys_env.store.get_job(i).result["echo"] for i in ordinary)
    assert results == list(range(20))
