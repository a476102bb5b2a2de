"""settle_failure: what becomes of a failed attempt, and what the hooks hear of it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from jobsys.engine.dispatch import Why
from jobsys.engine.failures import Failure, classify
from jobsys.engine.hooks import Outcome
from jobsys.engine.outcome import Settled, settle_failure
from jobsys.engine.runtime import Runtime
from jobsys.errors import StoreUnavailableError
from jobsys.store import Job, Status
from tests.support.engine import UNIT_APP, UNIT_SETTINGS, Engine


def failure(**changes: Any) -> Failure:
    values: dict[str, Any] = {
        "exc_type": "RuntimeError",
        "message": "boom",
        "traceback": "Traceback: boom",
        "reason": "bug",
        "retryable": True,
    }
    values.update(changes)
    return Failure(**values)


def running(engine: Engine, **changes: Any) -> Job:
    """A job claimed on node-1; the store's log and the hook's events start after it."""
    new = engine.put(**changes)
    job = engine.store.claim(new.id, new.user_id, lease=60.0, worker="node-1", pid=7)
    assert job is not None
    engine.forget()
    return job


def test_a_retryable_failure_is_requeued_after_a_backoff(engine: Engine) -> None:
    # Given a running job on the first of three attempts
    job = running(engine)

    # When its failure is settled
    settled = settle_failure(engine.rt, job, failure(), actor="node-1")

    # Then it is retried within the first backoff ceiling (retry_base, 1 s)
    assert settled.outcome is Outcome.RETRIED
    assert 0.0 <= settled.delay <= 1.0
    stored = engine.store.get_job(job.id)
    assert (stored.status, stored.attempt) == (Status.QUEUED, 1)
    assert [(e["type"], e["message"], e["reason"], e["worker"]) for e in stored.errors] == [
        ("RuntimeError", "boom", "bug", "node-1")
    ]
    # And the hook heard it was retried; the retry waits in the backlog, with no message
    assert engine.hook.names() == ["after_record"]
    (recorded,) = engine.hook.recorded
    assert (recorded.job, recorded.outcome, recorded.delay) == (job, Outcome.RETRIED, settled.delay)
    assert (recorded.reason, recorded.actor) == ("bug", "node-1")
    assert not engine.store.dispatched(job.id)

    # And admission publishes it once its backoff is over, not before
    engine.admit()
    assert engine.hook.dispatched == []
    engine.clock.advance(settled.delay + 0.001)
    engine.admit()
    assert [(d.why, d.job_id) for d in engine.hook.dispatched] == [(Why.ADMIT, job.id)]


def test_without_admission_a_retry_is_published_with_its_countdown(engine: Engine) -> None:
    settings = UNIT_SETTINGS.model_copy(update={"admission": False})
    rt = Runtime(settings, app=UNIT_APP, hooks=[engine.hook], store=engine.store)
    job = running(engine)
    settled = settle_failure(rt, job, failure(retry_after=7.0), actor="node-1")
    assert settled == Settled(Outcome.RETRIED, 7.0)
    assert [(d.why, d.countdown) for d in engine.hook.dispatched] == [(Why.RETRY, 7.0)]


def test_retry_after_replaces_the_backoff(engine: Engine) -> None:
    # Given a failure that says when to try again
    job = running(engine)

    # When it is settled
    settled = settle_failure(engine.rt, job, failure(retry_after=42.0), actor="node-1")

    # Then the retry waits exactly that long, in the backlog
    assert settled == Settled(Outcome.RETRIED, 42.0)
    stored = engine.store.get_job(job.id)
    assert stored.run_after == engine.clock() + timedelta(seconds=42.0)
    assert engine.hook.dispatched == [] and not engine.store.dispatched(job.id)


def test_the_retry_is_dispatched_on_the_callers_path_with_its_canvas(engine: Engine) -> None:
    # Given a job whose lease expired, settled by the sweeper, with canvas options
    job = running(engine, priority=4)
    canvas = {"group_id": "g1", "group_index": 0, "retries": 1}

    # When its failure is settled on the EXPIRED path
    settle_failure(
        engine.rt, job, failure(retry_after=5.0), actor="sweeper", canvas=canvas, why=Why.EXPIRED
    )

    # Then the retry goes out on that path, at the job's priority, in its canvas
    (d,) = engine.hook.dispatched
    assert (d.why, d.job_id, d.priority, d.countdown) == (Why.EXPIRED, job.id, 4, 5.0)
    assert dict(d.canvas) == canvas
    assert engine.hook.recorded[0].actor == "sweeper"


def test_the_last_attempt_is_buried(engine: Engine) -> None:
    # Given a job on its last attempt
    job = running(engine, max_attempts=1)

    # When its failure is settled
    settled = settle_failure(engine.rt, job, failure(), actor="node-1")
    calls = list(engine.store.calls)

    # Then it is dead, with a letter (one statement), and nothing is dispatched
    assert settled == Settled(Outcome.DEAD)
    assert calls == ["bury"]
    assert engine.store.get_job(job.id).status is Status.DEAD
    letter = engine.store.dead_letter_of(job.id)
    assert letter is not None
    assert (letter.reason, letter.traceback, letter.worker) == ("bug", "Traceback: boom", "node-1")
    assert engine.hook.events == [("after_record", Outcome.DEAD, 1)]


def test_a_failure_that_is_not_retryable_is_buried_with_attempts_to_spare(engine: Engine) -> None:
    # Given a job on the first of three attempts, failing for bad input
    job = running(engine)

    # When its failure is settled
    settled = settle_failure(
        engine.rt, job, failure(reason="bad_input", retryable=False), actor="node-1"
    )

    # Then it is dead at once, its reason recorded for the hooks and in the letter
    assert settled.outcome is Outcome.DEAD
    (recorded,) = engine.hook.recorded
    assert (recorded.outcome, recorded.reason) == (Outcome.DEAD, "bad_input")
    letter = engine.store.dead_letter_of(job.id)
    assert letter is not None and (letter.reason, letter.retryable) == ("bad_input", False)
    assert engine.hook.dispatched == []


def test_a_postponement_hands_the_attempt_back_even_on_the_last_attempt(engine: Engine) -> None:
    # Given a job on its last attempt that a guard refused, for 30 s
    job = running(engine, max_attempts=1)

    # When the refusal is settled (on the sweeper's path, even)
    settled = settle_failure(
        engine.rt,
        job,
        failure(postpone=True, retry_after=30.0, reason="quota"),
        actor="node-1",
        why=Why.EXPIRED,
    )

    # Then it is postponed, not buried: queued at attempt 0, back in the backlog for 30 s
    assert settled == Settled(Outcome.POSTPONED, 30.0)
    stored = engine.store.get_job(job.id)
    assert (stored.status, stored.attempt, stored.errors) == (Status.QUEUED, 0, [])
    assert stored.run_after == engine.clock() + timedelta(seconds=30.0)
    assert engine.hook.dispatched == [] and not engine.store.dispatched(job.id)
    (recorded,) = engine.hook.recorded
    assert (recorded.outcome, recorded.delay, recorded.reason) == (Outcome.POSTPONED, 30.0, "quota")


def test_a_postponement_without_a_delay_is_due_at_once(engine: Engine) -> None:
    job = running(engine)
    settled = settle_failure(engine.rt, job, failure(postpone=True), actor="node-1")
    assert settled == Settled(Outcome.POSTPONED, 0.0)
    engine.admit()
    assert [(d.why, d.job_id) for d in engine.hook.dispatched] == [(Why.ADMIT, job.id)]


def test_a_stale_attempt_is_lost_whatever_it_would_have_become(engine: Engine) -> None:
    # Given a job whose first attempt was requeued and whose second now runs
    first = running(engine, max_attempts=2)
    engine.store.requeue(first, delay=0.0, error={"attempt": 1})
    second = engine.store.claim(first.id, "u1", lease=60.0, worker="node-2", pid=8)
    assert second is not None
    engine.forget()

    # When the first attempt's failure is settled, as a retry, a burial and a postponement
    settled = [
        settle_failure(engine.rt, first, failure(), actor="node-1"),
        settle_failure(engine.rt, first, failure(retryable=False), actor="node-1"),
        settle_failure(engine.rt, first, failure(postpone=True), actor="node-1"),
    ]

    # Then each is lost: nothing recorded, nothing dispatched, no hook told
    assert settled == [Settled(Outcome.LOST)] * 3
    assert engine.store.get_job(first.id) == second
    assert engine.store.list_dead_letters() == []
    assert engine.hook.events == []
    assert engine.broker.take_all() == []


def test_a_lost_database_is_postponed_by_the_store_retry_delay(engine: Engine) -> None:
    # Given a running job whose handler met a closed database connection
    job = running(engine)
    lost = classify(StoreUnavailableError("PostgreSQL unavailable: server closed the connection"))

    # When the failure is settled
    settled = settle_failure(engine.rt, job, lost, actor="node-1")

    # Then the attempt is handed back and the job comes back after db_retry_delay
    assert settled == Settled(Outcome.POSTPONED, engine.rt.settings.db_retry_delay)
    stored = engine.store.get_job(job.id)
    assert (stored.status, stored.attempt, stored.errors) == (Status.QUEUED, 0, [])
