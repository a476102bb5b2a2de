"""Enqueueing: validate, store, dispatch; and the results that read the job's row."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from celery.exceptions import TimeoutError as CeleryTimeoutError
from celery.result import AsyncResult

from jobsys import enqueue, enqueue_many
from jobsys.engine.dispatch import Dispatch, Why
from jobsys.engine.enqueue import submit
from jobsys.engine.hooks import Hook
from jobsys.engine.results import JobResult
from jobsys.errors import (
    JobCancelled,
    JobDeadError,
    JobsysError,
    OptionError,
    PayloadError,
    UnknownKindError,
)
from jobsys.store import Status
from tests.support.engine import ECHO, URGENT, Engine


def test_enqueue_stores_the_job_in_the_backlog_and_admission_publishes_it_when_due(
    engine: Engine,
) -> None:
    # Given a hook that notes what the store was asked before each dispatch
    asked: list[list[str]] = []

    class Witness(Hook):
        def before_dispatch(self, dispatch: Dispatch) -> Dispatch:
            asked.append(list(engine.store.calls))
            return dispatch

    engine.rt.hooks.add(Witness())

    # When a job is enqueued with a priority and a delay
    result = enqueue(
        ECHO.kind, user_id="u1", payload={"value": 2}, priority=3, delay=30.0, runtime=engine.rt
    )

    # Then its row was inserted once, in the backlog, and nothing was published
    assert isinstance(result, JobResult)
    assert engine.store.calls == ["insert"]
    job = engine.store.get_job(result.job_id)
    assert (job.user_id, job.payload, job.priority, job.max_attempts) == ("u1", {"value": 2}, 3, 3)
    assert job.run_after - job.created_at == timedelta(seconds=30)
    assert not engine.store.dispatched(job.id)
    engine.forget()
    # And admission leaves it in PostgreSQL until it is due (no broker ETA)
    engine.admit()
    assert engine.broker.take_all() == [] and engine.hook.dispatched == []
    engine.clock.advance(30)
    engine.admit()
    # Promoted (once too early, once when due) before its message was published
    assert asked == [["promote", "next_due", "promote"]]
    assert [(d.why, d.job_id, d.countdown) for d in engine.hook.dispatched] == [
        (Why.ADMIT, job.id, 0.0)
    ]
    (message,) = engine.broker.take("default")
    assert (message.task_id, message.priority, message.kwargs) == (result.id, 6, {"value": 2})
    assert engine.store.dispatched(job.id)


def test_the_kinds_defaults_apply_when_enqueue_gives_none(engine: Engine) -> None:
    # When a job of a kind with its own queue and priority is enqueued without either
    result = enqueue(URGENT.kind, user_id=42, runtime=engine.rt)

    # Then it takes the kind's, and an integer user id as a string
    job = engine.store.get_job(result.job_id)
    assert (job.user_id, job.queue, job.priority, job.payload) == ("42", "cpu", 6, {"value": 0})
    engine.admit("cpu")
    assert [m.priority for m in engine.broker.take("cpu")] == [3]


def test_a_canvas_member_is_dispatched_with_its_celery_options(engine: Engine) -> None:
    # When a job is submitted as a member of a group (as Celery's canvas applies it)
    result = submit(engine.rt, ECHO, "u1", {"value": 1}, group_id="g1", group_index=0, countdown=0)

    # Then it is dispatched as a CANVAS member and answered with Celery's own result
    assert type(result) is AsyncResult
    assert engine.hook.whys() == [Why.CANVAS]
    (message,) = engine.broker.take("default")
    assert (message.task_id, message.headers["group"]) == (result.id, "g1")


def test_a_plain_job_with_celery_options_is_a_first_dispatch(engine: Engine) -> None:
    # When a job that is in no canvas is applied with one of Celery's options
    result = submit(engine.rt, ECHO, "u1", {"value": 1}, expires=600)

    # Then it is published at once as a first publish (the row does not hold Celery's
    # options, so it cannot wait in the backlog), the option honoured
    assert isinstance(result, JobResult)
    assert engine.hook.whys() == [Why.FIRST]
    (message,) = engine.broker.take("default")
    assert message.headers["expires"] is not None
    assert engine.store.dispatched(result.job_id)


def test_enqueue_of_an_unknown_kind_names_it(engine: Engine) -> None:
    with pytest.raises(UnknownKindError, match=r"unit\.nope"):
        enqueue("unit.nope", user_id="u1", runtime=engine.rt)
    assert engine.store.calls == []


def test_enqueue_many_inserts_all_into_the_backlog_and_admission_publishes_them(
    engine: Engine,
) -> None:
    # When three jobs are enqueued at once
    results = enqueue_many(
        ECHO.kind, [("u1", {"value": 1}), ("u2", {"value": 2}), ["u3", None]], runtime=engine.rt
    )

    # Then one insert stored them all, and nothing was published yet
    assert engine.store.calls == ["insert_many"]
    assert [engine.store.get_job(r.job_id).user_id for r in results] == ["u1", "u2", "u3"]
    assert engine.broker.take_all() == []
    # And a promotion publishes each of them once
    engine.admit()
    assert engine.hook.whys() == [Why.ADMIT] * 3
    assert sorted(m.task_id for m in engine.broker.take("default")) == sorted(r.id for r in results)


def test_enqueue_many_given_dicts_names_the_expected_shape(engine: Engine) -> None:
    # When enqueue_many is given a list of dicts (a natural mistake)
    with pytest.raises(PayloadError) as caught:
        enqueue_many(ECHO.kind, [{"value": 1}, {"value": 2}], runtime=engine.rt)  # type: ignore[list-item]

    # Then the error says what shape it wants, for each item by index
    text = str(caught.value)
    assert "(user_id, payload)" in text
    assert [p.split(":")[0] for p in caught.value.problems] == ["item 0", "item 1"]
    # And nothing was stored or published
    assert engine.store.calls == []
    assert engine.broker.take_all() == []


def test_enqueue_many_names_every_bad_item_by_index(engine: Engine) -> None:
    # Given a batch whose items 1, 2 and 4 are bad in different ways
    batch: list[Any] = [
        ("u1", {"value": 1}),
        ("u2", {"value": "two"}),
        ("", {"value": 3}),
        ("u4", {"value": 4}),
        "u5",
    ]

    # When it is enqueued
    with pytest.raises(PayloadError) as caught:
        enqueue_many(ECHO.kind, batch, runtime=engine.rt)

    # Then each bad item is named by its index, and nothing was stored
    problems = caught.value.problems
    assert [p.split(":")[0] for p in problems] == ["item 1", "item 2", "item 4"]
    assert "value" in problems[0]
    assert "user_id" in problems[1]
    assert "(user_id, payload)" in problems[2]
    assert engine.store.calls == []
    assert engine.broker.take_all() == []


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"user_id": ""}, "user_id"),
        ({"user_id": None}, "user_id"),
        ({"user_id": True}, "user_id"),
        ({"priority": 10}, "priority"),
        ({"priority": -1}, "priority"),
        ({"priority": 2.5}, "priority"),
        ({"delay": -1.0}, "delay"),
        ({"delay": float("inf")}, "delay"),
        ({"delay": "5"}, "delay"),
        ({"delay": 1e12}, "delay"),
    ],
)
def test_bad_options_are_option_errors(engine: Engine, options: dict[str, Any], field: str) -> None:
    # When a job is enqueued with a bad option
    kwargs: dict[str, Any] = {"user_id": "u1", **options}
    with pytest.raises(OptionError) as caught:
        enqueue(ECHO.kind, runtime=engine.rt, **kwargs)

    # Then the error names the option; it is a JobsysError and a ValueError
    assert caught.value.field == field
    assert isinstance(caught.value, JobsysError)
    assert isinstance(caught.value, ValueError)
    assert field in str(caught.value)
    # And nothing was stored or published
    assert engine.store.calls == []
    assert engine.broker.take_all() == []


# -- results read the row --------------------------------------------------------


def test_a_results_state_follows_the_job_through_its_life(engine: Engine) -> None:
    # Given an enqueued job, and its result
    new = engine.put()
    result = JobResult(str(new.id), runtime=engine.rt)
    store, states = engine.store, []

    # When the job is claimed, fails once, is claimed again and succeeds
    states.append(result.state)
    job = store.claim(new.id, "u1", lease=60.0, worker="node-1", pid=1)
    assert job is not None
    states.append(result.state)
    store.requeue(job, delay=0.0, error={"type": "RuntimeError", "message": "once"})
    states.append(result.state)
    job = store.claim(new.id, "u1", lease=60.0, worker="node-1", pid=1)
    assert job is not None
    store.succeed(job, {"rows": 3})
    states.append(result.state)

    # Then its state went PENDING, STARTED, RETRY, SUCCESS, and it holds the result
    assert states == ["PENDING", "STARTED", "RETRY", "SUCCESS"]
    assert result.status == "SUCCESS"
    assert (result.ready(), result.successful(), result.failed()) == (True, True, False)
    assert result.result == {"rows": 3}
    assert result.get(timeout=0) == {"rows": 3}


def test_a_dead_jobs_result_raises_its_error(engine: Engine) -> None:
    # Given a job buried on its first attempt
    new = engine.put()
    job = engine.store.claim(new.id, "u1", lease=60.0, worker="node-1", pid=1)
    assert job is not None
    error = {"attempt": 1, "type": "KeyError", "message": "'id'", "reason": "bug"}
    letter = engine.store.bury(
        job, error=error, traceback="Traceback: KeyError", reason="bug", retryable=True, actor="n"
    )
    result = JobResult(str(new.id), runtime=engine.rt)

    # When its result is asked for
    with pytest.raises(JobDeadError) as caught:
        result.get(timeout=0)

    # Then it is a FAILURE whose error says what the last attempt raised, and where to look
    assert (result.state, result.ready(), result.failed()) == ("FAILURE", True, True)
    dead = caught.value
    assert (dead.job_id, dead.exc_type, dead.error_message, dead.reason, dead.dead_letter) == (
        new.id,
        "KeyError",
        "'id'",
        "bug",
        letter,
    )
    assert isinstance(result.result, JobDeadError)
    assert isinstance(result.get(propagate=False), JobDeadError)
    assert result.traceback == "Traceback: KeyError"


def test_a_cancelled_jobs_result_is_revoked(engine: Engine) -> None:
    # Given a job cancelled while queued
    new = engine.put()
    engine.store.request_cancel(new.id, actor="op")
    result = JobResult(str(new.id), runtime=engine.rt)

    # Then its result is REVOKED and get() raises JobCancelled
    assert (result.state, result.ready(), result.successful()) == ("REVOKED", True, False)
    with pytest.raises(JobCancelled):
        result.get(timeout=0)


def test_get_of_an_unfinished_job_times_out(engine: Engine) -> None:
    # Given a job still queued
    new = engine.put()
    result = JobResult(str(new.id), runtime=engine.rt)

    # Then get() gives up at its timeout, naming the job's status
    with pytest.raises(CeleryTimeoutError, match="queued"):
        result.get(timeout=0)
    assert (result.state, result.ready(), result.result) == ("PENDING", False, None)
    assert engine.store.get_job(new.id).status is Status.QUEUED
