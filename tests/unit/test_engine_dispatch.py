"""Dispatch on the in-memory broker: what a message carries, and the hooks on every path."""

from __future__ import annotations

import base64
import dataclasses
import json
import uuid
from typing import Any

import pytest

from jobsys.engine.dispatch import REPR_LIMIT, Dispatch, Why, canvas_of
from jobsys.engine.hooks import Hooks
from tests.support.engine import CALLBACK, ECHO, TASKS, URGENT, Engine, Recorder


def dispatch(**changes: Any) -> Dispatch:
    values: dict[str, Any] = {
        "job_id": uuid.uuid4(),
        "user_id": "u1",
        "kind": ECHO.kind,
        "queue": "default",
        "why": Why.FIRST,
        "payload": {"value": 3},
    }
    values.update(changes)
    return Dispatch(**values)


def test_send_puts_the_jobs_message_on_the_broker(engine: Engine) -> None:
    # Given a dispatch of a priority-2 job
    d = dispatch(priority=2)

    # When it is sent
    engine.rt.dispatcher.send(d)

    # Then one message waits on its queue: the job id as task id, the kind, the user as
    # the one argument, the payload for Flower, and the broker priority 9 - 2
    (message,) = engine.broker.take("default")
    assert (message.task_id, message.kind) == (str(d.job_id), ECHO.kind)
    assert (message.args, message.kwargs) == (["u1"], {"value": 3})
    assert message.priority == 7
    assert message.headers["eta"] is None
    assert message.headers["ignore_result"] is True
    assert engine.broker.take_all() == []


def test_send_runs_the_hooks_before_and_after_and_records_why(engine: Engine) -> None:
    # Given a hook that adds trace headers to every dispatch
    tracing = Recorder(headers={"traceparent": "00-abc-01"})
    engine.rt.hooks.add(tracing)
    d = dispatch(why=Why.RETRY, queue="cpu", countdown=30.0)

    # When the dispatch is sent
    engine.rt.dispatcher.send(d)

    # Then both hooks saw it before and after, in order, with why it was sent
    assert engine.hook.events == [
        ("before_dispatch", Why.RETRY, d.job_id),
        ("after_dispatch", ((Why.RETRY, d.job_id),)),
    ]
    assert tracing.names() == ["before_dispatch", "after_dispatch"]
    # And the evolved headers arrived on the message, which waits out its countdown
    (message,) = engine.broker.take("cpu")
    assert message.headers["traceparent"] == "00-abc-01"
    assert message.headers["eta"] is not None


def test_send_each_publishes_every_dispatch_and_runs_the_hooks_once_after(
    engine: Engine,
) -> None:
    # Given three dispatches on two queues, and a hook adding headers
    engine.rt.hooks.add(Recorder(headers={"traceparent": "t"}))
    ds = [dispatch(why=Why.SWEEP), dispatch(why=Why.SWEEP, queue="cpu"), dispatch(why=Why.SWEEP)]

    # When they are sent one by one on one producer
    engine.rt.dispatcher.send_each(ds)

    # Then each was seen before it was sent, and all of them once after
    ids = [d.job_id for d in ds]
    assert engine.hook.events == [
        *[("before_dispatch", Why.SWEEP, i) for i in ids],
        ("after_dispatch", tuple((Why.SWEEP, i) for i in ids)),
    ]
    # And every message is on its queue, in order, with the hook's headers
    default, cpu = engine.broker.take("default"), engine.broker.take("cpu")
    assert [m.task_id for m in default] == [str(ids[0]), str(ids[2])]
    assert [m.task_id for m in cpu] == [str(ids[1])]
    assert {m.headers["traceparent"] for m in default + cpu} == {"t"}


def test_send_each_of_nothing_runs_no_hook(engine: Engine) -> None:
    engine.rt.dispatcher.send_each([])
    engine.rt.dispatcher.send_many([])
    assert engine.hook.events == []
    assert engine.broker.take_all() == []


