"""One job attempt in a worker: claim -> run -> record.

What the attempt returns to Celery matters inside a canvas: a result counts
toward a chord and starts the next step of a chain, ``Ignore`` counts for
nothing (a duplicate delivery, a cancellation, a job replaced by a canvas),
``Retry`` keeps the message's place in its chord, and the handler's own
exception, raised once the job is dead, fails the chord.
"""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime
from typing import Any, NoReturn

import structlog
from celery import Task
from celery.exceptions import Ignore

from jobsys.config import Settings, get_settings
from jobsys.engine import runtime
from jobsys.engine.context import JobContext
from jobsys.engine.failures import JobCancelled, classify
from jobsys.engine.outcome import patiently, settle_failure
from jobsys.engine.publish import publish
from jobsys.engine.registry import JobSpec
from jobsys.errors import StoreUnavailableError
from jobsys.store import Job, Status, Store

log = structlog.get_logger("jobsys.engine")


def execute(task: Task[Any, Any], spec: JobSpec, user_id: str | None) -> Any:
    """Run the attempt this message stands for, if it wins the claim."""
    settings = get_settings()
    store = runtime.store()
    job = claim(task, spec, store, settings, user_id)
    if job is None:
        raise Ignore()
    return run_and_record(task, spec, store, settings, job)


def claim(
    task: Task[Any, Any], spec: JobSpec, store: Store, settings: Settings, user_id: str | None
) -> Job | None:
    job_id = uuid.UUID(task.request.id)
    lease = spec.hard_limit(settings) + settings.lease_grace
    try:
        job = store.claim(job_id, user_id, lease=lease, worker=_node(task), pid=os.getpid())
        if job is None:
            _lost_race(task, spec, store, job_id, user_id)
        return job
    except StoreUnavailableError:
        # The job stays queued in Postgres; ask again once the database is back.
        log.warning("claim.store_unavailable", job_id=str(job_id))
        _republish(task, spec, job_id, user_id, settings.db_retry_delay)
        return None


def _lost_race(
    task: Task[Any, Any], spec: JobSpec, store: Store, job_id: uuid.UUID, user_id: str | None
) -> None:
    state = store.job_state(job_id)
    if state is None:
        log.error("claim.unknown_job", job_id=str(job_id), kind=spec.kind)
        return
    status, run_after = state
    if status is Status.QUEUED:
        # Delivered early (a duplicate, or clocks apart): come back when due.
        wait = max(0.0, (run_after - datetime.now(UTC)).total_seconds())
        _republish(task, spec, job_id, user_id, wait)
        return
    log.debug("claim.duplicate", job_id=str(job_id), status=status.value)


def _republish(
    task: Task[Any, Any], spec: JobSpec, job_id: uuid.UUID, user_id: str | None, wait: float
) -> None:
    if user_id is None:
        return
    if task.request.chord or task.request.chain or task.request.callbacks:
        # Keep the canvas context: the same message again, later.
        task.signature_from_request(task.request, countdown=wait).apply_async()
        return
    publish(
        task.app,
        job_id=job_id,
        user_id=user_id,
        kind=spec.kind,
        queue=spec.queue,
        priority=spec.priority,
        countdown=wait,
        # Keep the payload the message carried: a Celery retry re-sends it.
        payload=dict(task.request.kwargs or {}),
    )


def run_and_record(
    task: Task[Any, Any], spec: JobSpec, store: Store, settings: Settings, job: Job
) -> Any:
    ctx = JobContext(job, store, spec.hard_limit(settings) + settings.lease_grace, task=task)
    try:
        payload = spec.validate(job.payload)
        result = spec.handler(ctx, payload) if spec.payload is not None else spec.handler(ctx)
    except Ignore:
        # The handler replaced itself with a canvas: this step is done.
        patiently(lambda: store.succeed(job, {"replaced": True}), settings=settings)
        raise
    except JobCancelled:
        patiently(lambda: store.cancel_running(job), settings=settings)
        raise Ignore() from None
    except Exception as exc:
        _fail(task, store, settings, job, exc)
    if not patiently(lambda: store.succeed(job, result), settings=settings):
        log.warning("record.lost", job_id=str(job.id), attempt=job.attempt)
        raise Ignore()
    return result


def _fail(
    task: Task[Any, Any], store: Store, settings: Settings, job: Job, exc: Exception
) -> NoReturn:
    failure = classify(exc)
    settled = patiently(
        lambda: settle_failure(store, settings, job, failure, actor=_node(task)),
        settings=settings,
    )
    if settled.action == "retry":
        raise task.retry(countdown=settled.delay, max_retries=None)
    if settled.action == "dead":
        raise exc
    raise Ignore()


def _node(task: Task[Any, Any]) -> str:
    return str(task.request.hostname or "unknown")
