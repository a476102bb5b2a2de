"""The executor in this process: one delivery at a time, claim -> hooks -> run -> record.

Each test pushes a real Celery request on a task of the unit app (Celery's own
``push_request``) and calls ``execute``; the store is the in-memory one, spied on,
and messages land on kombu's in-memory broker.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

import pytest
from celery.exceptions import Ignore, Retry

from jobsys.config import Settings
from jobsys.engine import operations
from jobsys.engine.dispatch import Why
from jobsys.engine.hooks import Hook, Outcome
from jobsys.errors import JobError, JobPostponed, PayloadError
from jobsys.store import Status
from tests.support.engine import CALLBACK, ECHO, TASKS, Engine


def handled_by(handler: Any) -> Any:
    return dataclasses.replace(ECHO, handler=handler)


def test_a_successful_attempt_is_recorded_with_the_hooks_in_order(engine: Engine) -> None:
    # Given a queued job
    new = engine.put(payload={"value": 7})

    # When its message is delivered, carrying a trace header (Celery gives the request's
    # custom headers to the task as request.headers)
    result = engine.deliver(new, traceparent="00-abc-01")

    # Then the handler's result is returned and stored
    assert result == {"echo": 7, "attempt": 1}
    job = engine.store.get_job(new.id)
    assert (job.status, job.attempt, job.result) == (Status.SUCCEEDED, 1, result)
    # And the hooks saw claim, handler and record, in that order; nothing was published
    assert engine.hook.events == [
        ("after_claim", 1),
        ("around_handler", 1),
        ("after_record", Outcome.SUCCEEDED, 1),
    ]
    (attempt,) = engine.hook.attempts
    assert (attempt.worker, dict(attempt.headers)) == ("node-1", {"traceparent": "00-abc-01"})
    assert engine.broker.take_all() == []
    # And the store was asked to claim and to record, nothing else
    assert engine.calls == ["claim", "succeed"]


def test_a_failed_attempt_is_requeued_and_retried_without_reading_the_store(
    engine: Engine,
) -> None:
    # Given a job whose handler fails and asks for a retry in 12 s
    def fails(ctx: Any, payload: Any) -> None:
        raise JobError("upstream hiccup", reason="flaky", retry_after=12.0)

    new = engine.put()
    chord = TASKS[CALLBACK].s()

    # When its message, a chord member of group g1, is delivered
    with pytest.raises(Retry) as caught:
        engine.deliver(new, handled_by(fails), group="g1", group_index=3, chord=chord)

    # Then Celery is told the task will run again in 12 s
    assert isinstance(caught.value.exc, JobError)
    assert caught.value.when == 12.0
    # And the job is queued again with its attempt counted and its error kept
    job = engine.store.get_job(new.id)
    assert (job.status, job.attempt) == (Status.QUEUED, 1)
    assert [(e["attempt"], e["reason"], e["message"], e["worker"]) for e in job.errors] == [
        (1, "flaky", "upstream hiccup", "node-1")
    ]
    # And one RETRY message was published, keeping the member's place in its chord
    (message,) = engine.broker.take("default")
    assert (message.task_id, message.args, message.kwargs) == (str(new.id), ["u1"], {"value": 1})
    assert (message.headers["group"], message.headers["group_index"]) == ("g1", 3)
    assert message.headers["retries"] == 1
    assert message.embed["chord"]["task"] == CALLBACK
    assert [(d.why, d.countdown) for d in engine.hook.dispatched] == [(Why.RETRY, 12.0)]
    # And the hooks saw the retry recorded, then dispatched
    assert engine.hook.names() == [
        "after_claim",
        "around_handler",
        "after_record",
        "before_dispatch",
        "after_dispatch",
    ]
    assert engine.hook.events[2] == ("after_record", Outcome.RETRIED, 1)
    # And the retry inserted nothing and read nothing: one claim, one conditional update
    assert engine.calls == ["claim", "requeue"]


def test_the_retry_backs_off_within_the_first_ceiling(engine: Engine) -> None:
    # Given a job whose handler fails with a bug (no retry_after)
    def fails(ctx: Any, payload: Any) -> None:
        raise RuntimeError("bug")

    new = engine.put()

    # When it is delivered
    with pytest.raises(Retry) as caught:
        engine.deliver(new, handled_by(fails))

    # Then the backoff of a first attempt is at most retry_base (1 s), and the retry waits
    # it in the backlog (no message: admission publishes it when due)
    (recorded,) = engine.hook.recorded
    assert (recorded.outcome, recorded.reason) == (Outcome.RETRIED, "bug")
    assert 0.0 <= recorded.delay == caught.value.when <= 1.0
    assert engine.hook.dispatched == [] and engine.broker.take("default") == []
    assert not engine.store.dispatched(new.id)


def test_the_last_attempt_is_buried_and_its_exception_raised(engine: Engine) -> None:
    # Given a job on its last attempt whose handler fails
    boom = RuntimeError("disk on fire")

    def fails(ctx: Any, payload: Any) -> None:
        raise boom

    new = engine.put(max_attempts=1)

    # When it is delivered
    with pytest.raises(RuntimeError) as caught:
        engine.deliver(new, handled_by(fails))

    # Then the handler's own exception reaches Celery (a chord sees the failure)
    assert caught.value is boom
    # And the job is dead with a dead letter holding its context
    job = engine.store.get_job(new.id)
    assert (job.status, job.attempt) == (Status.DEAD, 1)
    letter = engine.store.dead_letter_of(new.id)
    assert letter is not None
    assert (letter.exc_type, letter.message, letter.reason, letter.retryable) == (
        "RuntimeError",
        "disk on fire",
        "bug",
        True,
    )
    assert "disk on fire" in letter.traceback and letter.worker == "node-1"
    # And nothing was published; the hooks heard it was dead
    assert engine.broker.take_all() == []
    assert engine.hook.events[-1] == ("after_record", Outcome.DEAD, 1)
    assert engine.calls == ["claim", "bury"]


def test_a_failure_that_is_not_retryable_is_buried_on_its_first_attempt(engine: Engine) -> None:
    # Given a job with attempts to spare whose token was revoked
    def fails(ctx: Any, payload: Any) -> None:
        raise JobError("token revoked", reason="auth", retryable=False)

    new = engine.put()

    # When it is delivered
    with pytest.raises(JobError):
        engine.deliver(new, handled_by(fails))

    # Then it is dead at once, for that reason
    letter = engine.store.dead_letter_of(new.id)
    assert letter is not None and (letter.reason, letter.retryable) == ("auth", False)
    assert engine.store.get_job(new.id).status is Status.DEAD
    assert engine.broker.take_all() == []


def test_a_postponed_attempt_is_handed_back_and_dispatched_later(engine: Engine) -> None:
    # Given a job whose guard says not yet, for 30 s
    def refused(ctx: Any, payload: Any) -> None:
        raise JobPostponed("quota spent", delay=30.0, reason="quota")

    new = engine.put()

    # When it is delivered
    with pytest.raises(Retry) as caught:
        engine.deliver(new, handled_by(refused))

    # Then it waits queued, its attempt handed back, no error counted
    assert caught.value.when == 30.0
    job = engine.store.get_job(new.id)
    assert (job.status, job.attempt, job.errors) == (Status.QUEUED, 0, [])
    # And it waits out the 30 s in the backlog, with no message
    assert engine.broker.take("default") == [] and engine.hook.dispatched == []
    assert job.run_after == engine.clock() + timedelta(seconds=30.0)
    (recorded,) = engine.hook.recorded
    assert (recorded.outcome, recorded.delay, recorded.reason) == (Outcome.POSTPONED, 30.0, "quota")
    assert engine.calls == ["claim", "postpone"]


def test_a_job_cancelled_while_running_stops_at_its_heartbeat(engine: Engine) -> None:
    # Given a job whose handler is cancelled by an operator, then beats
    beats: list[str] = []

    def cancelled(ctx: Any, payload: Any) -> None:
        assert operations.cancel(ctx.runtime, ctx.job_id, actor="op") is Status.RUNNING
        beats.append("before")
        ctx.heartbeat()
        beats.append("after")

    new = engine.put()

    # When it is delivered
    with pytest.raises(Ignore):
        engine.deliver(new, handled_by(cancelled))

    # Then the handler stopped at the heartbeat and the job is cancelled
    assert beats == ["before"]
    job = engine.store.get_job(new.id)
    assert (job.status, job.cancel_requested) == (Status.CANCELLED, True)
    # And the hooks heard of it once recorded; nothing was published
    assert engine.hook.events[-1] == ("after_record", Outcome.CANCELLED, 1)
    assert engine.broker.take_all() == []


def test_a_heartbeat_that_finds_its_lease_lost_stops_the_attempt_quietly(
    engine: Engine,
) -> None:
    # Given a job whose attempt overran: the sweeper requeued it while it still ran
    def overran(ctx: Any, payload: Any) -> None:
        ctx.runtime.store.requeue(ctx.job, delay=0.0, error={"type": "LeaseExpired"})
        ctx.heartbeat()

    new = engine.put()

    # When it is delivered and its handler beats
    with pytest.raises(Ignore):
        engine.deliver(new, handled_by(overran))

    # Then the attempt stops without recording anything: the job waits for its next one
    job = engine.store.get_job(new.id)
    assert (job.status, job.attempt, job.cancel_requested) == (Status.QUEUED, 1, False)
    assert "after_record" not in engine.hook.names()
    assert engine.broker.take_all() == []


def test_handler_hooks_nest_the_first_outermost(engine: Engine) -> None:
    # Given two hooks that note when they enter and leave the handler
    trail: list[str] = []

    class Around(Hook):
        def __init__(self, name: str) -> None:
            self.name = name

        def around_handler(self, attempt: Any, call: Any) -> Any:
            trail.append(f"{self.name}>")
            try:
                return call()
            finally:
                trail.append(f"<{self.name}")

    engine.rt.hooks.add(Around("outer"))
    engine.rt.hooks.add(Around("inner"))

    def handler(ctx: Any, payload: Any) -> str:
        trail.append("handler")
        return "ok"

    new = engine.put()

    # When a job is delivered
    assert engine.deliver(new, handled_by(handler)) == "ok"

    # Then the first hook wraps the second, which wraps the handler
    assert trail == ["outer>", "inner>", "handler", "<inner", "<outer"]


def test_a_duplicate_delivery_of_a_running_job_is_ignored(engine: Engine) -> None:
    # Given a job another worker is running
    new = engine.put()
    assert engine.store.claim(new.id, "u1", lease=60.0, worker="node-2", pid=1) is not None
    engine.forget()

    # When a second copy of its message is delivered here
    with pytest.raises(Ignore):
        engine.deliver(new)

    # Then nothing ran, nothing changed and nothing was published
    assert engine.hook.events == []
    assert engine.broker.take_all() == []
    job = engine.store.get_job(new.id)
    assert (job.status, job.attempt, job.worker) == (Status.RUNNING, 1, "node-2")
    assert engine.calls == ["claim", "job_state"]


def test_an_early_delivery_is_sent_back_for_when_the_job_is_due(engine: Engine) -> None:
    # Given a job that may run in 60 s
    new = engine.put(delay=60.0)

    # When its message is delivered now
    with pytest.raises(Ignore):
        engine.deliver(new)

    # Then nothing ran, and an EARLY message waits out the rest of the delay
    assert engine.store.get_job(new.id).attempt == 0
    (dispatched,) = engine.hook.dispatched
    assert dispatched.why is Why.EARLY
    assert 0.0 < dispatched.countdown <= 60.0
    (message,) = engine.broker.take("default")
    assert (message.task_id, message.kwargs) == (str(new.id), {"value": 1})
    assert message.headers["eta"] is not None
    assert engine.calls == ["claim", "job_state", "dispatched"]


def test_a_stale_copy_of_a_job_waiting_in_the_backlog_is_dropped(engine: Engine) -> None:
    # Given a due job waiting in the backlog (its retry backoff is over, say) and a
    # stale copy of an old message of it, as the broker restores one
    new = engine.put(admitted=False)

    # When that copy is delivered
    with pytest.raises(Ignore):
        engine.deliver(new)

    # Then nothing ran and nothing was published (no EARLY copy with a countdown):
    # the job is still in the backlog, for its promotion to publish
    assert engine.hook.events == []
    assert engine.hook.dispatched == []
    assert engine.broker.take_all() == []
    assert engine.store.get_job(new.id).attempt == 0
    assert not engine.store.dispatched(new.id)
    assert engine.calls == ["claim", "job_state", "dispatched"]

    # And once promoted, its own message runs it
    engine.admit()
    (message,) = engine.broker.take("default")
    assert message.task_id == str(new.id)


def test_an_early_delivery_keeps_the_jobs_queue_and_priority(engine: Engine) -> None:
    # Given a job of a default-queue, priority-0 kind, enqueued on "cpu" at priority 7,
    # that may run in 60 s
    new = engine.put(delay=60.0, queue="cpu", priority=7)

    # When its message is delivered now
    with pytest.raises(Ignore):
        engine.deliver(new)

    # Then it is sent back to its own queue, at its own priority (broker priority 9 - 7)
    (dispatched,) = engine.hook.dispatched
    assert (dispatched.queue, dispatched.priority) == ("cpu", 7)
    assert [m.priority for m in engine.broker.take("cpu")] == [2]


def test_a_claim_that_cannot_reach_the_store_asks_again_later(engine: Engine) -> None:
    # Given a queued job and a database that is down
    new = engine.put(payload={"value": 4})
    engine.store.down = {"claim"}

    # When its message is delivered
    with pytest.raises(Ignore):
        engine.deliver(new)

    # Then a STORE_DOWN message asks again after db_retry_delay, with the same payload
    assert [(d.why, d.countdown) for d in engine.hook.dispatched] == [(Why.STORE_DOWN, 2.0)]
    (message,) = engine.broker.take("default")
    assert (message.task_id, message.kwargs) == (str(new.id), {"value": 4})
    # And the job is untouched, nothing else was asked of the store
    assert engine.store.jobs[new.id].status is Status.QUEUED
    assert engine.calls == ["claim"]


def test_a_payload_that_fails_validation_is_dead_as_bad_input(engine: Engine) -> None:
    # Given a stored job whose payload no longer matches its kind's schema
    new = engine.put(payload={"value": "seven"})

    # When it is delivered
    with pytest.raises(PayloadError) as caught:
        engine.deliver(new)

    # Then the job is dead as bad input on its first attempt, and not retried
    assert "value" in str(caught.value)
    job = engine.store.get_job(new.id)
    assert (job.status, job.attempt) == (Status.DEAD, 1)
    letter = engine.store.dead_letter_of(new.id)
    assert letter is not None
    assert (letter.reason, letter.retryable, letter.exc_type) == (
        "bad_input",
        False,
        "PayloadError",
    )
    assert engine.broker.take_all() == []


def test_a_handler_that_replaces_itself_is_recorded_as_done(engine: Engine) -> None:
    # Given a job whose handler ends by replacing itself with a canvas (Celery raises Ignore)
    def replaced(ctx: Any, payload: Any) -> None:
        raise Ignore()

    new = engine.put()

    # When it is delivered
    with pytest.raises(Ignore):
        engine.deliver(new, handled_by(replaced))

    # Then its step is recorded as succeeded, replaced
    job = engine.store.get_job(new.id)
    assert (job.status, job.result) == (Status.SUCCEEDED, {"replaced": True})
    assert engine.hook.events[-1] == ("after_record", Outcome.SUCCEEDED, 1)


def test_a_success_recorded_too_late_is_ignored(engine: Engine) -> None:
    # Given a job whose attempt outlives its lease: the sweeper requeues it meanwhile
    def overran(ctx: Any, payload: Any) -> str:
        ctx.runtime.store.requeue(ctx.job, delay=0.0, error={"type": "LeaseExpired"})
        return "late"

    new = engine.put()

    # When it is delivered and its handler returns
    with pytest.raises(Ignore):
        engine.deliver(new, handled_by(overran))

    # Then the success is not recorded: the job waits for its next attempt
    job = engine.store.get_job(new.id)
    assert (job.status, job.result) == (Status.QUEUED, None)
    assert "after_record" not in engine.hook.names()


def test_a_job_asked_to_stop_whose_attempt_fails_ends_cancelled(engine: Engine) -> None:
    # Given a job an operator cancels while it runs, whose handler then fails
    # before its next heartbeat
    def fails(ctx: Any, payload: Any) -> None:
        operations.cancel(ctx.runtime, ctx.job_id, actor="op")
        raise RuntimeError("failed while being cancelled")

    new = engine.put()

    # When it is delivered
    with pytest.raises((Ignore, Retry)):
        engine.deliver(new, handled_by(fails))

    # Then it ends cancelled, as the operator asked: not queued again, where no claim
    # and no sweep would ever take it (claims and sweeps skip cancel-requested jobs)
    job = engine.store.get_job(new.id)
    assert (job.status.value, job.cancel_requested) == ("cancelled", True)
    assert engine.broker.take_all() == []


def test_a_job_postponed_past_its_limit_is_dead_lettered(engine: Engine) -> None:
    # Given a limit of 600 s of postponing, and a job whose guard always says not yet
    engine.rt.settings = engine.rt.settings.model_copy(update={"max_postpone": 600.0})

    def refused(ctx: Any, payload: Any) -> None:
        raise JobPostponed("quota spent", delay=30.0, reason="quota")

    new = engine.put()

    # When it is postponed, then promoted and delivered again 300 s and 600 s after
    # the first time
    for _ in range(2):
        with pytest.raises(Retry):
            engine.deliver(new, handled_by(refused))
        engine.clock.advance(300.0)
        engine.admit()
        assert [m.task_id for m in engine.broker.take("default")] == [str(new.id)]
    with pytest.raises(JobPostponed):
        engine.deliver(new, handled_by(refused))

    # Then the first two were postponements, counted, and the third dead-letters it
    job = engine.store.get_job(new.id)
    assert (job.status, job.attempt, job.postponements) == (Status.DEAD, 1, 2)
    outcomes = [(r.outcome, r.reason) for r in engine.hook.recorded]
    assert outcomes == [(Outcome.POSTPONED, "quota")] * 2 + [(Outcome.DEAD, "postponed_too_long")]
    letter = engine.store.dead_letter_of(new.id)
    assert letter is not None
    assert (letter.reason, letter.retryable, letter.exc_type) == (
        "postponed_too_long",
        False,
        "JobPostponed",
    )
    assert letter.message.startswith("postponed 2 times since ")
    assert letter.message.endswith(
        "for longer than the kind's limit of 600 s; last postponed for quota: quota spent"
    )
    assert engine.broker.take_all() == []


def test_postponing_is_bounded_by_a_day_by_default(engine: Engine) -> None:
    # Given the default settings and a kind that sets no limit of its own
    assert Settings().max_postpone == 86_400.0
    assert ECHO.max_postpone is None
    assert ECHO.postpone_limit(Settings()) == 86_400.0
    # While a kind's own limit wins
    assert dataclasses.replace(ECHO, max_postpone=5.0).postpone_limit(Settings()) == 5.0
