"""Submitting jobs: validate, insert the row (committed), then publish."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from celery import Task
from celery.result import AsyncResult
from pydantic import BaseModel

from jobsys.config import get_settings
from jobsys.engine import runtime
from jobsys.engine.app import app
from jobsys.engine.publish import MAX_PRIORITY, prepare_many, publish, push_many
from jobsys.engine.registry import JobSpec, registry
from jobsys.store import NewJob

_OPTIONS = {"countdown", "eta", "priority", "unique_key", "queue"}


def enqueue(
    kind: str,
    *,
    user_id: str,
    payload: Mapping[str, Any] | BaseModel | None = None,
    priority: int | None = None,
    unique_key: str | None = None,
    delay: float = 0.0,
) -> AsyncResult[Any]:
    """Create a job of ``kind`` for ``user_id`` and publish it.

    Parameters:
        kind: a registered job kind.
        user_id: the user the job works for.
        payload: fields matching the kind's payload model.
        priority: 0 (normal) to 9 (most urgent); the kind's default if omitted.
        unique_key: at most one queued or running job of this kind and user holds it.
        delay: seconds to wait before the job may run.

    Raises:
        UnknownKindError: no such kind is registered.
        PayloadError: the payload does not match the kind's schema.
        DuplicateJobError: ``unique_key`` is held by a live job.
        ValueError: a bad ``user_id``, ``priority`` or ``delay``.

    Returns:
        The Celery ``AsyncResult``; its ``id`` is the job id.
    """
    spec = registry.get(kind)
    return submit(spec, user_id, payload, priority=priority, unique_key=unique_key, countdown=delay)


def submit(
    spec: JobSpec,
    user_id: Any,
    payload: Mapping[str, Any] | BaseModel | None,
    *,
    task_id: str | None = None,
    **options: Any,
) -> AsyncResult[Any]:
    """Validate, store and publish one job (the path behind ``.apply_async()``).

    Options jobsys knows (``countdown``, ``eta``, ``priority``, ``unique_key``,
    ``queue``) shape the job; any other option is Celery's (canvas members
    arrive with ``chord``, ``link``, ``group_id``...) and rides on the message.
    """
    celery_options = dict(options)
    ours = {k: celery_options.pop(k) for k in _OPTIONS & set(celery_options)}
    if "retries" in celery_options and "priority" in ours:
        # A Celery retry re-sends the broker's priority, already converted.
        celery_options["priority"] = ours.pop("priority")
    new = _new_job(spec, user_id, payload, task_id=task_id, **ours)
    runtime.store().insert(new)
    if task_id is None and not celery_options:
        publish(
            app,
            job_id=new.id,
            user_id=new.user_id,
            kind=spec.kind,
            queue=new.queue,
            priority=new.priority,
            countdown=new.delay,
            payload=new.payload,
        )
        return AsyncResult(str(new.id), app=app)
    return _publish_in_canvas(spec, new, celery_options)


def _publish_in_canvas(spec: JobSpec, new: NewJob, options: dict[str, Any]) -> AsyncResult[Any]:
    options.setdefault("priority", MAX_PRIORITY - new.priority)
    if new.delay > 0:
        options["countdown"] = new.delay
    task = app.tasks[spec.kind]
    # Celery's own apply_async (not JobTask's, which brought us here).
    return Task.apply_async(
        task,
        args=(new.user_id,),
        kwargs=new.payload,
        task_id=str(new.id),
        queue=new.queue,
        **options,
    )


def enqueue_many(
    kind: str,
    jobs: Iterable[tuple[str, Mapping[str, Any] | BaseModel | None]],
    *,
    priority: int | None = None,
) -> list[uuid.UUID]:
    """Create many jobs of one kind: one multi-row INSERT, then one pipelined publish.

    Every payload is validated before anything is stored; one bad payload
    stores and publishes nothing.

    Raises:
        UnknownKindError, PayloadError, ValueError: as :func:`enqueue`.
    """
    spec = registry.get(kind)
    batch = [_new_job(spec, user_id, payload, priority=priority) for user_id, payload in jobs]
    if not batch:
        return []
    # The COPY waits on the database with the GIL released: build the messages
    # meanwhile. They are pushed only once the rows are committed.
    with ThreadPoolExecutor(max_workers=1) as pool:
        inserted = pool.submit(runtime.store().insert_many, batch)
        lists = prepare_many(app, batch)
        inserted.result()
    push_many(app, batch, lists)
    return [new.id for new in batch]


def _new_job(
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
    valid = spec.validate(payload)
    return NewJob(
        id=_job_id(task_id),
        user_id=_user_id(user_id),
        kind=spec.kind,
        queue=queue or spec.queue,
        payload=spec.dump(valid),
        max_attempts=spec.attempts(get_settings()),
        priority=_priority(spec.priority if priority is None else priority),
        unique_key=unique_key,
        delay=_delay(countdown, eta),
    )


def _job_id(task_id: str | None) -> uuid.UUID:
    if task_id is None:
        return uuid.uuid4()
    try:
        return uuid.UUID(task_id)
    except ValueError:
        raise ValueError(f"task_id must be a UUID, got {task_id!r}") from None


def _user_id(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int) or str(value).strip() == "":
        raise ValueError(f"user_id must be a non-empty string or integer, got {value!r}")
    return str(value)


def _priority(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_PRIORITY:
        raise ValueError(f"priority must be an integer from 0 to {MAX_PRIORITY}, got {value!r}")
    return value


def _delay(countdown: float | None, eta: datetime | None) -> float:
    if eta is not None:
        if eta.tzinfo is None:
            raise ValueError("eta must be timezone-aware")
        return max(0.0, (eta - datetime.now(UTC)).total_seconds())
    if countdown is None:
        return 0.0
    if countdown < 0:
        raise ValueError(f"countdown must not be negative, got {countdown}")
    return float(countdown)
