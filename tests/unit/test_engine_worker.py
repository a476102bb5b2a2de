"""A node's start: its lost predecessor's jobs are retried at once, a live one keeps them."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from jobsys.engine.dispatch import Why
from jobsys.engine.worker import retire_predecessor
from jobsys.store import Status
from tests.support.engine import Engine

NODE = "w1@host"


def gone_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def running_on(engine: Engine, node: str, pid: int, *, hostname: str | None = None) -> list:
    """``node`` registered by ``pid`` on ``hostname``, running two jobs with long leases."""
    engine.store.register_worker(
        node, hostname=hostname or socket.gethostname(), pid=pid, queues=[], concurrency=2
    )
    jobs = []
    for _ in range(2):
        new = engine.put()
        job = engine.store.claim(new.id, new.user_id, lease=600.0, worker=node, pid=pid + 1)
        assert job is not None
        jobs.append(job)
    return jobs


def test_a_gone_predecessor_on_this_host_has_its_jobs_retried_now(engine: Engine) -> None:
    # Given a node whose previous process, now gone, was running two jobs
    jobs = running_on(engine, NODE, gone_pid())
    engine.forget()

    # When a new process of the node starts
    retried = retire_predecessor(engine.rt, NODE)

    # Then both jobs are retried at once, their attempt lost to the restart: back in the
    # backlog for their backoff, admission publishes them when it is over
    assert retried == 2
    for job in jobs:
        stored = engine.store.get_job(job.id)
        assert (stored.status, stored.attempt) == (Status.QUEUED, 1)
        assert [(e["type"], e["reason"]) for e in stored.errors] == [
            ("WorkerRestarted", "worker_lost")
        ]
        assert not engine.store.dispatched(job.id)
    assert engine.hook.whys() == []
    assert {w.name: w.status for w in engine.store.list_workers()} == {NODE: "dead"}


def test_a_predecessor_still_running_keeps_its_jobs(engine: Engine) -> None:
    # Given a node whose previous process is still alive (a warm shutdown draining):
    # this test's own process stands for it
    jobs = running_on(engine, NODE, os.getppid())
    engine.forget()

    # When a new process of the node starts
    retried = retire_predecessor(engine.rt, NODE)

    # Then nothing is taken from it
    assert retried == 0
    assert [engine.store.get_job(j.id).status for j in jobs] == [Status.RUNNING] * 2
    assert engine.hook.dispatched == []


def test_a_predecessor_on_another_host_is_left_to_the_sweeper(engine: Engine) -> None:
    # Given the node's previous process registered from another host
    jobs = running_on(engine, NODE, gone_pid(), hostname="elsewhere")
    engine.forget()

    # When a process of the same name starts here, it cannot tell whether that one is gone
    retried = retire_predecessor(engine.rt, NODE)

    # Then the jobs stay with it until the sweeper judges its heartbeat
    assert retried == 0
    assert [engine.store.get_job(j.id).status for j in jobs] == [Status.RUNNING] * 2


def test_a_first_start_has_no_predecessor(engine: Engine) -> None:
    assert retire_predecessor(engine.rt, NODE) == 0
    assert engine.store.list_workers() == []


def test_a_gone_predecessors_reserved_messages_are_sent_again_at_once(engine: Engine) -> None:
    # Given a node whose previous process, now gone, consumed the default queue, and a
    # job admitted to the broker that nobody claimed (its message reserved by that process)
    engine.store.register_worker(
        NODE, hostname=socket.gethostname(), pid=gone_pid(), queues=["default"], concurrency=2
    )
    admitted = engine.put()
    engine.clock.advance(1)
    engine.forget()

    # When a new process of the node starts
    retire_predecessor(engine.rt, NODE)

    # Then the unclaimed job is published again now, not after the lost path's wait
    assert [(d.why, d.job_id) for d in engine.hook.dispatched] == [(Why.SWEEP, admitted.id)]
