"""Results that answer from PostgreSQL: what ``.delay()`` and ``enqueue()`` return.

A :class:`JobResult` is a Celery ``AsyncResult`` whose state, readiness,
result and ``get()`` come from the job's row, not from Celery's result
backend (job tasks do not store results there). States map as::

    queued            PENDING (RETRY once an attempt has failed)
    running           STARTED
    succeeded         SUCCESS      result: what the handler returned
    dead              FAILURE      result: JobDeadError (get() raises it)
    cancelled         REVOKED      get() raises JobCancelled

``revoke()`` cancels the job in PostgreSQL (a running job stops at its next
``ctx.heartbeat()``) besides broadcasting Celery's revoke.
"""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Any

from celery import states
from celery.exceptions import TimeoutError as CeleryTimeoutError
from celery.result import AsyncResult

from jobsys.errors import JobCancelled, JobDeadError
from jobsys.store import Job, Status

if TYPE_CHECKING:
    from jobsys.engine.runtime import Runtime

_STATES = {
    Status.RUNNING: states.STARTED,
    Status.SUCCEEDED: states.SUCCESS,
    Status.DEAD: states.FAILURE,
    Status.CANCELLED: states.REVOKED,
}
_FINAL = (Status.SUCCEEDED, Status.DEAD, Status.CANCELLED)


class JobResult(AsyncResult):  # type: ignore[type-arg]
    """The result of a job, read from its row in PostgreSQL."""

    def __init__(self, id: str, *, runtime: Runtime | None = None, **kwargs: Any) -> None:
        # Not AsyncResult.__init__: its result backend and promise cost 28 us a result
        # (as much again as a bulk enqueue spends on a job), and a JobResult reads its
        # row instead; both are made on first use.
        from jobsys.engine import runtime as _runtime

        if id is None:
            raise ValueError("a JobResult needs the job's id")
        self.runtime = runtime or _runtime.current()
        self.app = kwargs.get("app") or self.runtime.app
        self.id = id
        self.parent = kwargs.get("parent")
        self._cache = None
        self._ignored = True
        self._backend = kwargs.get("backend")
        self._on_ready: Any = None

    @property
    def backend(self) -> Any:  # type: ignore[override]
        if self._backend is None:
            self._backend = self.app.backend
        return self._backend

    @property
    def on_ready(self) -> Any:  # type: ignore[override]
        if self._on_ready is None:
            from vine import promise

            self._on_ready = promise(self._on_fulfilled, weak=True)  # type: ignore[attr-defined]
        return self._on_ready

    @property
    def job_id(self) -> uuid.UUID:
        return uuid.UUID(self.id)

    def job(self) -> Job:
        """The job's row as it is now.

        Raises:
            JobNotFoundError: no job has this id.
        """
        return self.runtime.store.get_job(self.job_id)

    @property
    def state(self) -> str:  # type: ignore[override]
        job = self.job()
        if job.status is Status.QUEUED:
            return states.RETRY if job.errors else states.PENDING
        return _STATES[job.status]

    status = state  # type: ignore[assignment]

    def ready(self) -> bool:
        return self.job().status in _FINAL

    def successful(self) -> bool:
        return self.job().status is Status.SUCCEEDED

    def failed(self) -> bool:
        return self.job().status is Status.DEAD

    @property
    def result(self) -> Any:
        """The handler's return value once succeeded, the error once dead or cancelled."""
        job = self.job()
        if job.status is Status.SUCCEEDED:
            return job.result
        if job.status in (Status.DEAD, Status.CANCELLED):
            return self._error(job)
        return None

    info = result

    @property
    def traceback(self) -> str | None:  # type: ignore[override]
        letter = self.runtime.store.dead_letter_of(self.job_id)
        return letter.traceback if letter else None

    def get(  # type: ignore[override]
        self,
        timeout: float | None = None,
        propagate: bool = True,
        interval: float = 0.1,
        **_ignored: Any,
    ) -> Any:
        """Wait for the job to finish; its result, or raise why it did not succeed.

        Raises:
            JobDeadError: the job was dead-lettered (``propagate``).
            JobCancelled: the job was cancelled (``propagate``).
            celery.exceptions.TimeoutError: it did not finish within ``timeout`` s.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self.job()
            if job.status in _FINAL:
                break
            if deadline is not None and time.monotonic() >= deadline:
                raise CeleryTimeoutError(f"job {self.id} is still {job.status.value}")
            time.sleep(interval)
        if job.status is Status.SUCCEEDED:
            return job.result
        error = self._error(job)
        if propagate:
            raise error
        return error

    wait = get  # type: ignore[assignment]

    def revoke(
        self,
        connection: Any = None,
        terminate: bool = False,
        signal: Any = None,
        wait: bool = False,
        timeout: float | None = None,
    ) -> None:
        """Cancel the job (``jobsys cancel``), and broadcast Celery's revoke."""
        from jobsys.engine.operations import cancel_quietly

        cancel_quietly(self.runtime, self.job_id, actor="revoke")
        super().revoke(connection, terminate, signal, wait, timeout)

    def forget(self) -> None:
        return None  # the row is the record; nothing is kept in Celery's backend

    def _error(self, job: Job) -> Exception:
        if job.status is Status.CANCELLED:
            return JobCancelled(f"job {job.id} was cancelled")
        last = job.errors[-1] if job.errors else {}
        letter = self.runtime.store.dead_letter_of(job.id)
        return JobDeadError(
            job.id,
            exc_type=str(last.get("type", "Error")),
            message=str(last.get("message", "")),
            reason=str(last.get("reason", "error")),
            dead_letter=letter.id if letter else None,
        )
