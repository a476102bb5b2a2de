"""Operator actions shared by the CLI and the HTTP API."""

from __future__ import annotations

import uuid

from jobsys.engine import runtime
from jobsys.engine.app import app
from jobsys.engine.publish import publish
from jobsys.errors import InvalidTransitionError
from jobsys.store import Status


def retry_dead_letter(letter_id: int, *, actor: str) -> uuid.UUID:
    """Give a dead-lettered job a fresh set of attempts and publish it.

    Raises:
        JobNotFoundError: no dead letter has that id.
        InvalidTransitionError: its job is no longer dead (already retried).
    """
    store = runtime.store()
    letter = store.get_dead_letter(letter_id)
    row = store.revive(letter, actor=actor)
    if row is None:
        status = store.get_job(letter.job_id).status
        raise InvalidTransitionError(
            letter.job_id, status.value, "retry from the dead-letter queue"
        )
    publish(
        app,
        job_id=row["id"],
        user_id=row["user_id"],
        kind=row["kind"],
        queue=row["queue"],
        priority=row["priority"],
        payload=letter.payload,
    )
    return letter.job_id


def cancel(job_id: uuid.UUID, *, actor: str) -> Status:
    """Cancel a queued job, or ask a running one to stop.

    Raises:
        JobNotFoundError: no such job.
        InvalidTransitionError: the job already finished.
    """
    store = runtime.store()
    status = store.request_cancel(job_id, actor=actor)
    if status is None:
        job = store.get_job(job_id)
        raise InvalidTransitionError(job_id, job.status.value, "cancel")
    return status
