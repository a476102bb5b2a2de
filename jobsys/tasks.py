"""Job kinds that come with jobsys: ``from jobsys.tasks import sync_user``."""

from __future__ import annotations

from jobsys.pipeline.kinds import (
    extract,
    ingest_calendar,
    ingest_gmail,
    normalize,
    plan,
    process,
    sync_user,
)

__all__ = [
    "extract",
    "ingest_calendar",
    "ingest_gmail",
    "normalize",
    "plan",
    "process",
    "sync_user",
]
