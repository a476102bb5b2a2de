"""What a handler sees of its job."""

from __future__ import annotations

import uuid
from typing import Any

import structlog

from jobsys.engine.failures import JobCancelled
from jobsys.store import Job, Store


class JobContext:
    """The running job: ids, attempt, a bound logger, lease and cancellation.

    Handlers receive one as their first argument.
    """

    def __init__(self, job: Job, store: Store, lease: float, *, task: Any = None) -> None:
        self._task = task
        self._job = job
        self._store = store
        self._lease = lease
        self._cancelled = job.cancel_requested
        self.log: Any = structlog.get_logger("jobsys.job").bind(
            job_id=str(job.id), kind=job.kind, user_id=job.user_id, attempt=job.attempt
        )

    @property
    def job_id(self) -> uuid.UUID:
        return self._job.id

    @property
    def user_id(self) -> str:
        return self._job.user_id

    @property
    def attempt(self) -> int:
        """This attempt's number, from 1."""
        return self._job.attempt

    @property
    def kind(self) -> str:
        return self._job.kind

    @property
    def job(self) -> Job:
        return self._job

    def heartbeat(self) -> None:
        """Extend the lease and learn whether the job was cancelled.

        Raises:
            JobCancelled: the job no longer belongs to this attempt.
        """
        state = self._store.heartbeat(self._job, lease=self._lease)
        if state is None:
            raise JobCancelled(f"job {self.job_id} attempt {self.attempt} no longer holds a lease")
        self._cancelled = state

    def cancelled(self) -> bool:
        """Whether cancellation was requested (checks the store)."""
        self.heartbeat()
        return self._cancelled

    def replace(self, signature: Any) -> None:
        """End this step by replacing it with a Celery canvas (``Task.replace``).

        The step is recorded as succeeded; the canvas inherits its place in the
        surrounding chain or chord. Raises ``celery.exceptions.Ignore``.
        """
        if self._task is None:
            raise RuntimeError("replace() needs the running task")
        self._task.replace(signature)

    def raise_if_cancelled(self) -> None:
        """Stop the handler here if the job was cancelled.

        Raises:
            JobCancelled: cancellation was requested.
        """
        if self.cancelled():
            raise JobCancelled(f"job {self.job_id} was cancelled")
