"""Submitting jobs: validate, then insert the row (committed).

With admission on (the default) the row joins the backlog and a worker node's
promoter publishes it (``admission.py``); an unkeyed canvas member, or any
unkeyed job with admission off, is published here once its row is committed. A
keyed canvas member joins the backlog with its place in the canvas (its Celery
options) kept in the row, and its promotion publishes it with them.
"""

from __future__ import annotations

import dataclasses
import json
import math
import uuid
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from celery.result import AsyncResult
from pydantic import BaseModel

from jobsys.engine import runtime as _runtime
from jobsys.engine.dispatch import MAX_PRIORITY, Dispatch, Why, parent_job
from jobsys.engine.registry import JobSpec, registry
from jobsys.engine.results import JobResult
from jobsys.engine.runtime import Runtime
from jobsys.errors import OptionError, PayloadError, UnknownKindError, UnstorableError
from jobsys.store import NewJob, jsonb, tenancy
from jobsys.store.quotas import Quota
from jobsys.store.records import JoinRace

# Options jobsys shapes the job with; any other option is Celery's canvas context.
_OURS = {"countdown", "eta", "priority", "unique_key", "queue"}
# Options the dispatcher sets itself, never taken from a caller.
_SET_BY_DISPATCH = {"task_id", "producer", "args", "kwargs", "exchange", "routing_key"}
Item = tuple[Any, Mapping[str, Any] | BaseModel | None]
# Longest user id an enqueue accepts: it is a key of every job row, index and message.
MAX_USER_ID = 200


def spec_of(rt: Runtime, kind: str) -> JobSpec:
    """The kind's spec; loads ``JOBSYS_IMPORTS`` when the kind is not registered yet.

    Raises:
        UnknownKindError: no module the settings name defines it.
    """
    try:
        return registry.get(kind)
    except UnknownKindError:
        rt.load_imports()
        return registry.get(kind)


def enqueue(
    kind: str,
    *,
    user_id: str,
    payload: Mapping[str, Any] | BaseModel | None = None,
    priority: int | None = None,
    unique_key: str | None = None,
    delay: float = 0.0,
    runtime: Runtime | None = None,
) -> JobResult:
    """Create a job of ``kind`` for ``user_id`` (it runs when admitted: see ``admission.py``).

    Parameters:
        kind: a registered job kind (``JOBSYS_IMPORTS`` modules are loaded if needed).
        user_id: the user the job works for.
        payload: fields matching the kind's payload model.
        priority: 0 (normal) to 9 (most urgent); the kind's default if omitted.
        unique_key: at most one queued or running job of this kind and user holds it.
        delay: seconds to wait before the job may run.
        runtime: the runtime to use (the process's by default).

    Raises:
        UnknownKindError: no such kind is registered.
        PayloadError: the payload does not match the kind's schema.
        OptionError: a bad ``user_id``, ``priority`` or ``delay``.
        DuplicateJobError: ``unique_key`` is held by a live job.
        QuotaExceeded: the user is at one of its quotas; nothing was stored.

    Returns:
        A :class:`JobResult` (an ``AsyncResult`` that reads the job's row); its
        ``id`` is the job id.
    """
    rt = runtime or _runtime.current()
    spec = spec_of(rt, kind)
    result: JobResult = submit(
        rt, spec, user_id, payload, priority=priority, unique_key=unique_key, countdown=delay
    )
    return result


def submit(
    rt: Runtime,
    spec: JobSpec,
    user_id: Any,
    payload: Mapping[str, Any] | BaseModel | None,
    *,
    task_id: str | None = None,
    **options: Any,
) -> Any:
    """Validate, store and dispatch one job (the path behind ``.apply_async()``).

    Options jobsys knows (``countdown``, ``eta``, ``priority``, ``unique_key``,
    ``queue``) shape the job; any other option is Celery's (canvas members
    arrive with ``chord``, ``link``, ``group_id``...) and rides on the message.
    Returns a :class:`JobResult`, or Celery's ``AsyncResult`` for a canvas member.

    Raises:
        UnstorableError: a keyed canvas member's Celery options are not JSON.
    """
    canvas = {k: v for k, v in options.items() if k not in _OURS | _SET_BY_DISPATCH}
    ours = {k: v for k, v in options.items() if k in _OURS}
    new = rt.hooks.before_insert(new_job(rt, spec, user_id, payload, task_id=task_id, **ours))
    headers = canvas.pop("headers", None) or {}
    dispatch = Dispatch.of_new(new, Why.FIRST, canvas=canvas, headers=headers)
    # Celery's canvas applies its members with their place (chord, link...) or, for
    # a chain's next step, with the parent and root it continues.
    if dispatch.in_canvas or "root_id" in canvas or "parent_id" in canvas:
        if new.concurrency_key is not None:
            return _waiting_member(rt, new, canvas)
        dispatch = dispatch.evolve(why=Why.CANVAS)
    elif spec.coalesce and not dispatch.canvas:
        return _coalesced(rt, spec, new)
    elif (rt.settings.admission or new.concurrency_key is not None) and not dispatch.canvas:
        # The backlog: a node's promoter publishes it when a slot is free, and a
        # keyed job when its key has room too. (A job applied with Celery's own
        # options other than a canvas's, which the row does not hold, is published
        # at once with them.)
        rt.store.insert(dataclasses.replace(new, admitted=False), quota=quota_of(rt))
        return JobResult(str(new.id), runtime=rt)
    rt.store.insert(new, quota=None if dispatch.why is Why.CANVAS else quota_of(rt))
    # In a user's scope the row commits when the scope ends: the message follows it.
    tenancy.after_commit(lambda: rt.dispatcher.send(dispatch))
    if dispatch.in_canvas:
        return AsyncResult(str(new.id), app=rt.app)
    return JobResult(str(new.id), runtime=rt)