def test_the_bulk_path_falls_back_to_single_sends_on_the_memory_transport(
    engine: Engine,
) -> None:
    # Given bulk dispatches of three jobs at priorities 0, 4 and 9, and a hook adding headers
    engine.rt.hooks.add(Recorder(headers={"traceparent": "bulk"}))
    ds = [dispatch(why=Why.BULK, priority=p, payload={"value": p}) for p in (0, 4, 9)]

    # When they are prepared, then pushed
    prepared = engine.rt.dispatcher.prepare(ds)
    before_push = list(engine.hook.events)
    engine.rt.dispatcher.push(prepared)

    # Then the hooks ran before each dispatch while preparing, and once after the push
    ids = [d.job_id for d in ds]
    assert before_push == [("before_dispatch", Why.BULK, i) for i in ids]
    assert engine.hook.events[3:] == [("after_dispatch", tuple((Why.BULK, i) for i in ids))]
    # And each message arrived through Celery's path, with its priority and the headers
    messages = engine.broker.take("default")
    assert [(m.task_id, m.priority, m.kwargs) for m in messages] == [
        (str(ids[0]), 9, {"value": 0}),
        (str(ids[1]), 5, {"value": 4}),
        (str(ids[2]), 0, {"value": 9}),
    ]
    assert {m.headers["traceparent"] for m in messages} == {"bulk"}


def test_send_many_keeps_delayed_and_canvas_members_apart_from_the_bulk(engine: Engine) -> None:
    # Given a plain dispatch, a delayed one and a chord member
    plain = dispatch(why=Why.BULK)
    delayed = dispatch(why=Why.BULK, countdown=60.0)
    member = dispatch(why=Why.CANVAS, canvas={"group_id": "g1", "group_index": 0})

    # When they are sent in bulk
    prepared = engine.rt.dispatcher.prepare([plain, delayed, member])
    engine.rt.dispatcher.send_many([plain, delayed, member])

    # Then only the plain one was built as a bulk envelope, and all three were published
    assert [d.job_id for d in prepared.bulk] == [plain.job_id]
    assert [d.job_id for d in prepared.single] == [delayed.job_id, member.job_id]
    assert sum(len(v) for v in prepared.lists.values()) == 1
    messages = {m.task_id: m for m in engine.broker.take("default")}
    assert set(messages) == {str(plain.job_id), str(delayed.job_id), str(member.job_id)}
    assert messages[str(delayed.job_id)].headers["eta"] is not None
    assert messages[str(member.job_id)].headers["group"] == "g1"


def test_canvas_options_ride_on_the_message(engine: Engine) -> None:
    # Given a chord member of a chain: its group, chord callback, link and ids
    callback = TASKS[CALLBACK].s()
    link = TASKS[CALLBACK].s(1)
    canvas = {
        "group_id": "g-1",
        "group_index": 2,
        "chord": callback,
        "link": [link],
        "root_id": "root-1",
        "parent_id": "parent-1",
    }
    d = dispatch(kind=URGENT.kind, queue="cpu", why=Why.CANVAS, canvas=canvas)

    # When it is sent
    engine.rt.dispatcher.send(d)

    # Then the message keeps its place in the canvas
    (message,) = engine.broker.take("cpu")
    assert (message.headers["group"], message.headers["group_index"]) == ("g-1", 2)
    assert (message.headers["root_id"], message.headers["parent_id"]) == ("root-1", "parent-1")
    assert message.embed["chord"]["task"] == CALLBACK
    assert [c["args"] for c in message.embed["callbacks"]] == [[1]]
    # And, unlike a plain job, it keeps its task's result setting (a chord counts results)
    assert message.headers["ignore_result"] is False
    assert d.in_canvas is True
    assert engine.hook.whys() == [Why.CANVAS]


def test_a_dispatch_from_inside_a_job_is_a_follow_up_for_the_hooks(engine: Engine) -> None:
    # Given a dispatch published by another job's attempt
    parent = uuid.uuid4()
    d = dispatch(parent_id=parent)

    # When it is sent
    engine.rt.dispatcher.send(d)

    # Then the hook heard of it as that job's follow-up, between before and after
    assert engine.hook.names() == ["before_dispatch", "on_follow_up", "after_dispatch"]
    assert engine.hook.events[1] == ("on_follow_up", parent, d.job_id)


