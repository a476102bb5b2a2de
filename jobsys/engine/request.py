"""The worker main process's view of a request whose pool child died or overran.

The child cannot record anything after ``kill -9``, ``os._exit`` or a hard
time limit, so the main process records the failed attempt in Postgres and
schedules the retry (or buries the job) itself; the broker message is then
acknowledged rather than requeued, because Postgres now owns the job's fate.
"""

from __future__ import annotations

import os
import uuid
from typing import Any

import structlog
from billiard.einfo import ExceptionWithTraceback  # type: ignore[attr-defined]
from billiard.exceptions import TimeLimitExceeded, WorkerLostError
from celery.worker.request import Request
from celery.worker.state import task_ready

from jobsys.engine import runtime
from jobsys.engine.dispatch import Why, canvas_of
from jobsys.engine.failures import Failure
from jobsys.engine.outcome import settle_failure
from jobsys.errors import StoreUnavailableError
from jobsys.store import Status

log = structlog.get_logger("jobsys.engine")


class JobRequest(Request):
    """Celery request with jobsys recovery for lost children and hard timeouts."""

    def on_timeout(self, soft: bool, timeout: float) -> None:
        if not soft:
            self._recover(TimeLimitExceeded(timeout), "timeout", f"hard time limit {timeout}s")
        super().on_timeout(soft, timeout)

    def on_failure(
        self, exc_info: Any, send_failed_event: bool = True, return_ok: bool = False
    ) -> None:
        exc = exc_info.exception
        if isinstance(exc, ExceptionWithTraceback):
            exc = exc.exc
        lost = isinstance(exc, WorkerLostError) or (
            isinstance(exc, SystemExit | KeyboardInterrupt)
            and not (
                getattr(self, "_already_cancelled", False)
                or getattr(self, "_already_revoked", False)
            )
        )
        if lost and self._recover(exc, "worker_lost", f"worker process lost: {exc}"):
            task_ready(self)
            self.acknowledge()
            self.send_event("task-failed", exception=repr(exc), traceback="")
            return
        super().on_failure(exc_info, send_failed_event=send_failed_event, return_ok=return_ok)

    def _recover(self, exc: BaseException, reason: str, message: str) -> bool:
        """Record the failed attempt; False if the store could not be reached."""
        rt = runtime.current()
        try:
            store = rt.store
            # A child that dies at once may do so before telling us its pid; then
            # the attempt is ours if it runs on this node in a process that is gone.
            pid = int(self.worker_pid) if self.worker_pid else None
            job = store.running_on(uuid.UUID(self.id), str(self.hostname), pid)
            if job is None:
                # Never claimed (the child died before it ran): Celery requeues it.
                state = store.job_state(uuid.UUID(self.id))
                return not (state is not None and state[0] is Status.QUEUED)
            if pid is None and _alive(job.worker_pid):
                return True  # another live process holds this attempt
            failure = Failure(type(exc).__name__, message, "", reason, True)
            # From the request's canvas options, so a chord member stays in its chord.
            canvas = canvas_of(self._context, retried=True)  # type: ignore[attr-defined]
            settle_failure(
                rt, job, failure, actor=str(self.hostname), canvas=canvas, why=Why.RECOVER
            )
            return True
        except StoreUnavailableError:
            log.warning("recover.store_unavailable", job_id=self.id)
            return False


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
