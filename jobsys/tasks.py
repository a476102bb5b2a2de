"""Job kinds that come with jobsys: ``from jobsys.tasks import sync_user``.

Importing this module loads the Gmail and Calendar sync pipeline (and the
Google client); ``JOBSYS_IMPORTS`` names it by default, so workers and
clients load it unless configured otherwise. ``import jobsys`` alone is the
engine only.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from jobsys.pipeline.kinds import (
    extract,
    ingest_calendar,
    ingest_gmail,
    normalize,
    plan,
    process,
    sync_user,
)
from jobsys.pipeline.push import watch_mailbox
from jobsys.pipeline.repair import RunRepair
from jobsys.pipeline.schedule import schedule_tick

if TYPE_CHECKING:
    from jobsys.engine.hooks import Hook
    from jobsys.engine.runtime import Runtime


def jobsys_hooks(runtime: Runtime) -> Iterable[Hook]:
    """The pipeline's engine hooks: every sweep repairs stalled or failed runs."""
    return (RunRepair(),)


__all__ = [
    "extract",
    "ingest_calendar",
    "ingest_gmail",
    "jobsys_hooks",
    "normalize",
    "plan",
    "process",
    "schedule_tick",
    "sync_user",
    "watch_mailbox",
]