def test_hooks_run_in_order_each_evolving_the_dispatch() -> None:
    # Given two hooks adding headers, the second overriding one of the first's
    first, second = Recorder(headers={"a": 1, "b": 1}), Recorder(headers={"b": 2})
    hooks = Hooks([first, second, first])  # the same hook twice counts once

    # When a dispatch passes through them
    out = hooks.before_dispatch(dispatch())

    # Then both ran in order on it, the second seeing the first's headers
    assert len(hooks) == 2
    assert dict(out.headers) == {"a": 1, "b": 2}
    assert dict(second.dispatched[0].headers) == {"a": 1, "b": 2}


def test_a_failing_observer_hook_does_not_stop_the_dispatch(engine: Engine) -> None:
    # Given a hook that fails after every dispatch, before the recording one
    class Broken(Recorder):
        def after_dispatch(self, dispatches: Any) -> None:
            raise RuntimeError("observer down")

    engine.rt.hooks.remove(engine.hook)
    engine.rt.hooks.add(Broken())
    engine.rt.hooks.add(engine.hook)
    d = dispatch()

    # When a dispatch is sent
    engine.rt.dispatcher.send(d)

    # Then it was published and the next hook still heard of it
    assert [m.task_id for m in engine.broker.take()] == [str(d.job_id)]
    assert engine.hook.names() == ["before_dispatch", "after_dispatch"]


def test_canvas_of_a_request_counts_a_retry() -> None:
    # Given a request of a chord member retried once before
    task = TASKS[ECHO.kind]
    chord = TASKS[CALLBACK].s()
    task.push_request(
        id="j1", group="g1", group_index=1, chord=chord, root_id="r1", retries=1, headers={}
    )
    try:
        # When its canvas options are taken for another send, and for a retry
        again = canvas_of(task.request)
        retry = canvas_of(task.request, retried=True)
    finally:
        task.pop_request()

    # Then both keep its place; the retry counts one more Celery retry
    assert {k: again[k] for k in ("group_id", "group_index", "chord", "root_id")} == {
        "group_id": "g1",
        "group_index": 1,
        "chord": chord,
        "root_id": "r1",
    }
    assert (again["retries"], retry["retries"]) == (1, 2)
    assert "task_id" not in again


def test_dispatch_values_are_frozen_and_evolve() -> None:
    # Given a dispatch
    d = dispatch()

    # When it evolves
    later = d.evolve(countdown=5.0, why=Why.EARLY)

    # Then a new value results and the first is unchanged, and cannot be changed
    assert (later.countdown, later.why, later.job_id) == (5.0, Why.EARLY, d.job_id)
    assert (d.countdown, d.why) == (0.0, Why.FIRST)
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.countdown = 1.0  # type: ignore[misc]


def test_the_bulk_paths_redis_envelopes_carry_what_celery_would(engine: Engine) -> None:
    # Given a hook adding a header, and bulk dispatches at priorities 0 and 5, one with a
    # payload too long to show whole
    engine.rt.hooks.add(Recorder(headers={"traceparent": "t"}))
    low = dispatch(why=Why.BULK, payload={"value": 1})
    high = dispatch(why=Why.BULK, priority=5, payload={"blob": "x" * 5000})

    # When they are prepared for the Redis transport
    prepared = engine.rt.dispatcher.prepare([low, high])

    # Then each goes to its priority's list (the queue itself only for the most urgent), as an
    # envelope whose body is Celery's: (user_id,), the payload, an empty canvas
    assert set(prepared.lists) == {"default:9", "default:4"}
    for key, d in (("default:9", low), ("default:4", high)):
        (raw,) = prepared.lists[key]
        envelope = json.loads(raw)
        args, kwargs, embed = json.loads(base64.b64decode(envelope["body"]))
        assert (args, kwargs) == (["u1"], dict(d.payload))
        assert embed == {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
        headers = envelope["headers"]
        assert (headers["id"], headers["root_id"], headers["task"]) == (
            str(d.job_id),
            str(d.job_id),
            ECHO.kind,
        )
        assert (headers["traceparent"], headers["argsrepr"]) == ("t", "('u1',)")
        assert envelope["properties"]["priority"] == 9 - d.priority
        assert envelope["properties"]["delivery_info"]["routing_key"] == "default"
    # And Flower's view of a long payload is cut short
    shown = json.loads(prepared.lists["default:4"][0])["headers"]["kwargsrepr"]
    assert len(shown) == REPR_LIMIT and shown.endswith("...")
