"""Recording the end of an attempt: success, a retry after backoff, a postponement, a
dead letter or a cancellation; then the hooks hear of it.

Used by the task in the pool child, by the worker's main process when a child
dies or hits its hard limit, and by the sweeper when a lease expires. A retry
or postponement is dispatched here, right after its conditional UPDATE: with
the message's canvas options when the caller has them (a chord member
retried in its worker stays in its chord), without them otherwise. A keyed
job goes back to the backlog instead, a canvas member's options with it in its
row: its promotion, once its key has room, publishes it in its chord.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import structlog

from jobsys.config import Settings
from jobsys.engine.admission import hand_over
from jobsys.engine.dispatch import Dispatch, Why, linked
from jobsys.engine.failures import STORE_UNAVAILABLE, Failure, backoff
from jobsys.engine.hooks import Outcome, Recorded
from jobsys.engine.registry import keyed, registry
from jobsys.engine.runtime import Runtime
from jobsys.errors import JobNotFoundError, StoreUnavailableError, UnknownKindError
from jobsys.store import Job
from jobsys.store.records import UNMEASURED, Cost

T = TypeVar("T")
log = structlog.get_logger("jobsys.engine")
# The reason a job is dead-lettered with once it has been postponed for too long.
POSTPONED_TOO_LONG = "postponed_too_long"


@dataclasses.dataclass(frozen=True)
class Settled:
    """What became of a failed attempt: retried or postponed after ``delay``, dead, or lost.

    ``LOST`` means another party had already moved the job on (a late duplicate).
    """

    outcome: Outcome
    delay: float = 0.0
    reason: str | None = None  # when not the failure's own (a postponement gone on too long)


def settle_failure(
    rt: Runtime,
    job: Job,
    failure: Failure,
    *,
    actor: str,
    canvas: Mapping[str, Any] | None = None,
    why: Why = Why.RETRY,
    cost: Cost = UNMEASURED,
) -> Settled:
    """Put the job back after backoff (or postpone it) if it may succeed yet, else bury it.

    ``why`` names the retry's dispatch path (a worker's retry, the main process's
    recovery of a lost child, the sweeper's expired lease); ``cost`` is what the
    attempt spent, recorded with its outcome (unmeasured where no handler ran here).
    """
    # With admission, a job back in the queue waits in the backlog until due (no broker
    # ETA held in a worker's memory); an unkeyed canvas member is published again at once
    # with its countdown, its place in the canvas riding on the message. A keyed job
    # always waits for its key in the backlog, as at enqueue (admission on or off), a
    # canvas member's place kept in its row (the row's own, where the caller has none:
    # the sweeper's expired lease, a lost child).
    has_key = keyed(job.kind)
    kept = canvas if linked(canvas) and has_key else None
    backlog = has_key or (rt.settings.admission and not linked(canvas))
    if failure.postpone:
        settled = _postpone(rt, job, failure, backlog, actor, cost, kept)
    elif failure.retryable and job.attempt < job.max_attempts:
        settled = _retry(rt, job, failure, backlog, cost, kept)
    else:
        settled = _bury(rt, job, failure, actor, cost)
    reason = settled.reason or failure.reason
    notify(rt, job, settled.outcome, delay=settled.delay, reason=reason, actor=actor)
    if settled.outcome in (Outcome.RETRIED, Outcome.POSTPONED) and not backlog:
        path = why if settled.outcome is Outcome.RETRIED else Why.POSTPONE
        rt.dispatcher.send(Dispatch.of_job(job, path, countdown=settled.delay, canvas=canvas))
    return settled


def _retry(
    rt: Runtime,
    job: Job,
    failure: Failure,
    backlog: bool,
    cost: Cost,
    canvas: Mapping[str, Any] | None,
) -> Settled:
    settings = rt.settings
    entry = failure.entry(job.attempt, job.started_at, job.worker)
    delay = failure.retry_after
    if delay is None:
        delay = backoff(job.attempt, base=settings.retry_base, cap=settings.retry_cap)
    back = rt.store.requeue(
        job, delay=delay, error=entry, backlog=backlog, canvas=canvas, cost=cost
    )
    if back is None:
        return _stopped_or_lost(rt, job, cost)
    log.info(
        "job.retry",
        job_id=str(job.id),
        attempt=job.attempt,
        delay=round(delay, 3),
        reason=failure.reason,
        error=failure.message,
    )
    return Settled(Outcome.RETRIED, delay)


def _stopped_or_lost(rt: Runtime, job: Job, cost: Cost) -> Settled:
    # A job asked to stop is not put back (the store refused): it ends cancelled.
    # Else another party moved it on meanwhile, a late duplicate's record.
    if rt.store.cancel_running(job, cost=cost):
        log.info("job.cancelled", job_id=str(job.id), attempt=job.attempt)
        return Settled(Outcome.CANCELLED)
    return Settled(Outcome.LOST)


def _bury(rt: Runtime, job: Job, failure: Failure, actor: str, cost: Cost) -> Settled:
    letter = rt.store.bury(
        job,
        error=failure.entry(job.attempt, job.started_at, job.worker),
        traceback=failure.traceback,
        reason=failure.reason,
        retryable=failure.retryable,
        actor=actor,
        cost=cost,
    )
    log.warning(
        "job.dead",
        job_id=str(job.id),
        attempt=job.attempt,
        dead_letter=letter,
        reason=failure.reason,
        error=failure.message,
    )
    return Settled(Outcome.DEAD if letter is not None else Outcome.LOST)


def _postpone(
    rt: Runtime,
    job: Job,
    failure: Failure,
    backlog: bool,
    actor: str,
    cost: Cost,
    canvas: Mapping[str, Any] | None,
) -> Settled:
    delay = failure.retry_after
    if delay is None:
        # A lost database names no delay: try again when the claim path would.
        delay = rt.settings.db_retry_delay if failure.reason == STORE_UNAVAILABLE else 0.0
    limit = _postpone_limit(rt, job)
    back = rt.store.postpone(
        job, delay=delay, backlog=backlog, limit=limit, canvas=canvas, cost=cost
    )
    if back is None:
        if _asked_to_stop(rt, job):
            return _stopped_or_lost(rt, job, cost)
        # Refused for postponing too long while still this attempt's; else the bury
        # finds the job moved on, and the record is a late duplicate's: lost.
        buried = _bury(rt, job, _too_long(job, failure, limit), actor, cost)
        if buried.outcome is Outcome.DEAD:
            return dataclasses.replace(buried, reason=POSTPONED_TOO_LONG)
        return buried
    log.info(
        "job.postponed",
        job_id=str(job.id),
        attempt=job.attempt,
        delay=round(delay, 3),
        reason=failure.reason,
        why=failure.message,
    )
    return Settled(Outcome.POSTPONED, delay)


def _asked_to_stop(rt: Runtime, job: Job) -> bool:
    try:
        return rt.store.get_job(job.id).cancel_requested
    except JobNotFoundError:
        return True  # gone: nothing to bury (the cancel then finds nothing either: lost)


def _postpone_limit(rt: Runtime, job: Job) -> float:
    try:
        return registry.get(job.kind).postpone_limit(rt.settings)
    except UnknownKindError:  # a sweeper that lacks the kind: the configured default
        return rt.settings.max_postpone


def _too_long(job: Job, failure: Failure, limit: float) -> Failure:
    since = job.postponed_since.isoformat(timespec="seconds") if job.postponed_since else "?"
    message = (
        f"postponed {job.postponements} times since {since}, for longer than the kind's"
        f" limit of {limit:g} s; last postponed for {failure.reason}: {failure.message}"
    )
    return dataclasses.replace(
        failure, message=message, reason=POSTPONED_TOO_LONG, retryable=False, postpone=False
    )


def notify(
    rt: Runtime,
    job: Job,
    outcome: Outcome,
    *,
    delay: float = 0.0,
    reason: str | None = None,
    actor: str = "",
) -> None:
    """Tell the hooks what was recorded (nothing, when the job was lost), once the
    jobs waiting for the job's concurrency key were told its slot is free."""
    if outcome is not Outcome.LOST:
        hand_over(rt, job)
    rt.hooks.after_record(
        Recorded(job=job, outcome=outcome, delay=delay, reason=reason, actor=actor)
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
