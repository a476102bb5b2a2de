"""Recording the end of an attempt: success, a retry after backoff, or a dead letter.

Used by the task in the pool child, by the worker's main process when a child
dies or hits its hard limit, and by the sweeper when a lease expires.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import TypeVar

import structlog
from celery import Celery

from jobsys.config import Settings
from jobsys.engine.failures import Failure, backoff
from jobsys.engine.publish import publish
from jobsys.errors import StoreUnavailableError
from jobsys.store import Job, Store

T = TypeVar("T")
log = structlog.get_logger("jobsys.engine")


@dataclasses.dataclass(frozen=True)
class Settled:
    """What became of a failed attempt: ``retry`` after ``delay``, ``dead``, or ``lost``.

    ``lost`` means another party had already moved the job on (a late duplicate).
    The caller publishes the retry, so that each keeps the message's context
    (a chord member retried in its worker stays in its chord).
    """

    action: str
    delay: float = 0.0


def settle_failure(
    store: Store, settings: Settings, job: Job, failure: Failure, *, actor: str
) -> Settled:
    """Put the job back after backoff if it may succeed yet, else bury it."""
    if failure.postpone:
        return _postpone(store, job, failure)
    entry = failure.entry(job.attempt, job.started_at, job.worker)
    if failure.retryable and job.attempt < job.max_attempts:
        delay = failure.retry_after
        if delay is None:
            delay = backoff(job.attempt, base=settings.retry_base, cap=settings.retry_cap)
        if store.retry(job, delay=delay, error=entry) is None:
            return Settled("lost")
        log.info(
            "job.retry",
            job_id=str(job.id),
            attempt=job.attempt,
            delay=round(delay, 3),
            reason=failure.reason,
            error=failure.message,
        )
        return Settled("retry", delay)
    letter = store.bury(
        job,
        error=entry,
        traceback=failure.traceback,
        reason=failure.reason,
        retryable=failure.retryable,
        actor=actor,
    )
    log.warning(
        "job.dead",
        job_id=str(job.id),
        attempt=job.attempt,
        dead_letter=letter,
        reason=failure.reason,
        error=failure.message,
    )
    return Settled("dead" if letter is not None else "lost")


def _postpone(store: Store, job: Job, failure: Failure) -> Settled:
    delay = failure.retry_after or 0.0
    if store.postpone(job, delay=delay) is None:
        return Settled("lost")
    log.info(
        "job.postponed",
        job_id=str(job.id),
        attempt=job.attempt,
        delay=round(delay, 3),
        reason=failure.reason,
        why=failure.message,
    )
    return Settled("retry", delay)


def republish(app: Celery, job: Job, delay: float) -> None:
    """Publish a job's next attempt without its original message's context."""
    publish(
        app,
        job_id=job.id,
        user_id=job.user_id,
        kind=job.kind,
        queue=job.queue,
        priority=job.priority,
        countdown=delay,
        payload=job.payload,
    )


def patiently(fn: Callable[[], T], *, settings: Settings, budget: float = 60.0) -> T:
    """Run a store call, waiting out a database outage for up to ``budget`` seconds.

    Raises:
        StoreUnavailableError: the database stayed unreachable; the job's lease
            will expire and the sweeper will run it again.
    """
    deadline = time.monotonic() + budget
    while True:
        try:
            return fn()
        except StoreUnavailableError:
            if time.monotonic() >= deadline:
                raise
            log.warning("store.unavailable", retry_in=settings.db_retry_delay)
            time.sleep(settings.db_retry_delay)
