"""The engine without servers, for unit tests.

- :data:`UNIT_APP`: a Celery app on kombu's in-memory transport, with a task for
  each unit job kind (the dispatcher needs one for canvas members; the executor
  needs one to hold a request).
- :class:`SpyStore`: the in-memory store, logging each protocol call by name and
  failing the calls named in ``down`` with :class:`StoreUnavailableError`.
- :class:`Clock`: a clock the store reads and a test steps.
- :class:`Recorder`: an engine hook that records every event, in order.
- :class:`Broker`: reads (and so removes) the messages the engine published.
- :class:`Engine`: all of them on one :class:`~jobsys.engine.runtime.Runtime`, with
  :meth:`Engine.deliver` to run one delivery of a job in this process, as a worker's
  pool child would: the task's request is pushed with Celery's own
  ``push_request`` and ``execute`` runs inside it.
"""

from __future__ import annotations

import dataclasses
import functools
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from celery import Celery
from kombu.transport import memory
from pydantic import BaseModel

from jobsys.config import Settings
from jobsys.engine.admission import Admitter
from jobsys.engine.dispatch import MAX_PRIORITY, Dispatch, Why
from jobsys.engine.executor import execute
from jobsys.engine.hooks import Attempt, Hook, Recorded
from jobsys.engine.registry import JobSpec, registry
from jobsys.engine.runtime import Runtime
from jobsys.errors import StoreUnavailableError
from jobsys.store import NewJob
from jobsys.store.memory import MemoryStore
from jobsys.store.protocol import JobStore

UNIT_APP = Celery(
    "jobsys-unit", broker="memory://", backend="cache+memory://", set_as_current=False
)
UNIT_APP.conf.update(task_default_queue="default", accept_content=["json"], task_serializer="json")

# Explicit values for what the tests rely on, whatever JOBSYS_* the environment holds.
UNIT_SETTINGS = Settings(
    imports=(),
    default_timeout=180,
    lease_grace=15,
    default_max_attempts=5,
    retry_base=1.0,
    retry_cap=300.0,
    lost_after=60.0,
    worker_dead_after=60.0,
    db_retry_delay=2.0,
    unknown_kind_deliveries=3,
)


class Echo(BaseModel):
    value: int = 0


def echo(ctx: Any, payload: Echo) -> dict[str, Any]:
    return {"echo": payload.value, "attempt": ctx.attempt}


# Three attempts, a 30 s hard limit (so a 45 s lease with the 15 s grace).
ECHO = JobSpec(
    kind="unit.echo",
    handler=echo,
    payload=Echo,
    max_attempts=3,
    timeout=30,
    soft_timeout=None,
    queue="default",
)
# Another kind, on another queue, urgent by default.
URGENT = dataclasses.replace(ECHO, kind="unit.urgent", queue="cpu", priority=6)
# A kind whose jobs run one at a time per user (a concurrency key).
KEYED = dataclasses.replace(ECHO, kind="unit.keyed", concurrency_key="k:{user_id}", concurrency=1)
CALLBACK = "unit.callback"  # a canvas step that is not a job


def _not_run(self: Any, *args: Any, **kwargs: Any) -> None:
    raise AssertionError("unit tests run the executor through Engine.deliver()")


for _spec in (ECHO, URGENT, KEYED):
    registry.add(_spec)  # what enqueue() looks kinds up in
TASKS = {
    kind: UNIT_APP.task(bind=True, name=kind, shared=False)(_not_run)
    for kind in (ECHO.kind, URGENT.kind, KEYED.kind, CALLBACK)
}


