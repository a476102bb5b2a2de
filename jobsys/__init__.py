"""jobsys: durable per-user jobs on Celery, with PostgreSQL as the source of truth.

``celery -A jobsys worker`` finds the Celery app here as :data:`app`. This
package is the engine only: the Gmail and Calendar sync pipeline loads with
``jobsys.tasks`` (the default of ``JOBSYS_IMPORTS``).
"""

from __future__ import annotations

import uuid as _uuid

from jobsys.alerts import task as _alerts  # noqa: F401  (registers the alerts' beat task)
from jobsys.engine import worker as _worker  # noqa: F401  (registers signals and the sweep task)
from jobsys.engine.app import app
from jobsys.engine.context import JobContext
from jobsys.engine.enqueue import enqueue, enqueue_many
from jobsys.engine.hooks import Attempt, Hook, Outcome, Recorded
from jobsys.engine.results import JobResult
from jobsys.engine.runtime import Runtime
from jobsys.engine.task import JobTask, job
from jobsys.errors import (
    ConfigError,
    DuplicateJobError,
    InvalidTransitionError,
    JobCancelled,
    JobDeadError,
    JobError,
    JobNotFoundError,
    JobPostponed,
    JobsysError,
    OptionError,
    PayloadError,
    QuotaExceeded,
    StoreUnavailableError,
    UnknownKindError,
)
from jobsys.interfaces import obs as _obs  # noqa: F401  (worker logging and metrics signals)
from jobsys.interfaces import tracing as _tracing  # noqa: F401  (worker tracing signals)
from jobsys.store import Job, Status


def get_job(job_id: _uuid.UUID | str, *, runtime: Runtime | None = None) -> Job:
    """The job's row as it is now (``jobsys.get_job(result.id)``).

    Raises:
        JobNotFoundError: no job has that id.
        OptionError: ``job_id`` is not a UUID.
    """
    from jobsys.engine import runtime as _runtime

    try:
        ident = job_id if isinstance(job_id, _uuid.UUID) else _uuid.UUID(str(job_id))
    except ValueError:
        raise OptionError("job_id", job_id, "must be a UUID") from None
    return (runtime or _runtime.current()).store.get_job(ident)


__all__ = [
    "Attempt",
    "ConfigError",
    "DuplicateJobError",
    "Hook",
    "InvalidTransitionError",
    "Job",
    "JobCancelled",
    "JobContext",
    "JobDeadError",
    "JobError",
    "JobNotFoundError",
    "JobPostponed",
    "JobResult",
    "JobTask",
    "JobsysError",
    "OptionError",
    "Outcome",
    "PayloadError",
    "QuotaExceeded",
    "Recorded",
    "Runtime",
    "Status",
    "StoreUnavailableError",
    "UnknownKindError",
    "app",
    "enqueue",
    "enqueue_many",
    "get_job",
    "job",
]