def _waiting_member(rt: Runtime, new: NewJob, canvas: Mapping[str, Any]) -> AsyncResult[Any]:
    """A keyed canvas member: into the backlog, its place in the canvas kept in the row.

    Published at once, it would hold its key's slot without being held back by it;
    the promotion that finds its key with room publishes it with these options.
    Work a canvas starts is not charged to its user's quota (as when published).
    """
    # Celery hands signatures over as dicts: JSON, as the row and the message hold them.
    stored = json.loads(jsonb.dumps(dict(canvas), what="the canvas member's Celery options"))
    rt.store.insert(dataclasses.replace(new, admitted=False, canvas=stored), quota=None)
    return AsyncResult(str(new.id), app=rt.app)


def _coalesced(rt: Runtime, spec: JobSpec, new: NewJob) -> JobResult:
    """Join the user's job of this kind waiting in the backlog, or be that job."""
    waiting = dataclasses.replace(new, admitted=False, coalesce=True)
    while True:
        joined = rt.store.join(waiting, spec.merge)
        if joined is not None:
            return JobResult(str(joined), runtime=rt)
        try:
            rt.store.insert(waiting, quota=quota_of(rt))
        except JoinRace:
            continue  # another request's job got in first: join that one
        return JobResult(str(new.id), runtime=rt)


def enqueue_many(
    kind: str,
    jobs: Iterable[Item],
    *,
    priority: int | None = None,
    runtime: Runtime | None = None,
) -> list[JobResult]:
    """Create many jobs of one kind: one COPY, then (admission off) one pipelined publish.

    ``jobs`` holds ``(user_id, payload)`` pairs. Every item is checked before
    anything is stored: one bad item stores and publishes nothing, and the
    error names every bad item by its index.

    Raises:
        UnknownKindError: as :func:`enqueue`.
        PayloadError: naming each bad item (a bad payload, user id or shape).
        QuotaExceeded: the batch would take a user past a quota; nothing was stored.
    """
    rt = runtime or _runtime.current()
    spec = spec_of(rt, kind)
    batch = _batch(rt, spec, jobs, priority)
    if not batch:
        return []
    if spec.coalesce:
        # Each joins or becomes its user's waiting job: one at a time, not one COPY.
        return [_coalesced(rt, spec, new) for new in batch]
    quota = quota_of(rt)
    if rt.settings.admission or any(new.concurrency_key is not None for new in batch):
        backlog = [dataclasses.replace(new, admitted=False) for new in batch]
        rt.store.insert_many(backlog, quota=quota)
        return [JobResult(str(new.id), runtime=rt) for new in batch]
    # The COPY waits on the database with the GIL released: build the messages
    # meanwhile. They are pushed only once the rows are committed.
    with ThreadPoolExecutor(max_workers=1) as pool:
        inserted = pool.submit(rt.store.insert_many, batch, quota=quota)
        parent = parent_job()
        bulk = [Dispatch.of_new(new, Why.BULK, parent_id=parent) for new in batch]
        prepared = rt.dispatcher.prepare(bulk)
        inserted.result()
    rt.dispatcher.push(prepared)
    return [JobResult(str(new.id), runtime=rt) for new in batch]


def quota_of(rt: Runtime) -> Quota | None:
    """The quota an enqueue is charged to: none for the work a running job starts
    (a sync under way finishes whatever its user's quota says)."""
    if parent_job() is not None:
        return None
    return Quota(rt.settings.user_max_queued, rt.settings.user_max_per_hour)


