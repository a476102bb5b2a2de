"""Periodic syncs: one beat entry ticks, and each tick syncs every due user.

A user is due every ``JOBSYS_SYNC_INTERVAL`` seconds (``jobsys user set USER
--sync-interval``overrides it); a paused user never is. A tick takes due users
from PostgreSQL in batches of ``JOBSYS_SCHEDULE_BATCH`` and inserts an
incremental ``sync.user`` job for each straight into the backlog
(``store/schedule.py``): no beat entry per user, and two beats or two ticks at
once enqueue nothing twice. ``jobsys schedule tick`` runs one by hand.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from jobsys.engine import runtime
from jobsys.engine.app import app
from jobsys.engine.celeryconf import CONTROL_QUEUE
from jobsys.engine.enqueue import spec_of
from jobsys.engine.runtime import Runtime
from jobsys.store.schedule import JobTemplate, ScheduleStore

SYNC_KIND = "sync.user"
# A user's periodic sync holds this key while queued or running: a tick finding it
# held gives the user no second one (a sync requested by hand has no key).
PERIODIC_KEY = "periodic"


@dataclasses.dataclass(frozen=True)
class Tick:
    """What one tick did."""

    due: int
    enqueued: list[tuple[str, str]]  # (user_id, job_id)
    coalesced: list[str]  # due users whose previous periodic sync is still live
    batches: int
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "due": self.due,
            "enqueued": len(self.enqueued),
            "coalesced": len(self.coalesced),
            "batches": self.batches,
            "seconds": round(self.seconds, 3),
            "jobs": [{"user_id": u, "job_id": j} for u, j in self.enqueued],
        }


def sync_job(rt: Runtime, *, unique_key: str | None = None) -> JobTemplate:
    """A user's incremental sync, as SQL inserts it for many users (a tick, a follow-up)."""
    # The kind is jobsys's own: a tick asked for by hand finds it even when
    # JOBSYS_IMPORTS leaves the sync pipeline out (as `jobsys sync` does).
    from jobsys import tasks  # noqa: F401

    spec = spec_of(rt, SYNC_KIND)
    return JobTemplate(
        kind=spec.kind,
        queue=spec.queue,
        priority=spec.priority,
        payload=spec.dump(spec.validate({"full": False})),
        max_attempts=spec.attempts(rt.settings),
        unique_key=unique_key,
    )


def tick(rt: Runtime) -> Tick:
    """Enqueue a sync for every due user, a batch per transaction."""
    started = time.perf_counter()
    store, job = ScheduleStore(rt.postgres), sync_job(rt, unique_key=PERIODIC_KEY)
    batch = rt.settings.schedule_batch
    enqueued: list[tuple[str, str]] = []
    coalesced: list[str] = []
    batches = 0
    while True:
        rows = store.take_due(job, interval=rt.settings.sync_interval, batch=batch)
        batches += 1
        for row in rows:
            if row["job_id"] is None:
                coalesced.append(row["user_id"])
            else:
                enqueued.append((row["user_id"], str(row["job_id"])))
        if len(rows) < batch:
            break
    due = len(enqueued) + len(coalesced)
    return Tick(due, enqueued, coalesced, batches, time.perf_counter() - started)


# No task events: beat sends a tick every JOBSYS_SCHEDULE_TICK seconds, and Flower's
# task list is for jobs (the tick's sync.user jobs are there).
@app.task(name="jobsys.schedule.tick", ignore_result=True, queue=CONTROL_QUEUE, send_events=False)
def schedule_tick() -> dict[str, Any]:
    """One tick, as a periodic task under ``celery beat``."""
    done = tick(runtime.current()).as_dict()
    del done["jobs"]  # counts are enough for the task's log line
    return done
