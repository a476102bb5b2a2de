"""jobsys: durable per-user jobs on Celery, with PostgreSQL as the source of truth.

``celery -A jobsys worker`` finds the Celery app here as :data:`app`.
"""

from __future__ import annotations

from jobsys import tasks as _tasks  # noqa: F401  (the sync pipeline's job kinds)
from jobsys.engine import worker as _worker  # noqa: F401  (registers signals and the sweep task)
from jobsys.engine.app import app
from jobsys.engine.context import JobContext
from jobsys.engine.enqueue import enqueue, enqueue_many
from jobsys.engine.failures import JobCancelled, JobError, JobPostponed
from jobsys.engine.task import JobTask, job
from jobsys.errors import (
    ConfigError,
    DuplicateJobError,
    InvalidTransitionError,
    JobNotFoundError,
    JobsysError,
    PayloadError,
    StoreUnavailableError,
    UnknownKindError,
)
from jobsys.store import Status

__all__ = [
    "ConfigError",
    "DuplicateJobError",
    "InvalidTransitionError",
    "JobCancelled",
    "JobContext",
    "JobError",
    "JobNotFoundError",
    "JobPostponed",
    "JobTask",
    "JobsysError",
    "PayloadError",
    "Status",
    "StoreUnavailableError",
    "UnknownKindError",
    "app",
    "enqueue",
    "enqueue_many",
    "job",
]