class Clock:
    """The store's time: starts now and only moves when a test steps it."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


PROTOCOL = sorted(n for n, v in vars(JobStore).items() if callable(v) and not n.startswith("_"))


class SpyStore(MemoryStore):
    """A :class:`MemoryStore` that logs each protocol call; the calls in ``down`` fail."""

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock)
        self.calls: list[str] = []
        self.down: set[str] = set()


def _spied(name: str) -> Callable[..., Any]:
    method = getattr(MemoryStore, name)

    @functools.wraps(method)
    def spy(self: SpyStore, *args: Any, **kwargs: Any) -> Any:
        self.calls.append(name)
        if name in self.down:
            raise StoreUnavailableError(f"PostgreSQL unavailable (test: {name} is down)")
        return method(self, *args, **kwargs)

    return spy


for _name in PROTOCOL:
    setattr(SpyStore, _name, _spied(_name))


class Recorder(Hook):
    """Records every engine event in ``events``, in order.

    ``headers`` are added to every dispatch (as a tracing hook would add trace context);
    ``repairs`` is what ``on_sweep`` reports.
    """

    def __init__(self, headers: Mapping[str, Any] | None = None, repairs: int = 0) -> None:
        self.headers = dict(headers or {})
        self.repairs = repairs
        self.events: list[tuple[Any, ...]] = []
        self.dispatched: list[Dispatch] = []
        self.attempts: list[Attempt] = []
        self.recorded: list[Recorded] = []

    def before_dispatch(self, dispatch: Dispatch) -> Dispatch:
        self.events.append(("before_dispatch", dispatch.why, dispatch.job_id))
        if self.headers:
            dispatch = dispatch.evolve(headers={**dispatch.headers, **self.headers})
        self.dispatched.append(dispatch)
        return dispatch

    def on_follow_up(self, parent_id: uuid.UUID, dispatch: Dispatch) -> Dispatch:
        self.events.append(("on_follow_up", parent_id, dispatch.job_id))
        return dispatch

    def after_dispatch(self, dispatches: Sequence[Dispatch]) -> None:
        self.events.append(("after_dispatch", tuple((d.why, d.job_id) for d in dispatches)))

    def after_claim(self, attempt: Attempt) -> None:
        self.attempts.append(attempt)
        self.events.append(("after_claim", attempt.job.attempt))

    def around_handler(self, attempt: Attempt, call: Callable[[], Any]) -> Any:
        self.events.append(("around_handler", attempt.job.attempt))
        return call()

    def after_record(self, recorded: Recorded) -> None:
        self.recorded.append(recorded)
        self.events.append(("after_record", recorded.outcome, recorded.job.attempt))

    def on_sweep(self, runtime: Runtime) -> int:
        self.events.append(("on_sweep",))
        return self.repairs

    def names(self) -> list[str]:
        return [e[0] for e in self.events]

    def whys(self) -> list[Why]:
        return [d.why for d in self.dispatched]


@dataclasses.dataclass(frozen=True)
class Message:
    """A task message as it sits on the in-memory broker."""

    queue: str
    headers: dict[str, Any]
    properties: dict[str, Any]
    args: list[Any]
    kwargs: dict[str, Any]
    embed: dict[str, Any]

    @property
    def task_id(self) -> str:
        return str(self.headers["id"])

    @property
    def kind(self) -> str:
        return str(self.headers["task"])

    @property
    def priority(self) -> int:
        return int(self.properties["priority"])


class Broker:
    """The in-memory transport's queues, as the unit app sees them."""

    def __init__(self, app: Celery) -> None:
        self.app = app

    def take(self, queue: str = "default") -> list[Message]:
        """Every message waiting in ``queue``, oldest first (they leave the queue)."""
        out = []
        with self.app.connection_for_read() as conn:
            channel = conn.default_channel
            while (raw := channel.basic_get(queue, no_ack=True)) is not None:
                args, kwargs, embed = raw.decode()
                out.append(
                    Message(queue, dict(raw.headers), dict(raw.properties), args, kwargs, embed)
                )
        return out

    def take_all(self) -> list[Message]:
        """Every message waiting in any queue."""
        return [m for name in sorted(self._queues()) for m in self.take(name)]

    def purge(self) -> None:
        with self.app.connection_for_write() as conn:
            channel = conn.default_channel
            for name in self._queues():
                channel.queue_purge(name)

    def _queues(self) -> list[str]:
        # The transport keeps its queues in the process, shared by every connection.
        return list(memory.Channel.queues)


@dataclasses.dataclass
class Engine:
    """A runtime over a spied in-memory store and the in-memory broker, with a recording hook."""

    rt: Runtime
    store: SpyStore
    hook: Recorder
    broker: Broker
    clock: Clock
    # The store calls the last delivery made, in order.
    calls: list[str] = dataclasses.field(default_factory=list)

    def put(self, spec: JobSpec = ECHO, **changes: Any) -> NewJob:
        """Insert a job as enqueue would, without publishing it.

        The store's call log and the hook's events start after it.
        """
        values: dict[str, Any] = {
            "id": uuid.uuid4(),
            "user_id": "u1",
            "kind": spec.kind,
            "queue": spec.queue,
            "payload": {"value": 1},
            "max_attempts": spec.attempts(self.rt.settings),
            "priority": spec.priority,
        }
        new = NewJob(**{**values, **changes})
        self.store.insert(new)
        self.forget()
        return new

    def admit(self, queue: str = "default", concurrency: int = 10) -> None:
        """What a node's promoter does when its buffer has room: publish due backlog jobs."""
        Admitter(self.rt, [queue], concurrency).fill(queue, low_water=False)

    def forget(self) -> None:
        """Clear the store's call log and the hook's events (what happened so far)."""
        self.store.calls.clear()
        self.hook.events.clear()
        self.hook.dispatched.clear()
        self.hook.recorded.clear()

    def deliver(
        self,
        new: NewJob,
        spec: JobSpec = ECHO,
        *,
        hostname: str = "node-1",
        user_id: str | None = None,
        **request: Any,
    ) -> Any:
        """One delivery of ``new``'s message, run by the executor in this process.

        ``request`` adds to the message's request context (canvas options such as
        ``chord``, ``group``, ``root_id``; ``headers``). Returns what ``execute``
        returns, or raises what it raises.
        """
        task = TASKS[spec.kind]
        context = {
            "id": str(new.id),
            "hostname": hostname,
            "args": [new.user_id],
            "kwargs": dict(new.payload),
            "delivery_info": {
                "exchange": "",
                "routing_key": new.queue,
                "priority": MAX_PRIORITY - new.priority,
                "redelivered": False,
            },
            "called_directly": False,
            **request,
        }
        start = len(self.store.calls)
        task.push_request(**context)
        try:
            return execute(self.rt, task, spec, new.user_id if user_id is None else user_id)
        finally:
            task.pop_request()
            self.calls = self.store.calls[start:]
