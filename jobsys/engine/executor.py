"""One job attempt in a worker: claim -> run -> record, with the hooks around each.

What the attempt returns to Celery matters inside a canvas: a result counts
toward a chord and starts the next step of a chain, ``Ignore`` counts for
nothing (a duplicate delivery, a cancellation, a job replaced by a canvas),
``Retry`` keeps the message's place in its chord (the retry itself was
already dispatched with the message's canvas options), and the handler's own
exception, raised once the job is dead, fails the chord.
"""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime
from typing import Any, NoReturn, cast

import structlog
from celery import Task
from celery.exceptions import Ignore, Retry

from jobsys.engine.context import JobContext
from jobsys.engine.cost import Meter
from jobsys.engine.dispatch import MAX_PRIORITY, Dispatch, Why, canvas_of
from jobsys.engine.failures import classify
from jobsys.engine.hooks import Attempt, Outcome
from jobsys.engine.outcome import notify, patiently, settle_failure
from jobsys.engine.registry import JobSpec
from jobsys.engine.runtime import Runtime
from jobsys.errors import JobCancelled, StoreUnavailableError, UnstorableError
from jobsys.store import Job, Status
from jobsys.store.records import Cost

log = structlog.get_logger("jobsys.engine")


def execute(rt: Runtime, task: Task[Any, Any], spec: JobSpec, user_id: str | None) -> Any:
    """Run the attempt this message stands for, if it wins the claim."""
    job = claim(rt, task, spec, user_id)
    if job is None:
        raise Ignore()
    attempt = Attempt(job=job, worker=_node(task), headers=_headers(task.request))
    rt.hooks.after_claim(attempt)
    return run_and_record(rt, task, spec, attempt)


def claim(rt: Runtime, task: Task[Any, Any], spec: JobSpec, user_id: str | None) -> Job | None:
    job_id = uuid.UUID(task.request.id)
    lease = spec.hard_limit(rt.settings) + rt.settings.lease_grace
    try:
        job = rt.store.claim(job_id, user_id, lease=lease, worker=_node(task), pid=os.getpid())
        if job is None:
            _lost_race(rt, task, spec, job_id, user_id)
        return job
    except StoreUnavailableError:
        # The job stays queued in Postgres; ask again once the database is back.
        log.warning("claim.store_unavailable", job_id=str(job_id))
        _again(rt, task, spec, job_id, user_id, rt.settings.db_retry_delay, Why.STORE_DOWN)
        return None


def _lost_race(
    rt: Runtime, task: Task[Any, Any], spec: JobSpec, job_id: uuid.UUID, user_id: str | None
) -> None:
    state = rt.store.job_state(job_id)
    if state is None:
        log.error("claim.unknown_job", job_id=str(job_id), kind=spec.kind)
        return
    status, run_after = state
    if status is Status.QUEUED and not rt.store.dispatched(job_id):
        # A stale copy of a job that waits in the backlog (its message is not out):
        # its promotion publishes it, when due and when its share and its key allow.
        log.info("claim.in_backlog", job_id=str(job_id), kind=spec.kind)
        return
    if status is Status.QUEUED:
        # Delivered early (a duplicate, or clocks apart): come back when due.
        wait = max(0.0, (run_after - datetime.now(UTC)).total_seconds())
        _again(rt, task, spec, job_id, user_id, wait, Why.EARLY)
        return
    log.debug("claim.duplicate", job_id=str(job_id), status=status.value)


def _again(
    rt: Runtime,
    task: Task[Any, Any],
    spec: JobSpec,
    job_id: uuid.UUID,
    user_id: str | None,
    wait: float,
    why: Why,
) -> None:
    """The same message again, later, keeping its canvas context and payload."""
    if user_id is None:
        return
    request = task.request
    queue, priority = _placed(request, spec)
    dispatch = Dispatch(
        job_id=job_id,
        user_id=user_id,
        kind=spec.kind,
        queue=queue,
        why=why,
        priority=priority,
        countdown=wait,
        payload=dict(request.kwargs or {}),
        canvas=canvas_of(request),
        trace=_trace_of(request),
    )
    rt.dispatcher.send(dispatch)


def _placed(request: Any, spec: JobSpec) -> tuple[str, int]:
    """The queue and jobsys priority the message was delivered with (the kind's if unknown)."""
    info = request.delivery_info or {}
    queue = info.get("routing_key") if info.get("exchange") == "" else None
    broker = info.get("priority")
    priority = MAX_PRIORITY - int(broker) if isinstance(broker, int) else spec.priority
    return queue or spec.queue, priority


def run_and_record(rt: Runtime, task: Task[Any, Any], spec: JobSpec, attempt: Attempt) -> Any:
    job, settings = attempt.job, rt.settings
    ctx = JobContext(job, rt, spec.hard_limit(settings) + settings.lease_grace, task=task)
    meter = Meter()
    try:
        result = rt.hooks.around_handler(attempt, lambda: spec.call(ctx, job.payload))
    except Ignore:
        # The handler replaced itself with a canvas: this step is done.
        _succeeded(rt, job, {"replaced": True}, attempt.worker, meter.stop())
        raise
    except JobCancelled:
        cost = meter.stop()
        if patiently(lambda: rt.store.cancel_running(job, cost=cost), settings=settings):
            notify(rt, job, Outcome.CANCELLED, actor=attempt.worker)
        raise Ignore() from None
    except Exception as exc:
        _fail(rt, task, job, exc, attempt.worker, meter.stop())
    try:
        recorded = _succeeded(rt, job, result, attempt.worker, meter.stop())
    except UnstorableError as exc:
        # NaN, a NUL, an object JSON cannot encode: the same handler returns it again.
        _fail(rt, task, job, exc, attempt.worker, meter.stop())
    if not recorded:
        log.warning("record.lost", job_id=str(job.id), attempt=job.attempt)
        raise Ignore()
    return result


def _succeeded(rt: Runtime, job: Job, result: Any, worker: str, cost: Cost) -> bool:
    done = patiently(lambda: rt.store.succeed(job, result, cost=cost), settings=rt.settings)
    if done:
        notify(rt, job, Outcome.SUCCEEDED, actor=worker)
    return done


def _fail(
    rt: Runtime, task: Task[Any, Any], job: Job, exc: Exception, worker: str, cost: Cost
) -> NoReturn:
    failure = classify(exc)
    canvas = canvas_of(task.request, retried=True)
    settled = patiently(
        lambda: settle_failure(rt, job, failure, actor=worker, canvas=canvas, cost=cost),
        settings=rt.settings,
    )
    if settled.outcome in (Outcome.RETRIED, Outcome.POSTPONED):
        # Already dispatched, or back in the backlog; Retry tells Celery (and Flower) the
        # task will run again.
        raise Retry(exc=exc, when=cast(Any, settled.delay))
    if settled.outcome is Outcome.DEAD:
        raise exc
    raise Ignore()


def _trace_of(request: Any) -> dict[str, str] | None:
    # The same message again keeps the trace context it came with.
    traceparent = _headers(request).get("traceparent")
    return {"parent": str(traceparent)} if traceparent else None


def _headers(request: Any) -> dict[str, Any]:
    # Celery makes a message's own headers attributes of the request, not ``headers``.
    found = dict(request.headers or {})
    traceparent = getattr(request, "traceparent", None)
    if traceparent is not None:
        found.setdefault("traceparent", traceparent)
    return found


def _node(task: Task[Any, Any]) -> str:
    return str(task.request.hostname or "unknown")
