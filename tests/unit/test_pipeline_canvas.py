from __future__ import annotations

import uuid
from typing import Any

from celery import chord, signature
from celery.canvas import Signature, _chain

from jobsys.pipeline import canvas

RUN = uuid.UUID("00000000-0000-0000-0000-000000000001")


class ByName:
    """Builds real Celery signatures by task name (no app, no broker needed)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def si(self, *args: Any, **kwargs: Any) -> Signature[Any]:
        return signature(self.name, args=args, kwargs=kwargs, immutable=True)


class Tasks(dict[str, ByName]):
    def __missing__(self, name: str) -> ByName:
        return ByName(name)


def test_sync_canvas_runs_both_ingestions_then_plan_then_process() -> None:
    # When the canvas for one run is built
    built = canvas.sync_canvas(Tasks(), "u1", RUN, full=True)
    # Then Celery has made chain(group, plan, process) a chord: both ingestions,
    # then the chain planner -> processing as its body
    assert isinstance(built, chord)
    first = list(built.tasks)
    assert sorted(t.task for t in first) == ["sync.ingest_calendar", "sync.ingest_gmail"]
    assert isinstance(built.body, _chain)
    plan, process = built.body.tasks
    assert (plan.task, process.task) == ("sync.plan", "sync.process")
    # and every step carries the run and the mode, immutable (no result passing)
    for sig in (*first, plan, process):
        assert sig.args == ("u1",)
        assert sig.kwargs == {"run_id": str(RUN), "full": True}
        assert sig.immutable


def test_fan_out_is_a_chord_of_batches_then_the_marker() -> None:
    # Given two batches of pending ids
    parts = canvas.batches([f"m{i}" for i in range(150)], ["e1", "e2"], size=100)
    mark = signature("jobsys.pipeline.mark", args=(str(RUN),), immutable=True)
    # When the fan-out is built
    built = canvas.fan_out(Tasks(), "u1", RUN, parts, mark)
    # Then it is chord(normalize x2, extract | mark): the marker is last, so that
    # Task.replace hands it the planner's task id
    assert isinstance(built, chord)
    fan = built
    assert [t.task for t in fan.tasks] == ["sync.normalize", "sync.normalize"]
    assert [t.task for t in fan.body.tasks] == ["sync.extract", "jobsys.pipeline.mark"]
    assert fan.tasks[0].kwargs["message_ids"] == [f"m{i}" for i in range(100)]
    assert fan.tasks[1].kwargs["message_ids"] == [f"m{i}" for i in range(100, 150)]
    assert fan.tasks[1].kwargs["event_ids"] == ["e1", "e2"]


def test_nothing_new_goes_straight_to_extraction() -> None:
    mark = signature("jobsys.pipeline.mark", args=(str(RUN),), immutable=True)
    built = canvas.fan_out(Tasks(), "u1", RUN, [], mark)
    assert isinstance(built, _chain)
    assert [t.task for t in built.tasks] == ["sync.extract", "jobsys.pipeline.mark"]


def test_batches_cover_every_id_once_in_order() -> None:
    messages, events = [f"m{i}" for i in range(7)], [f"e{i}" for i in range(5)]
    parts = canvas.batches(messages, events, size=4)
    assert [len(m) + len(e) for m, e in parts] == [4, 4, 4]
    assert [i for m, _ in parts for i in m] == messages
    assert [i for _, e in parts for i in e] == events
    assert canvas.batches([], []) == []
