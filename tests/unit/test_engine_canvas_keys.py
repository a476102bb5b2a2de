"""Keyed canvas members: they wait for admission with their place in the canvas in the row."""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

import pytest
from celery.exceptions import Retry
from celery.result import AsyncResult

from jobsys.engine.dispatch import Why
from jobsys.engine.enqueue import submit
from jobsys.errors import JobError, UnstorableError
from jobsys.store import NewJob, Status
from tests.support.engine import CALLBACK, ECHO, KEYED, TASKS, Engine


def member(engine: Engine, index: int, **options: Any) -> AsyncResult[Any]:
    """Submit a keyed job as Celery's chord applies its header's members."""
    chord = TASKS[CALLBACK].s()
    result: AsyncResult[Any] = submit(
        engine.rt, KEYED, "u1", {"value": index}, group_id="g1", group_index=index, chord=chord
    )
    return result


def fails(ctx: Any, payload: Any) -> None:
    raise JobError("upstream hiccup", reason="flaky", retry_after=5.0)


def admitted(engine: Engine, result: AsyncResult[Any] | Any) -> tuple[Any, NewJob]:
    """Admit the keyed job ``result`` stands for: its message, and the job to deliver it as."""
    engine.admit()
    (message,) = engine.broker.take("default")
    new = NewJob(
        id=uuid.UUID(result.id),
        user_id="u1",
        kind=KEYED.kind,
        queue="default",
        payload={},
        max_attempts=3,
    )
    engine.forget()
    return message, new


def test_keyed_chord_members_wait_for_their_key_and_go_out_in_their_chord(
    engine: Engine,
) -> None:
    # When two chord members sharing a key of concurrency 1 are submitted
    first, second = member(engine, 0), member(engine, 1)

    # Then both are only rows in the backlog, answered with Celery's own results
    assert type(first) is AsyncResult and type(second) is AsyncResult
    assert engine.store.calls == ["insert", "insert"]
    assert engine.hook.dispatched == [] and engine.broker.take_all() == []

    # And admission publishes one, on Celery's single-message path with its place in
    # the chord, while the other waits for the key
    engine.admit()
    (message,) = engine.broker.take("default")
    index = [first.id, second.id].index(message.task_id)
    assert (message.headers["group"], message.headers["group_index"]) == ("g1", index)
    assert message.embed["chord"]["task"] == CALLBACK
    assert [d.why for d in engine.hook.dispatched] == [Why.ADMIT]
    waiting = [first, second][1 - index]
    assert not engine.store.dispatched(uuid.UUID(waiting.id))


def test_an_unkeyed_chord_member_is_still_published_at_once(engine: Engine) -> None:
    # When a chord member without a key is submitted
    result = submit(engine.rt, ECHO, "u1", {"value": 1}, group_id="g1", chord=TASKS[CALLBACK].s())

    # Then it is published at once, as before
    assert engine.hook.whys() == [Why.CANVAS]
    (message,) = engine.broker.take("default")
    assert message.task_id == result.id


def test_a_keyed_members_options_that_json_cannot_hold_are_refused_and_nothing_stored(
    engine: Engine,
) -> None:
    # When a keyed member arrives with a Celery option JSON cannot hold
    with pytest.raises(UnstorableError, match="canvas member's Celery options"):
        submit(engine.rt, KEYED, "u1", {"value": 1}, group_id="g1", link=object())

    # Then nothing was stored or published
    assert engine.store.calls == [] and engine.broker.take_all() == []


def test_a_keyed_chord_member_that_fails_is_retried_through_the_backlog_in_its_chord(
    engine: Engine,
) -> None:
    # Given a keyed chord member, promoted, whose handler fails once
    result = member(engine, 3)
    first, new = admitted(engine, result)
    job_id = new.id
    request = {"group": "g1", "group_index": 3, "chord": first.embed["chord"]}

    # When its message is delivered and the attempt fails
    with pytest.raises(Retry):
        engine.deliver(new, dataclasses.replace(KEYED, handler=fails), **request)

    # Then nothing is published at once: the retry waits in the backlog
    job = engine.store.get_job(job_id)
    assert (job.status, job.attempt) == (Status.QUEUED, 1)
    assert engine.broker.take_all() == [] and engine.hook.dispatched == []
    assert not engine.store.dispatched(job_id)

    # And once due, admission publishes it again in its chord, as Celery's retry would
    engine.clock.advance(5)
    engine.admit()
    (again,) = engine.broker.take("default")
    assert again.task_id == result.id
    assert (again.headers["group"], again.headers["group_index"]) == ("g1", 3)
    assert again.headers["retries"] == 1
    assert again.embed["chord"]["task"] == CALLBACK


def test_with_admission_off_a_keyed_jobs_retry_still_waits_for_its_key(engine: Engine) -> None:
    # Given admission off, and a keyed job (no canvas) promoted, whose handler fails once
    engine.rt.settings = engine.rt.settings.model_copy(update={"admission": False})
    result = submit(engine.rt, KEYED, "u1", {"value": 1})
    first, new = admitted(engine, result)
    job_id = new.id

    # When its attempt fails
    with pytest.raises(Retry):
        engine.deliver(new, dataclasses.replace(KEYED, handler=fails))

    # Then its retry waits in the backlog for its key, as the job did at enqueue,
    # instead of being published at once past the key
    assert engine.broker.take_all() == [] and engine.hook.dispatched == []
    assert not engine.store.dispatched(job_id)
    engine.clock.advance(5)
    engine.admit()
    (again,) = engine.broker.take("default")
    assert again.task_id == first.task_id == result.id
