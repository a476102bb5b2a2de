"""The alert signals read from real rows and real breakers, and the beat task in a worker."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from jobsys import Status
from jobsys.alerts.task import evaluate_alerts
from jobsys.engine.celeryconf import CONTROL_QUEUE
from jobsys.guards.breaker import SharedBreaker, openings
from jobsys.store.alerts import AlertStore
from jobsys.store.signals import Window, read_signals
from jobsys.store.users import UserStore
from tests.conftest import Env, StartWorkers
from tests.support import kinds
from tests.support.wait import wait_until

pytestmark = pytest.mark.integration


def window(now: datetime, *, min_volume: int = 1, slo: float = 900.0) -> Window:
    return Window(now=now, seconds=300.0, min_volume=min_volume, freshness_slo=slo)


def test_signals_count_what_the_jobs_did(jobsys_env: Env, start_workers: StartWorkers) -> None:
    # Given 3 jobs that succeed, one that fails once then succeeds, one that dies (3 failures)
    start_workers(1, concurrency=2)
    jobsys_env.redis.set("sig-dead:broken", 1)
    results = [kinds.echo.delay("user-1", value=n) for n in range(3)]
    results.append(kinds.flaky.delay("user-2", key="sig-flaky", failures=1))
    results.append(kinds.broken.delay("user-3", key="sig-dead"))
    for r in results:
        job_id = uuid.UUID(r.id)
        wait_until(lambda i=job_id: jobsys_env.finished(i), timeout=60, what="the jobs to finish")

    # When the signals are read now
    found = read_signals(jobsys_env.store, window(datetime.now(UTC)))

    # Then each kind's error rate is its failed attempts over the attempts that ended
    rates = {s: v for (name, s), v in found.items() if name == "error_rate"}
    assert rates == {"test.echo": 0.0, "test.flaky": 0.5, "test.broken": 1.0}
    # And one dead letter was written; nobody is stale; nothing waits
    assert found[("dead_letters", "*")] == 1.0
    assert found[("stale_users", "*")] == 0.0
    assert not [k for k in found if k[0] == "oldest_queued"]
    # And the succeeded kinds have a p95 duration, the queue a p95 start latency
    assert {s for (name, s) in found if name == "duration_p95"} == {"test.echo", "test.flaky"}
    assert {s for (name, s) in found if name == "start_latency_p95"} == {"default"}

    # And a kind with fewer attempts than the minimum volume has no rate at all
    few = read_signals(jobsys_env.store, window(datetime.now(UTC), min_volume=4))
    assert {s for (name, s), _ in few.items() if name == "error_rate"} == set()


def test_oldest_queued_and_stale_users_at_an_injected_instant(jobsys_env: Env) -> None:
    # Given two due jobs no worker takes, and a user never synced
    first = kinds.echo.delay("user-1", value=1)
    kinds.echo.delay("user-1", value=2)
    due = jobsys_env.store.get_job(uuid.UUID(first.id)).run_after
    UserStore(jobsys_env.store).add("stale@example.com")

    # When read 100 s after the first was due, and again past the freshness SLO
    soon = read_signals(jobsys_env.store, window(due + timedelta(seconds=100), slo=900))
    late = read_signals(jobsys_env.store, window(due + timedelta(seconds=1000), slo=900))

    # Then the queue's oldest job is 100 s old, and the user is stale only past the SLO
    assert soon[("oldest_queued", "default")] == pytest.approx(100.0)
    assert (soon[("stale_users", "*")], late[("stale_users", "*")]) == (0.0, 1.0)
    assert jobsys_env.store.get_job(uuid.UUID(first.id)).status is Status.QUEUED


def test_breaker_openings_are_counted_by_scope_within_the_window(jobsys_env: Env) -> None:
    # Given the provider's breaker opened twice and a user's once
    def boom() -> None:
        raise OSError("down")

    for name in ("google", "google", "google:user:u-1"):
        breaker = SharedBreaker(
            jobsys_env.redis, name, fail_max=1, reset_timeout=0.01, counts=lambda e: True
        )
        breaker.reset()
        with pytest.raises(OSError):
            breaker.call(boom)
    now = datetime.now(UTC).timestamp()

    # Then the window holds them, by scope; a window that ended before them holds none
    assert openings(jobsys_env.redis, now - 300, now + 1) == {"google": 2, "google:user": 1}
    assert openings(jobsys_env.redis, now - 600, now - 300) == {"google": 0, "google:user": 0}


def test_a_worker_runs_the_beat_task(jobsys_env: Env, start_workers: StartWorkers) -> None:
    # Given a worker node
    start_workers(1)

    # When beat sends the alerts' task
    evaluate_alerts.apply_async(queue=CONTROL_QUEUE)

    # Then the worker evaluated: the fleet's counts have their series, and nothing fired
    def evaluated() -> bool:
        with jobsys_env.store.durable.connect() as conn:
            rows = conn.exec_driver_sql("SELECT signal, subject, n FROM alert_baselines").all()
        return sorted(map(tuple, rows)) == [("dead_letters", "*", 11), ("stale_users", "*", 11)]

    wait_until(evaluated, timeout=30, what="the worker to evaluate the alerts")
    assert AlertStore(jobsys_env.store).recent(since=datetime.now(UTC) - timedelta(days=1)) == []
