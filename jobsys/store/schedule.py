"""SQL for periodic syncs: which users are due, and their sync jobs, in one statement.

Each user row holds ``next_sync_at``. A tick takes a batch of due, unpaused
users with ``FOR UPDATE SKIP LOCKED``, moves each one's ``next_sync_at`` on by
its interval and inserts its job into the backlog, all in one statement: two
ticks at once take disjoint users, and a user whose row moved on is no longer
due, so nothing is enqueued twice. The job carries a unique key, so a user
whose previous periodic sync is still queued or running gets no second one, and
coalesces (``jobs.coalesce``): a sync of the user's still waiting in the
backlog stands for it.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import sqlalchemy as sa

from jobsys.store import queries as q
from jobsys.store.gateway import Store

TICK = sa.text(
    f"""
WITH due AS (
  SELECT id, COALESCE(sync_interval, :interval) AS every FROM users
  WHERE NOT paused AND next_sync_at <= now()
  ORDER BY next_sync_at, id LIMIT :batch
  FOR UPDATE SKIP LOCKED
), moved AS (
  UPDATE users u SET next_sync_at = now() + make_interval(secs => due.every)
  FROM due WHERE u.id = due.id
  RETURNING u.id
), ins AS (
  INSERT INTO jobs (id, user_id, kind, queue, priority, payload, max_attempts, unique_key,
    coalesce, dispatched_at)
  SELECT gen_random_uuid(), moved.id, :kind, :queue, :priority, CAST(:payload AS jsonb),
    :max_attempts, :unique_key, true, NULL
  FROM moved
  ON CONFLICT DO NOTHING
  RETURNING user_id, id, queue, run_after, run_after AS next_due
), fair AS ({q.FAIR_JOIN_TEMPLATE.format(backlog="SELECT queue, user_id, next_due FROM ins")})
SELECT moved.id AS user_id, ins.id AS job_id FROM moved LEFT JOIN ins ON ins.user_id = moved.id
ORDER BY moved.id
"""
)

_SET_INTERVAL = sa.text("UPDATE users SET sync_interval = :every WHERE id = :user_id")
_SYNC_NOW = sa.text("UPDATE users SET next_sync_at = now() WHERE id = ANY(CAST(:users AS text[]))")


@dataclasses.dataclass(frozen=True, kw_only=True)
class JobTemplate:
    """A job SQL inserts for many users: a kind with its payload and options."""

    kind: str
    queue: str
    priority: int
    max_attempts: int
    payload: dict[str, Any] = dataclasses.field(default_factory=dict)
    unique_key: str | None = None


def tick_params(job: JobTemplate, *, interval: float, batch: int) -> dict[str, Any]:
    """The parameters of :data:`TICK` for one batch."""
    payload = json.dumps(job.payload)
    return {**dataclasses.asdict(job), "payload": payload, "interval": interval, "batch": batch}


class ScheduleStore:
    """SQL for the schedule of periodic syncs, on the same engines as :class:`Store`."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def take_due(self, job: JobTemplate, *, interval: float, batch: int) -> list[dict[str, Any]]:
        """One batch of due users, moved on and given a job each (``job_id`` None: the
        user's previous periodic job is still queued or running)."""
        params = tick_params(job, interval=interval, batch=batch)
        with self._store.transaction() as conn:
            rows = [dict(r) for r in conn.execute(TICK, params).mappings()]
            if any(r["job_id"] is not None for r in rows):
                conn.execute(q.WAKE, {"wake": [job.queue]})
        return rows

    def set_interval(self, user_id: str, seconds: float | None) -> None:
        """A user's own sync interval (None: the settings')."""
        with self._store.transaction() as conn:
            conn.execute(_SET_INTERVAL, {"user_id": user_id, "every": seconds})

    def make_due(self, user_ids: list[str]) -> None:
        """Sync these users at the next tick."""
        with self._store.transaction() as conn:
            conn.execute(_SYNC_NOW, {"users": user_ids})
