"""The store: models, migrations and the one gateway that issues SQL."""

from __future__ import annotations

from jobsys.store.gateway import Store, connection_lost
from jobsys.store.protocol import JobStore
from jobsys.store.records import DeadLetter, Job, NewJob, WorkerRow
from jobsys.store.status import Status

__all__ = [
    "DeadLetter",
    "Job",
    "JobStore",
    "NewJob",
    "Status",
    "Store",
    "WorkerRow",
    "connection_lost",
]
