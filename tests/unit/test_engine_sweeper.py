"""The sweeper's decisions over the in-memory store and broker, the store's clock stepped."""

from __future__ import annotations

from typing import Any

from jobsys.engine.dispatch import Dispatch, Why
from jobsys.engine.hooks import Outcome
from jobsys.engine.sweeper import MemoryEpoch, Sweeper
from jobsys.store import Job, NewJob, Status
from tests.support.engine import URGENT, Engine, Recorder


def claimed(engine: Engine, *, worker: str = "node-1", lease: float = 600.0, **changes: Any) -> Job:
    new = engine.put(**changes)
    job = engine.store.claim(new.id, new.user_id, lease=lease, worker=worker, pid=7)
    assert job is not None
    return job


def sweep(engine: Engine, epoch: MemoryEpoch | None = None) -> Any:
    engine.forget()
    return Sweeper(engine.rt, epoch=epoch or MemoryEpoch()).run()


def publish(engine: Engine, new: NewJob) -> None:
    """The job's message waits on its queue (as if a worker had not fetched it yet)."""
    engine.rt.dispatcher.send(Dispatch.of_new(new, Why.FIRST))


def test_an_expired_lease_is_retried(engine: Engine) -> None:
    # Given a job whose worker stopped beating its lease 11 s ago
    job = claimed(engine, lease=10.0)
    engine.clock.advance(11.0)

    # When the sweeper runs
    report = sweep(engine)

    # Then the attempt counts as failed (its worker lost) and the job is retried
    assert (report.ran, report.expired) == (True, 1)
    stored = engine.store.get_job(job.id)
    assert (stored.status, stored.attempt) == (Status.QUEUED, 1)
    assert [(e["type"], e["reason"]) for e in stored.errors] == [("LeaseExpired", "worker_lost")]
    assert "node-1" in stored.errors[0]["message"]
    # And the retry, recorded by the sweeper, waits in the backlog for its backoff
    (recorded,) = engine.hook.recorded
    assert (recorded.outcome, recorded.actor, recorded.reason) == (
        Outcome.RETRIED,
        "sweeper",
        "worker_lost",
    )
    assert engine.hook.whys() == [] and not engine.store.dispatched(job.id)
    # And admission publishes it once the backoff is over
    engine.clock.advance(recorded.delay + 0.001)
    engine.admit()
    assert engine.hook.whys() == [Why.ADMIT]
    assert [m.task_id for m in engine.broker.take("default")] == [str(job.id)]


def test_an_expired_lease_on_the_last_attempt_is_buried(engine: Engine) -> None:
    # Given a job on its last attempt whose lease ran out
    job = claimed(engine, lease=10.0, max_attempts=1)
    engine.clock.advance(11.0)

    # When the sweeper runs
    report = sweep(engine)

    # Then it is dead, the letter naming the worker it was lost on; nothing is published
    assert report.expired == 1
    assert engine.store.get_job(job.id).status is Status.DEAD
    letter = engine.store.dead_letter_of(job.id)
    assert letter is not None
    assert (letter.reason, letter.exc_type, letter.worker) == (
        "worker_lost",
        "LeaseExpired",
        "node-1",
    )
    assert engine.hook.dispatched == []
    assert engine.broker.take_all() == []


def test_a_dead_workers_jobs_are_retried_though_their_lease_is_live(engine: Engine) -> None:
    # Given two workers each running a job with a 10-minute lease
    for name in ("node-1", "node-2"):
        engine.store.register_worker(name, hostname="h", pid=7, queues=[], concurrency=1)
    alive = claimed(engine, worker="node-1")
    orphan = claimed(engine, worker="node-2")

    # When node-2 stops beating for longer than worker_dead_after (60 s), node-1 beats,
    # and the sweeper runs
    engine.clock.advance(61.0)
    assert engine.store.heartbeat_worker("node-1", 7)
    report = sweep(engine)

    # Then node-2 is dead and its job retried; node-1's job runs on
    assert (report.dead_workers, report.expired) == (("node-2",), 1)
    assert engine.store.get_job(orphan.id).status is Status.QUEUED
    assert engine.store.get_job(alive.id) == alive
    assert engine.hook.dispatched == [] and not engine.store.dispatched(orphan.id)


