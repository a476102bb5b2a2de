"""What a handler sees of its job."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import structlog

from jobsys.errors import JobCancelled
from jobsys.store import Job

if TYPE_CHECKING:
    from jobsys.engine.runtime import Runtime


class JobContext:
    """The running job: ids, attempt, a bound logger, lease and cancellation.

    Handlers receive one as their first argument. ``runtime`` is the process's
    :class:`~jobsys.engine.runtime.Runtime` (settings, store, hooks...).

    A handler called as a plain function (``resize("u1", photo_id=1)``, not
    through a worker) gets a detached context: its job is not stored,
    ``heartbeat()`` does nothing and ``cancelled()`` is False.
    """

    def __init__(
        self, job: Job, runtime: Runtime, lease: float, *, task: Any = None, detached: bool = False
    ) -> None:
        self._task = task
        self._job = job
        self.runtime = runtime
        self._lease = lease
        self._detached = detached
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
        """Extend the lease; stop here if the job was cancelled.

        Raises:
            JobCancelled: cancellation was requested (``jobsys cancel``, a revoke),
                or the job no longer belongs to this attempt.
        """
        if self._detached:
            return
        state = self.runtime.store.heartbeat(self._job, lease=self._lease)
        if state is None:
            raise JobCancelled(f"job {self.job_id} attempt {self.attempt} no longer holds a lease")
        self._cancelled = state
        if state:
            raise JobCancelled(f"job {self.job_id} was cancelled")

    def cancelled(self) -> bool:
        """Whether cancellation was requested (asks the store; extends the lease)."""
        if self._detached:
            return False
        state = self.runtime.store.heartbeat(self._job, lease=self._lease)
        if state is None:
            raise JobCancelled(f"job {self.job_id} attempt {self.attempt} no longer holds a lease")
        self._cancelled = state
        return state

    def replace(self, signature: Any) -> None:
        """End this step by replacing it with a Celery canvas (``Task.replace``).

        The step is recorded as succeeded; the canvas inherits its place in the
        surrounding chain or chord. Raises ``celery.exceptions.Ignore``.
        """
        if self._task is None or self._detached:
            raise RuntimeError("replace() needs a job running in a worker")
        self._task.replace(signature)

    def raise_if_cancelled(self) -> None:
        """Stop the handler here if the job was cancelled.

        Raises:
            JobCancelled: cancellation was requested.
        """
        if self.cancelled():
            raise JobCancelled(f"job {self.job_id} was cancelled")
