"""A hand-made history for the stats: pipeline runs and attempts at known ages.

Every row is placed relative to the database's ``now()``; figures that depend
on the reading's own ``now()`` (freshness) are bounded by the time the test took.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import sqlalchemy as sa

from jobsys.store import Store

_RUN = sa.text(
    "INSERT INTO pipeline_runs (id, user_id, status, created_at, finished_at)"
    " VALUES (:id, :u, :s, now() - make_interval(secs => :ago + :took),"
    " now() - make_interval(secs => :ago))"
)
_ATTEMPT = sa.text(
    """
INSERT INTO attempts (job_id, user_id, kind, queue, attempt, outcome, reason, priority, created_at,
  due_at, started_at, finished_at, cpu_s, wall_s, google_requests, quota_units)
VALUES (:job, :u, :kind, 'default', :n, :outcome, :reason, :priority,
  now() - make_interval(secs => :ago + :took),
  now() - make_interval(secs => :ago + 1 + :latency),
  now() - make_interval(secs => :ago + 1),
  now() - make_interval(secs => :ago), :cpu, :wall, :requests, :units)
"""
)


@dataclass(frozen=True)
class Run:
    user: str
    status: str
    ago: float  # seconds since it finished
    took: float  # created -> finished


@dataclass(frozen=True)
class Try:
    """One attempt: ``took`` from the job's enqueue to this attempt's end."""

    user: str
    kind: str
    outcome: str
    took: float
    ago: float = 60.0
    n: int = 1
    reason: str | None = None
    priority: int = 0
    latency: float = 1.0  # due -> started
    cpu: float | None = 0.0
    wall: float | None = 0.0
    requests: int | None = 0
    units: int | None = 0


def seed(store: Store, runs: list[Run], tries: list[Try]) -> None:
    with store.transaction() as conn:
        for r in runs:
            conn.execute(_RUN, {"id": uuid.uuid4(), "u": r.user, "s": r.status, "ago": r.ago,
                                "took": r.took})  # fmt: skip
        for t in tries:
            conn.execute(
                _ATTEMPT,
                {
                    "job": uuid.uuid4(), "u": t.user, "kind": t.kind, "n": t.n,
                    "outcome": t.outcome, "reason": t.reason, "priority": t.priority,
                    "ago": t.ago, "took": t.took, "latency": t.latency, "cpu": t.cpu,
                    "wall": t.wall, "requests": t.requests, "units": t.units,
                },
            )  # fmt: skip
