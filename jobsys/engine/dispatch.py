"""Dispatch: the only code that puts a job's message on the broker.

Postgres holds the job; its message only says "claim this job now". Every
path comes through here with one value type, :class:`Dispatch`: the first
publish of an enqueued job, the bulk publish of ``enqueue_many``, a retry or
a postponement (after the row's conditional UPDATE already happened, so
nothing is inserted, selected or validated again), an early delivery sent
back for later, the sweeper's re-publishing of lost messages and of expired
leases, a dead-letter retry, the worker main process's recovery of a lost
child, and canvas members. A canvas member keeps its place in its chord or
chain: its Celery options (``chord``, ``chain``, ``link``, ``group_id``...)
travel in :attr:`Dispatch.canvas`.

Single messages go through Celery's ``send_task``, so Celery's
``before_task_publish`` / ``after_task_publish`` signals fire. The bulk path
builds the Redis transport's envelopes itself and LPUSHes them (ten times
cheaper than Celery's per-message path); it fires no Celery signal, so the
engine's own hooks (``before_dispatch``, ``after_dispatch``) are what every
path runs.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import enum
import json
import uuid
from collections import defaultdict
from collections.abc import Collection, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from celery import Celery
from celery._state import get_current_worker_task

from jobsys.store import Job, NewJob

if TYPE_CHECKING:
    from jobsys.engine.hooks import Hooks

MAX_PRIORITY = 9
# Must match the broker transport options in celeryconf (sep, priority steps 0..9).
QUEUE_SEP = ":"
_LPUSH_CHUNK = 500
# Characters of the arguments' repr a bulk message's headers carry (Flower's view).
REPR_LIMIT = 256
_EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
# The options of a Celery request that place a message in its canvas.
_CANVAS_KEYS = (
    "root_id",
    "parent_id",
    "group_id",
    "group_index",
    "chord",
    "chain",
    "link",
    "link_error",
    "retries",
    "replaced_task_nesting",
    "ignore_result",
)
_LINKS = ("chord", "chain", "link", "link_error", "group_id")


class Why(enum.StrEnum):
    """Why a message is dispatched."""

    FIRST = "first"  # an enqueued job's first message (admission off)
    BULK = "bulk"  # one of enqueue_many's (admission off)
    ADMIT = "admit"  # a job promoted from the backlog into the broker's ready buffer
    CANVAS = "canvas"  # a member of a chain, group or chord
    RETRY = "retry"  # the next attempt after a failure's backoff
    POSTPONE = "postpone"  # a guard said not yet
    EARLY = "early"  # delivered before it was due: sent back for later
    STORE_DOWN = "store_down"  # the claim could not reach PostgreSQL: ask again later
    RECOVER = "recover"  # the worker's main process retries a lost child's attempt
    SWEEP = "sweep"  # the sweeper re-publishes a message the broker lost
    EXPIRED = "expired"  # the sweeper retries an attempt whose lease expired
    DLQ = "dlq"  # retried from the dead-letter queue


@dataclasses.dataclass(frozen=True, kw_only=True)
class Dispatch:
    """One message to publish for one job."""

    job_id: uuid.UUID
    user_id: str
    kind: str
    queue: str
    why: Why
    # jobsys priority, 0 (normal) to 9 (most urgent)
    priority: int = 0
    countdown: float = 0.0
    # Shown by Flower; workers run the payload stored in Postgres.
    payload: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    # Celery options that keep a canvas member's place (empty for a plain job).
    canvas: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    # Extra message headers (trace context).
    headers: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    # The job whose attempt is publishing this one, if any.
    parent_id: uuid.UUID | None = None
    # The span contexts the job's row keeps with tracing on (``Job.trace``), else None.
    trace: Mapping[str, str] | None = None

    @classmethod
    def of_job(
        cls,
        job: Job,
        why: Why,
        *,
        countdown: float = 0.0,
        canvas: Mapping[str, Any] | None = None,
    ) -> Dispatch:
        return cls(
            job_id=job.id,
            user_id=job.user_id,
            kind=job.kind,
            queue=job.queue,
            why=why,
            priority=job.priority,
            countdown=countdown,
            payload=job.payload,
            canvas=canvas or {},
            parent_id=parent_job(besides=job.id),
            trace=job.trace,
        )

    @classmethod
    def of_new(
        cls,
        new: NewJob,
        why: Why,
        *,
        canvas: Mapping[str, Any] | None = None,
        headers: Mapping[str, Any] | None = None,
        parent_id: uuid.UUID | Literal[False] | None = False,
    ) -> Dispatch:
        """``parent_id``: the publishing job, when the caller knows it (else looked up)."""
        return cls(
            job_id=new.id,
            user_id=new.user_id,
            kind=new.kind,
            queue=new.queue,
            why=why,
            priority=new.priority,
            countdown=new.delay,
            payload=new.payload,
            canvas=canvas or {},
            headers=headers or {},
            parent_id=parent_job() if parent_id is False else parent_id,
            trace=new.trace,
        )

    @classmethod
    def of_row(cls, row: Mapping[str, Any], why: Why) -> Dispatch:
        """From a row with id, user_id, kind, queue, priority, payload, countdown and,
        optionally, trace and canvas (a keyed canvas member's place, kept while it
        waited for admission: it goes on Celery's single-message path with it)."""
        return cls(
            job_id=row["id"],
            user_id=row["user_id"],
            kind=row["kind"],
            queue=row["queue"],
            why=why,
            priority=row["priority"],
            countdown=float(row.get("countdown") or 0.0),
            payload=row["payload"],
            canvas=row.get("canvas") or {},
            trace=row.get("trace"),
        )

    def evolve(self, **changes: Any) -> Dispatch:
        return dataclasses.replace(self, **changes)

    @property
    def in_canvas(self) -> bool:
        return linked(self.canvas)


def linked(canvas: Mapping[str, Any] | None) -> bool:
    """Whether canvas options place a message in a chord, chain, group or link."""
    return any((canvas or {}).get(k) for k in _LINKS)


def canvas_of(request: Any, *, retried: bool = False) -> dict[str, Any]:
    """The canvas options of a Celery request (a task's or a worker's), to send it again.

    ``retried`` counts one more Celery retry, as ``Task.retry`` would.
    """
    options = request.as_execution_options()
    canvas = {k: options[k] for k in _CANVAS_KEYS if options.get(k) is not None}
    if retried:
        canvas["retries"] = int(options.get("retries") or 0) + 1
    for name in options.get("stamped_headers") or ():
        canvas.setdefault("stamped_headers", list(options["stamped_headers"]))
        canvas[name] = options.get(name)
    return canvas


class Dispatcher:
    """Publishes dispatches through one Celery app, running the hooks on every path."""

    def __init__(self, app: Celery, hooks: Hooks) -> None:
        self.app = app
        self.hooks = hooks

    def send(self, dispatch: Dispatch, *, producer: Any = None) -> None:
        """Publish one message (Celery's path: its publish signals fire)."""
        dispatch = self.hooks.before_dispatch(dispatch)
        self._send(dispatch, producer)
        self.hooks.after_dispatch((dispatch,))

    def send_each(self, dispatches: Sequence[Dispatch]) -> None:
        """Publish several messages one by one on one producer."""
        if not dispatches:
            return
        sent = [self.hooks.before_dispatch(d) for d in dispatches]
        with self.app.producer_or_acquire() as producer:
            for d in sent:
                self._send(d, producer)
        self.hooks.after_dispatch(sent)

    def prepare(
        self, dispatches: Sequence[Dispatch], *, ahead: Collection[uuid.UUID] = ()
    ) -> Prepared:
        """Run the hooks and build the bulk path's messages, to :meth:`push` later.

        Building takes a while for many jobs; ``enqueue_many`` does it while the
        database is still inserting the rows, and pushes once they are committed.
        The jobs ``ahead`` go to the front of their lists (see :meth:`push`).
        """
        ready = [self.hooks.before_dispatch(d) for d in dispatches]
        # A bulk envelope has no place in a canvas: any canvas option takes Celery's path
        # (a keyed canvas member promoted from the backlog, say).
        bulk = [d for d in ready if d.countdown <= 0 and not d.canvas]
        single = [d for d in ready if d.countdown > 0 or d.canvas]
        back = _envelopes(self.app, [d for d in bulk if d.job_id not in ahead])
        front = _envelopes(self.app, [d for d in bulk if d.job_id in ahead]) if ahead else {}
        return Prepared(ready, single, back, bulk, front)

    def push(self, prepared: Prepared) -> None:
        """Send prepared messages: one pipelined multi-value LPUSH per Redis list, and
        an RPUSH (in reverse order) for those at the front: at the end consumers take
        from, so that they are taken next, before what the lists already held.

        Transports other than Redis take Celery's per-message path (to the back).
        """
        with broker_connection(self.app) as conn:
            redis = conn.transport.driver_type == "redis"
            if redis:
                channel: Any = conn.default_channel
                with channel.client.pipeline(transaction=False) as pipe:
                    for key, values in prepared.lists.items():
                        for chunk in _chunks(values):
                            pipe.lpush(key, *chunk)
                    for key, values in prepared.front.items():
                        for chunk in _chunks(values[::-1]):
                            pipe.rpush(key, *chunk)
                    pipe.execute()
        # (Celery's path takes a connection of its own: not while holding this one.)
        self._send_all(prepared.single if redis else prepared.bulk + prepared.single)
        self.hooks.after_dispatch(prepared.dispatches)

    def send_many(
        self, dispatches: Sequence[Dispatch], *, ahead: Collection[uuid.UUID] = ()
    ) -> None:
        """Publish many messages, in bulk where the transport allows (those of the
        jobs ``ahead`` at the front of their lists: see :meth:`push`)."""
        if dispatches:
            self.push(self.prepare(dispatches, ahead=ahead))

    def _send_all(self, dispatches: Sequence[Dispatch]) -> None:
        if dispatches:
            with self.app.producer_or_acquire() as producer:
                for d in dispatches:
                    self._send(d, producer)

    def _send(self, d: Dispatch, producer: Any) -> None:
        options = dict(d.canvas)
        if d.in_canvas:
            task = self.app.tasks[d.kind]
            options.setdefault("ignore_result", task.ignore_result)
            options["task_type"] = task
        else:
            # Outcomes live in Postgres; a result would make send_task SUBSCRIBE to
            # a result channel per message (and UNSUBSCRIBE later): two round trips.
            options["ignore_result"] = True
        if d.headers:
            options["headers"] = dict(d.headers)
        self.app.send_task(
            d.kind,
            args=(d.user_id,),
            kwargs=dict(d.payload),
            task_id=str(d.job_id),
            queue=d.queue,
            priority=MAX_PRIORITY - d.priority,
            countdown=d.countdown if d.countdown > 0 else None,
            producer=producer,
            **options,
        )


@dataclasses.dataclass(frozen=True)
class Prepared:
    """Dispatches after their hooks ran, with the bulk path's messages built."""

    dispatches: list[Dispatch]
    single: list[Dispatch]
    lists: dict[str, list[str]]
    bulk: list[Dispatch]
    # The Redis lists' messages for their front (Redis only).
    front: dict[str, list[str]] = dataclasses.field(default_factory=dict)


@contextlib.contextmanager
def broker_connection(app: Celery) -> Iterator[Any]:
    """A connection from the app's pool (a new one costs a connect: 5 ms measured here).

    kombu closes one that failed as it goes back to the pool; its next use reconnects.
    """
    pool: Any = app.pool
    with pool.acquire(block=True) as conn:
        yield conn


def parent_job(besides: uuid.UUID | None = None) -> uuid.UUID | None:
    """The job whose attempt runs in this thread, when one does (and is not ``besides``)."""
    task = get_current_worker_task()
    if task is None or getattr(task, "spec", None) is None:
        return None
    ident = getattr(task.request, "id", None)
    try:
        parent = uuid.UUID(ident) if ident else None
    except ValueError:
        return None
    return parent if parent != besides else None


def _envelopes(app: Celery, dispatches: Sequence[Dispatch]) -> dict[str, list[str]]:
    """The Redis transport's JSON envelopes, keyed by Redis list (queue and priority).

    Celery's per-message path (routing, signals, kombu envelope) costs about
    0.6 ms a message; the headers Celery makes for a kind are built once per
    kind here and every envelope reuses them.
    """
    templates: dict[str, dict[str, Any]] = {}
    lists: dict[str, list[str]] = defaultdict(list)
    for d in dispatches:
        headers = templates.get(d.kind)
        if headers is None:
            headers = templates[d.kind] = _headers(app, d.kind)
        pri = MAX_PRIORITY - d.priority
        key = d.queue if pri == 0 else f"{d.queue}{QUEUE_SEP}{pri}"
        lists[key].append(json.dumps(_envelope(d, headers, pri)))
    return lists


def _chunks(values: list[str]) -> Iterator[list[str]]:
    for i in range(0, len(values), _LPUSH_CHUNK):
        yield values[i : i + _LPUSH_CHUNK]


def _headers(app: Celery, kind: str) -> dict[str, Any]:
    sample = app.amqp.as_task_v2(str(uuid.uuid4()), kind, args=(), kwargs={}, ignore_result=True)
    return dict(sample.headers)


def _envelope(d: Dispatch, headers: dict[str, Any], pri: int) -> dict[str, Any]:
    jid = str(d.job_id)
    body = json.dumps([[d.user_id], dict(d.payload), _EMBED]).encode()
    return {
        "body": base64.b64encode(body).decode(),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {
            **headers,
            **d.headers,
            "id": jid,
            "root_id": jid,
            "argsrepr": _shown((d.user_id,)),
            "kwargsrepr": _shown(dict(d.payload)),
        },
        "properties": {
            "correlation_id": jid,
            "reply_to": "",
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": d.queue},
            "priority": pri,
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
        },
    }


def _shown(value: Any, limit: int = REPR_LIMIT) -> str:
    # What Flower shows of the arguments: bounded, since a header rides on every delivery
    # (and is read in full by every process that takes the message).
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