def _batch(rt: Runtime, spec: JobSpec, jobs: Iterable[Item], priority: int | None) -> list[NewJob]:
    batch: list[NewJob] = []
    problems: list[str] = []
    for index, item in enumerate(jobs):
        try:
            user_id, payload = _pair(item)
            new = new_job(rt, spec, user_id, payload, priority=priority)
            batch.append(rt.hooks.before_insert(new))
        except PayloadError as e:
            problems += [f"item {index}: {p}" for p in e.problems]
        except OptionError as e:
            problems.append(f"item {index}: {e}")
    if problems:
        raise PayloadError(spec.kind, problems)
    return batch


def _pair(item: Any) -> Item:
    if isinstance(item, tuple | list) and len(item) == 2:
        return item[0], item[1]
    shown = type(item).__name__
    raise OptionError(
        "jobs", shown, "must hold (user_id, payload) pairs, e.g. [('user-1', {'photo_id': 1})]"
    )


def new_job(
    rt: Runtime,
    spec: JobSpec,
    user_id: Any,
    payload: Mapping[str, Any] | BaseModel | None,
    *,
    task_id: str | None = None,
    priority: int | None = None,
    unique_key: str | None = None,
    countdown: float | None = None,
    eta: datetime | None = None,
    queue: str | None = None,
) -> NewJob:
    """A validated job, ready to insert, for the kind's canonical name of the user.

    Raises:
        PayloadError: the payload does not match the kind's schema.
        OptionError: a bad ``user_id``, ``priority``, ``delay`` or ``task_id``.
    """
    valid = spec.validate(payload)
    dumped = spec.dump(valid)
    text = _storable(spec.kind, dumped, rt.settings.max_payload_bytes)
    user = _user_id(user_id)
    if spec.canonical_user is not None:
        user = _user_id(spec.canonical_user(rt, user))
    key = spec.key_of(user, valid)
    return NewJob(
        id=_job_id(task_id),
        chosen_id=task_id is not None,
        user_id=user,
        kind=spec.kind,
        queue=queue or spec.queue,
        payload=dumped,
        payload_json=text,
        max_attempts=spec.attempts(rt.settings),
        priority=_priority(spec.priority if priority is None else priority),
        unique_key=unique_key,
        delay=_delay(countdown, eta),
        concurrency_key=key,
        concurrency=spec.concurrency_of(rt.settings) if key is not None else None,
    )


def _storable(kind: str, payload: dict[str, Any], limit: int) -> str:
    """The payload as the JSON text to store, once it fits ``jsonb`` and the size limit.

    Raises:
        PayloadError: naming the rule it breaks.
    """
    try:
        text = jsonb.dumps(payload, what="payload")
    except UnstorableError as e:
        raise PayloadError(kind, [f"payload: {e.cause}"]) from None
    size = len(text)  # ASCII: json.dumps escapes everything else, so characters are bytes
    if size > limit:
        raise PayloadError(
            kind,
            [f"payload: {size} bytes as JSON, more than JOBSYS_MAX_PAYLOAD_BYTES={limit} allows"],
        )
    return text


def _job_id(task_id: str | None) -> uuid.UUID:
    if task_id is None:
        return uuid.uuid4()
    try:
        return uuid.UUID(task_id)
    except ValueError:
        raise OptionError("task_id", task_id, "must be a UUID") from None


def _user_id(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int) or str(value).strip() == "":
        raise OptionError("user_id", value, "must be a non-empty string or integer")
    text = str(value)
    if len(text) > MAX_USER_ID:
        raise OptionError(
            "user_id", value, f"must be at most {MAX_USER_ID} characters (it has {len(text)})"
        )
    return text


def _priority(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_PRIORITY:
        raise OptionError("priority", value, f"must be an integer from 0 to {MAX_PRIORITY}")
    return value


MAX_DELAY = 100 * 365.25 * 86400


def _delay(countdown: float | None, eta: datetime | None) -> float:
    if eta is not None:
        if not isinstance(eta, datetime) or eta.tzinfo is None:
            raise OptionError("eta", eta, "must be a timezone-aware datetime")
        return max(0.0, (eta - datetime.now(UTC)).total_seconds())
    if countdown is None:
        return 0.0
    if isinstance(countdown, bool) or not isinstance(countdown, int | float):
        raise OptionError("delay", countdown, "must be a number of seconds")
    if not math.isfinite(countdown) or countdown < 0:
        raise OptionError("delay", countdown, "must be a finite, non-negative number of seconds")
    if countdown > MAX_DELAY:
        # Past this, run_after leaves the dates PostgreSQL and Python can hold.
        raise OptionError("delay", countdown, f"must be at most {MAX_DELAY:.0f} s (100 years)")
    return float(countdown)
