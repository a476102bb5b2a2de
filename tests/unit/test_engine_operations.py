"""Operator actions: retrying a dead letter, cancelling a job."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from jobsys.engine import operations
from jobsys.engine.dispatch import Why
from jobsys.engine.hooks import Outcome
from jobsys.engine.registry import JobSpec
from jobsys.engine.results import JobResult
from jobsys.engine.worker import unknown_kind
from jobsys.errors import InvalidTransitionError, JobNotFoundError
from jobsys.store import Status
from tests.support.engine import KEYED, URGENT, Engine


def buried(engine: Engine, spec: JobSpec = URGENT, **changes: Any) -> tuple[uuid.UUID, int]:
    """A job buried on its first attempt: of the urgent kind (queue cpu, priority 6)
    unless another is given; one put into the backlog is promoted first."""
    new = engine.put(spec, **changes)
    if not new.admitted:
        engine.admit(new.queue)
        engine.broker.take_all()
    job = engine.store.claim(new.id, "u1", lease=60.0, worker="node-1", pid=1)
    assert job is not None
    error = {"attempt": 1, "type": "RuntimeError", "message": "boom", "reason": "bug"}
    letter = engine.store.bury(
        job, error=error, traceback="", reason="bug", retryable=True, actor="node-1"
    )
    assert letter is not None
    engine.forget()
    return new.id, letter


def test_retrying_a_dead_letter_revives_the_job_into_the_backlog(engine: Engine) -> None:
    # Given a dead-lettered job (admission on)
    job_id, letter = buried(engine)

    # When an operator retries it from the dead-letter queue
    retried = operations.retry_dead_letter(engine.rt, letter, actor="op")

    # Then it is queued with a fresh set of attempts, and nothing is published yet:
    # it waits for its user's fair share like an enqueued job
    assert retried == job_id
    job = engine.store.get_job(job_id)
    assert (job.status, job.attempt, job.errors) == (Status.QUEUED, 0, [])
    assert engine.hook.dispatched == []
    assert engine.broker.take_all() == []
    assert not engine.store.dispatched(job_id)
    # And a promotion of its queue publishes it
    engine.admit("cpu")
    assert [(d.why, d.job_id) for d in engine.hook.dispatched] == [(Why.ADMIT, job_id)]
    assert [m.task_id for m in engine.broker.take("cpu")] == [str(job_id)]


def test_with_admission_off_a_retried_dead_letter_is_published_at_once(engine: Engine) -> None:
    # Given a dead-lettered job, and admission off
    job_id, letter = buried(engine)
    engine.rt.settings = engine.rt.settings.model_copy(update={"admission": False})

    # When an operator retries it from the dead-letter queue
    retried = operations.retry_dead_letter(engine.rt, letter, actor="op")

    # Then it is queued with a fresh set of attempts and published on the DLQ path
    assert retried == job_id
    job = engine.store.get_job(job_id)
    assert (job.status, job.attempt, job.errors) == (Status.QUEUED, 0, [])
    assert [(d.why, d.job_id, d.queue, d.priority) for d in engine.hook.dispatched] == [
        (Why.DLQ, job_id, "cpu", 6)
    ]
    assert engine.hook.names() == ["before_dispatch", "after_dispatch"]
    (message,) = engine.broker.take("cpu")
    assert (message.task_id, message.priority) == (str(job_id), 3)


def test_retrying_a_keyed_dead_letter_leaves_it_to_admission(engine: Engine) -> None:
    # Given a dead-lettered job of a kind with a concurrency key
    job_id, letter = buried(engine, KEYED, concurrency_key="k:u1", concurrency=1, admitted=False)

    # When an operator retries it from the dead-letter queue
    assert operations.retry_dead_letter(engine.rt, letter, actor="op") == job_id

    # Then nothing is published past its key: it waits in the backlog, and its
    # promotion publishes it
    assert engine.hook.dispatched == []
    assert engine.broker.take_all() == []
    assert not engine.store.dispatched(job_id)
    engine.admit()
    assert [m.task_id for m in engine.broker.take("default")] == [str(job_id)]


def test_a_second_retry_of_the_same_letter_is_refused(engine: Engine) -> None:
    # Given a dead letter already retried
    job_id, letter = buried(engine)
    operations.retry_dead_letter(engine.rt, letter, actor="op")
    engine.broker.take_all()
    engine.forget()

    # When it is retried again
    with pytest.raises(InvalidTransitionError) as caught:
        operations.retry_dead_letter(engine.rt, letter, actor="op")

    # Then the error names the job and its status, and nothing is published
    assert (caught.value.job_id, caught.value.status) == (job_id, "queued")
    assert engine.hook.dispatched == []
    assert engine.broker.take_all() == []


def test_an_old_letter_of_a_job_that_died_again_is_not_retried_twice(engine: Engine) -> None:
    # Given a letter retried once, whose job then died again (a second letter)
    job_id, first = buried(engine)
    operations.retry_dead_letter(engine.rt, first, actor="op")
    engine.admit("cpu")
    engine.broker.take_all()
    job = engine.store.claim(job_id, "u1", lease=60.0, worker="node-1", pid=1)
    assert job is not None
    error = {"attempt": 1, "type": "RuntimeError", "message": "again", "reason": "bug"}
    second = engine.store.bury(
        job, error=error, traceback="", reason="bug", retryable=True, actor="node-1"
    )
    engine.forget()

    # When the first letter is retried again
    with pytest.raises(InvalidTransitionError) as caught:
        operations.retry_dead_letter(engine.rt, first, actor="op")

    # Then it says the letter was retried already and names the newest one; the job stays dead
    message = str(caught.value)
    assert f"retry dead letter {first} again: it was retried at" in message
    assert f"retry its newest dead letter {second}" in message
    assert engine.store.get_job(job_id).status is Status.DEAD
    assert engine.hook.dispatched == []


def test_retrying_an_unknown_letter_is_not_found(engine: Engine) -> None:
    with pytest.raises(JobNotFoundError):
        operations.retry_dead_letter(engine.rt, 999, actor="op")


def test_cancel_a_queued_job_records_it_cancelled(engine: Engine) -> None:
    # Given a queued job
    new = engine.put()

    # When an operator cancels it
    status = operations.cancel(engine.rt, new.id, actor="op")

    # Then it is cancelled at once and the hooks hear of it
    assert status is Status.CANCELLED
    assert engine.hook.events == [("after_record", Outcome.CANCELLED, 0)]
    assert engine.hook.recorded[0].actor == "op"


def test_cancel_of_a_finished_job_is_refused(engine: Engine) -> None:
    # Given a job cancelled already
    new = engine.put()
    operations.cancel(engine.rt, new.id, actor="op")

    # When it is cancelled again
    with pytest.raises(InvalidTransitionError) as caught:
        operations.cancel(engine.rt, new.id, actor="op")

    # Then the error says it is cancelled already
    assert caught.value.status == "cancelled"


def test_a_job_no_worker_knows_is_sent_again_then_buried_at_the_limit(engine: Engine) -> None:
    # Given a queued job whose kind this worker lacks (unknown_kind_deliveries is 3)
    new = engine.put()

    # When it is delivered here three times
    for _ in range(3):
        unknown_kind(engine.rt, new.id, new.kind, "node-9")

    # Then the first two deliveries send it again at once, and the third buries it
    assert [(d.why, d.job_id, d.countdown) for d in engine.hook.dispatched] == [
        (Why.SWEEP, new.id, 0.0)
    ] * 2
    assert len(engine.broker.take("default")) == 2
    letter = engine.store.dead_letter_of(new.id)
    assert letter is not None and (letter.reason, letter.worker) == ("unknown_kind", "node-9")
    (recorded,) = engine.hook.recorded
    assert (recorded.outcome, recorded.reason, recorded.actor) == (
        Outcome.DEAD,
        "unknown_kind",
        "node-9",
    )


def test_revoking_a_result_cancels_the_job_in_the_store(engine: Engine) -> None:
    # Given a queued job's result
    new = engine.put()
    result = JobResult(str(new.id), runtime=engine.rt)

    # When it is revoked, as Flower's Revoke button does
    result.revoke()

    # Then the job is cancelled in the store
    assert result.state == "REVOKED"
    assert engine.store.get_job(new.id).status is Status.CANCELLED
