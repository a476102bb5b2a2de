"""Operator actions shared by the CLI, the HTTP API and the worker (revokes)."""

from __future__ import annotations

import uuid
from datetime import datetime

import structlog

from jobsys.engine.dispatch import Dispatch, Why
from jobsys.engine.hooks import Outcome
from jobsys.engine.outcome import notify
from jobsys.engine.registry import keyed
from jobsys.engine.runtime import Runtime
from jobsys.errors import InvalidTransitionError
from jobsys.store import Job, Status, tenancy

log = structlog.get_logger("jobsys.engine")


def retry_dead_letter(rt: Runtime, letter_id: int, *, actor: str) -> uuid.UUID:
    """Give a dead-lettered job a fresh set of attempts.

    With admission on it joins the backlog and is promoted in its user's fair share,
    as at enqueue, so retrying thousands of letters does not flood the broker ahead
    of other users; a job of a keyed kind always waits there for its key. With
    admission off it is published at once.

    Raises:
        JobNotFoundError: no dead letter has that id.
        InvalidTransitionError: the letter was retried already, or its job is no
            longer dead.
    """
    store = rt.store
    letter = store.get_dead_letter(letter_id)
    if letter.retried_at is not None:
        # Its job may have died again since: that death has a letter of its own,
        # and retrying through this old one would bypass it.
        raise _retried_already(rt, letter.id, letter.job_id, letter.retried_at)
    job = store.revive(letter, actor=actor, backlog=rt.settings.admission)
    if job is None:
        status = store.get_job(letter.job_id).status
        raise InvalidTransitionError(
            letter.job_id, status.value, "retry from the dead-letter queue"
        )
    if rt.settings.admission or keyed(job.kind):
        return letter.job_id  # it waits in the backlog (Store.revive)
    # In a user's scope the revival commits when the scope ends: the message follows it.
    tenancy.after_commit(lambda: rt.dispatcher.send(Dispatch.of_job(job, Why.DLQ)))
    return letter.job_id


def _retried_already(
    rt: Runtime, letter_id: int, job_id: uuid.UUID, at: datetime
) -> InvalidTransitionError:
    status = rt.store.get_job(job_id).status.value
    newest = rt.store.dead_letter_of(job_id)
    again = (
        f"; retry its newest dead letter {newest.id}"
        if newest is not None and newest.id != letter_id and newest.retried_at is None
        else ""
    )
    when = at.isoformat(timespec="seconds")
    return InvalidTransitionError(
        job_id, status, f"retry dead letter {letter_id} again: it was retried at {when}{again}"
    )


def cancel(rt: Runtime, job_id: uuid.UUID, *, actor: str) -> Status:
    """Cancel a queued job, or ask a running one to stop at its next heartbeat.

    Returns ``cancelled``, or ``running`` for a job asked to stop.

    Raises:
        JobNotFoundError: no such job.
        InvalidTransitionError: the job already finished.
    """
    job = rt.store.request_cancel(job_id, actor=actor)
    if job is None:
        found = rt.store.get_job(job_id)
        raise InvalidTransitionError(job_id, found.status.value, "cancel")
    _cancelled(rt, job, actor)
    return job.status


def cancel_quietly(rt: Runtime, job_id: uuid.UUID, *, actor: str) -> Job | None:
    """Cancel if the job is still live; a finished or unknown job is left as it is."""
    job = rt.store.request_cancel(job_id, actor=actor)
    if job is not None:
        log.info("job.cancel", job_id=str(job_id), status=job.status.value, actor=actor)
        _cancelled(rt, job, actor)
    return job


def _cancelled(rt: Runtime, job: Job, actor: str) -> None:
    # A queued job is done now; a running one is recorded when it stops. The hooks act
    # for every user: once a user's scope committed, outside it.
    if job.status is Status.CANCELLED:
        tenancy.after_commit(lambda: notify(rt, job, Outcome.CANCELLED, actor=actor))
