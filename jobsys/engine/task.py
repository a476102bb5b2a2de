"""The Celery task class behind every job kind, and the ``@job`` decorator.

``.delay(user_id, **payload)`` and ``.apply_async(...)`` go through
:func:`jobsys.engine.enqueue.submit`: validate, insert the row, then dispatch.
Celery's canvas reaches jobsys the same way: a chain's next step, a chord's
callback and a group's members are applied through ``apply_async``.

Calling the task itself (``resize("user-1", photo_id=7)``) runs the handler as
a plain function, as calling a Celery task does: the payload is validated, no
job is stored, and the handler's context is detached (``heartbeat()`` does
nothing).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from celery import Task
from kombu import Queue
from pydantic import BaseModel

from jobsys.engine import runtime
from jobsys.engine.app import app
from jobsys.engine.context import JobContext
from jobsys.engine.executor import execute
from jobsys.engine.registry import (
    CanonicalUser,
    Concurrency,
    ExtraFields,
    JobSpec,
    KeyRule,
    Merge,
    registry,
)
from jobsys.store import Job, Status


class JobTask(Task):  # type: ignore[type-arg]
    """A job kind as a Celery task. Its message carries the job id; Postgres the rest."""

    spec: JobSpec
    Request = "jobsys.engine.request:JobRequest"
    acks_late = True
    reject_on_worker_lost = True
    ignore_result = True
    # Attempts are counted in Postgres; Celery's retry only carries the message.
    max_retries = None
    typing = False

    def apply_async(  # type: ignore[override]
        self,
        args: tuple[Any, ...] | list[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        task_id: str | None = None,
        **options: Any,
    ) -> Any:
        """Store the job, then publish it; returns the ``AsyncResult`` (its id is the job id).

        ``args`` is ``(user_id,)`` and ``kwargs`` the payload's fields. Options
        ``countdown``, ``priority`` and ``unique_key`` are honoured.
        """
        from jobsys.engine.enqueue import submit

        user_id, payload = _split_call(self.spec.kind, args, kwargs)
        return submit(runtime.current(), self.spec, user_id, payload, task_id=task_id, **options)


def _split_call(
    kind: str, args: tuple[Any, ...] | list[Any] | None, kwargs: dict[str, Any] | None
) -> tuple[Any, dict[str, Any]]:
    args = tuple(args or ())
    if len(args) != 1:
        raise TypeError(f"{kind}.delay() takes the user id as its one positional argument")
    return args[0], dict(kwargs or {})


def job(
    *,
    kind: str,
    payload: type[BaseModel] | None = None,
    max_attempts: int | None = None,
    soft_timeout: int | None = None,
    timeout: int | None = None,
    queue: str = "default",
    priority: int = 0,
    results: bool = False,
    concurrency_key: KeyRule | None = None,
    concurrency: Concurrency = 1,
    coalesce: bool | Merge = False,
    extra_fields: ExtraFields = "forbid",
    canonical_user: CanonicalUser | None = None,
    max_postpone: float | None = None,
    internal: bool = False,
    deadline: float | timedelta | None = None,
) -> Callable[[Callable[..., Any]], JobTask]:
    """Register a job kind and return its Celery task.

    Parameters:
        kind: dotted name, e.g. ``"photos.resize"``; also the Celery task name.
        payload: pydantic model the payload must match (at enqueue and at execution).
        max_attempts: attempts before the job is dead-lettered (default 5).
        soft_timeout: seconds before ``SoftTimeLimitExceeded`` is raised in the handler.
        timeout: hard limit in seconds; the attempt's process is killed (default 180).
        queue: the Celery queue its messages go to.
        priority: default priority, 0 (normal) to 9 (most urgent).
        results: also store results in Celery's result backend (needed by chord
            members); results are always recorded in Postgres.
        concurrency_key: jobs with the same key run ``concurrency`` at a time at
            most (counting those in the broker): a template of ``user_id`` and
            payload fields (``"gmail:{user_id}"``) or a function of (user_id,
            payload). A job whose key is at its limit waits in PostgreSQL, and so
            does a keyed canvas member (a chord's part), its place in the canvas
            kept in its row until it is published.
        concurrency: how many jobs of one key may run or wait in the broker: a
            number, or a function of the :class:`~jobsys.config.Settings`, e.g.
            ``lambda s: s.ingest_user_concurrency``, called at each enqueue with
            the enqueuing process's settings. Each job keeps the limit it was
            enqueued with; jobs of one key enqueued under different limits are
            each held to their own.
        coalesce: a request while a job of this kind waits for the same user in
            the backlog joins that job (its id comes back) instead of adding one:
            True keeps the newest payload, a function ``(waiting, requested) ->
            payload`` merges them.
        extra_fields: what becomes of payload fields the model does not declare:
            ``"forbid"`` (the default) refuses the payload with a ``PayloadError``
            naming each one; ``"ignore"`` drops them. A model whose own
            ``model_config`` sets ``extra`` decides instead (``extra="allow"``
            keeps them).
        canonical_user: a function ``(runtime, user_id) -> user_id`` applied at
            enqueue, before the row, its unique key, coalescing or quotas see the
            user: for a kind that may be asked for by another name of the user
            (an e-mail). It raises to refuse the enqueue (an unknown user).
        max_postpone: seconds a job may go on being postponed (``JobPostponed``,
            a guard's refusal, a database outage), measured from its first
            postponement; the postponement after that dead-letters it with
            reason ``postponed_too_long`` (a pipeline run it belongs to then
            fails). Default ``JOBSYS_MAX_POSTPONE``, 24 hours. Postponements are
            counted on the job (``postponements``, ``postponed_since``).
        internal: a step the system makes (a pipeline's phase), which the HTTP
            API refuses to enqueue for a client.
        deadline: the kind's SLA, seconds (or a ``timedelta``) from enqueue to
            success; ``jobsys stats`` reports the share of its jobs that kept it.

    Raises:
        ValueError: the declaration breaks a rule (named in the message).
    """

    def decorate(fn: Callable[..., Any]) -> JobTask:
        spec = JobSpec(
            kind=kind,
            handler=fn,
            payload=payload,
            max_attempts=max_attempts,
            timeout=timeout,
            soft_timeout=soft_timeout,
            queue=queue,
            priority=priority,
            concurrency_key=concurrency_key,
            concurrency=concurrency,
            coalesce=coalesce,
            extra_fields=extra_fields,
            canonical_user=canonical_user,
            max_postpone=max_postpone,
            internal=internal,
            deadline=deadline.total_seconds() if isinstance(deadline, timedelta) else deadline,
        )
        registry.add(spec)
        _ensure_queue(queue)
        return _task(spec, fn, results=results)

    return decorate


def _task(spec: JobSpec, fn: Callable[..., Any], *, results: bool) -> JobTask:
    """The kind's Celery task on jobsys's app."""

    def run(self: JobTask, /, user_id: str | None = None, **payload: Any) -> Any:
        if self.request.called_directly:
            return call_directly(spec, user_id, payload)
        return execute(runtime.current(), self, spec, user_id)

    run.__doc__ = fn.__doc__
    # Unset limits fall back to task_time_limit / task_soft_time_limit (settings).
    limits: dict[str, Any] = {"time_limit": spec.timeout, "soft_time_limit": spec.soft_timeout}
    limits = {k: v for k, v in limits.items() if v is not None}
    make: Any = app.task  # the typed overloads cannot see through **limits
    task: JobTask = make(
        bind=True,
        base=JobTask,
        name=spec.kind,
        queue=spec.queue,
        **limits,
        ignore_result=not results,
        spec=spec,
    )(run)
    return task


def call_directly(spec: JobSpec, user_id: Any, payload: dict[str, Any]) -> Any:
    """Run the handler as a plain function call: validated, not stored, detached.

    Raises:
        PayloadError, OptionError: as at enqueue.
    """
    from jobsys.engine.enqueue import new_job

    rt = runtime.current()
    new = new_job(rt, spec, user_id, payload)
    now = datetime.now(UTC)
    job = Job(
        id=uuid.uuid4(),
        user_id=new.user_id,
        kind=spec.kind,
        queue=new.queue,
        priority=new.priority,
        payload=new.payload,
        status=Status.RUNNING,
        attempt=1,
        max_attempts=new.max_attempts,
        unique_key=None,
        run_after=now,
        lease_until=None,
        worker=None,
        worker_pid=os.getpid(),
        cancel_requested=False,
        result=None,
        errors=[],
        created_at=now,
        started_at=now,
        finished_at=None,
    )
    return spec.call(JobContext(job, rt, 0.0, detached=True), new.payload)


def _ensure_queue(name: str) -> None:
    # Before configuration, celeryconfig picks the queue up from the registry;
    # after it (a worker importing JOBSYS_IMPORTS), the worker must learn it here.
    # select_add: a queue added after start-up is consumed by default (unless -Q
    # narrows the worker later), which a plain add no longer does in Celery 5.7.
    queues = app.amqp.queues if app.configured else None  # type: ignore[attr-defined]
    if queues is not None and name not in queues:
        queues.select_add(Queue(name, routing_key=name))