def test_a_broker_reset_republishes_every_queued_job(engine: Engine) -> None:
    # Given three queued jobs (one whose message still waits, one due in an hour)
    waiting = engine.put()
    publish(engine, waiting)
    later = engine.put(delay=3600.0)
    urgent = engine.put(URGENT)
    claimed(engine)  # and one running job

    # When the sweeper finds the broker's epoch mark gone (flushed or restarted)
    report = sweep(engine, MemoryEpoch(present=False))

    # Then every queued job is published again, the delayed one for when it is due
    assert (report.broker_reset, report.republished) == (True, 3)
    assert engine.hook.whys() == [Why.SWEEP] * 3
    by_id = {d.job_id: d for d in engine.hook.dispatched}
    assert set(by_id) == {waiting.id, later.id, urgent.id}
    assert 3500.0 < by_id[later.id].countdown <= 3600.0
    assert by_id[waiting.id].countdown == 0.0
    # And the messages are on their queues (the waiting job's twice: the claim settles it)
    assert sorted(m.task_id for m in engine.broker.take("default")) == sorted(
        [str(waiting.id)] * 2 + [str(later.id)]
    )
    assert [m.task_id for m in engine.broker.take("cpu")] == [str(urgent.id)]


def test_without_a_reset_only_long_unclaimed_jobs_on_empty_queues_are_republished(
    engine: Engine,
) -> None:
    # Given a job on "default" and two on "cpu" inserted 61 s ago (lost_after is 60 s),
    # one of whose messages still waits on "cpu", and a job inserted just now
    lost = engine.put()
    behind = engine.put(URGENT)
    ahead = engine.put(URGENT)
    publish(engine, ahead)
    engine.clock.advance(61.0)
    fresh = engine.put()

    # When the sweeper runs with the broker intact
    report = sweep(engine)

    # Then only the job on the empty queue is republished: the cpu jobs are behind a
    # message still waiting, not lost, and the fresh one has not waited long enough
    assert (report.broker_reset, report.republished) == (False, 1)
    assert [(d.why, d.job_id) for d in engine.hook.dispatched] == [(Why.SWEEP, lost.id)]
    assert [m.task_id for m in engine.broker.take("default")] == [str(lost.id)]
    assert [m.task_id for m in engine.broker.take("cpu")] == [str(ahead.id)]
    assert {behind.id, fresh.id}.isdisjoint(d.job_id for d in engine.hook.dispatched)


def test_on_sweep_hooks_run_and_their_repairs_are_reported(engine: Engine) -> None:
    # Given a hook that repairs two things each pass, and one whose repair fails
    class Broken(Recorder):
        def on_sweep(self, runtime: Any) -> int:
            raise RuntimeError("repair failed")

    engine.rt.hooks.add(Broken())
    engine.rt.hooks.add(Recorder(repairs=2))

    # When the sweeper runs
    report = sweep(engine)

    # Then every hook ran; the broken one counted for nothing and stopped nothing
    assert report.repaired == 2
    assert engine.hook.events == [("on_sweep",)]
    assert "2 pipeline run(s) repaired" in report.describe()


def test_a_second_concurrent_sweep_is_skipped(engine: Engine) -> None:
    # Given a job whose lease ran out, and a sweeper already holding the lock
    job = claimed(engine, lease=10.0)
    engine.clock.advance(11.0)

    # When another sweeper runs meanwhile
    with engine.store.sweep_lock() as held:
        report = sweep(engine, MemoryEpoch(present=False))
    calls = list(engine.store.calls)

    # Then it does nothing and says so
    assert held is True
    assert report.ran is False
    assert "skipped" in report.describe()
    assert engine.store.get_job(job.id) == job
    assert engine.hook.events == []
    assert calls == ["sweep_lock"]


def test_a_worker_starting_on_a_broker_holding_messages_marks_it_intact(engine: Engine) -> None:
    # Given a broker without its epoch mark that holds a message, and one that holds none
    publish(engine, engine.put())
    intact, empty = MemoryEpoch(present=False), MemoryEpoch(present=False)

    # When a worker starts on the first, and (after it drained) on the second
    Sweeper(engine.rt, epoch=intact).note_broker()
    engine.broker.take_all()
    Sweeper(engine.rt, epoch=empty).note_broker()

    # Then only the first is taken as intact; the next sweep of the second republishes all
    assert (intact.present, empty.present) == (True, False)
    assert sweep(engine, empty).broker_reset is True


def test_a_lost_job_asked_to_stop_ends_cancelled(engine: Engine) -> None:
    # Given a running job an operator asked to cancel, whose worker then died
    job = claimed(engine, lease=10.0)
    assert engine.store.request_cancel(job.id, actor="op") is not None
    engine.clock.advance(11.0)

    # When the sweeper runs
    sweep(engine)

    # Then the job ends cancelled: not requeued, where no claim and no sweep would take it
    stored = engine.store.get_job(job.id)
    assert (stored.status.value, stored.cancel_requested) == ("cancelled", True)
