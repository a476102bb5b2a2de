"""SQL for pipeline runs: one running run per user, and at most one follow-up after it.

A sync requested while the user's run is running does not start a second run
and is not dropped either: the run records a follow-up (``full`` wins over
``incremental``), and the statement that finishes the run inserts one sync job
for it, into the backlog, in the same transaction. However many requests came
in during the run, one follow-up run follows it.

Every statement that touches a run by id also matches the user it belongs
to: a job's payload names its run, and a job of one user naming another
user's run must not write to it (:class:`~jobsys.errors.RunMismatchError`).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import sqlalchemy as sa

from jobsys.errors import RunMismatchError
from jobsys.store import queries as q
from jobsys.store.schedule import JobTemplate
from jobsys.store.status import RunStatus

_START = sa.text(
    "INSERT INTO pipeline_runs (id, user_id, full_sync) VALUES (:id, :u, :full)"
    " ON CONFLICT DO NOTHING RETURNING id"
)
_FOLLOW = sa.text(
    """
UPDATE pipeline_runs SET follow_up =
  CASE WHEN :full OR follow_up = 'full' THEN 'full' ELSE 'incremental' END
WHERE user_id = :u AND status = 'running'
RETURNING id
"""
)
_FINISH = sa.text(
    f"""
WITH done AS (
  UPDATE pipeline_runs SET status = :s, error = :e, finished_at = now()
  WHERE id = :id AND user_id = :u AND status = 'running'
  RETURNING user_id, follow_up
), ins AS (
  INSERT INTO jobs (id, user_id, kind, queue, priority, payload, max_attempts, coalesce,
    dispatched_at)
  SELECT gen_random_uuid(), user_id, :kind, :queue, :priority,
    jsonb_build_object('full', follow_up = 'full'), :max_attempts, true, NULL
  FROM done WHERE follow_up IS NOT NULL
  ON CONFLICT DO NOTHING
  RETURNING user_id, queue, run_after AS next_due
), fair AS ({q.FAIR_JOIN_TEMPLATE.format(backlog="SELECT queue, user_id, next_due FROM ins")})
SELECT (SELECT count(*) FROM ins) AS followed,
  EXISTS (SELECT FROM pipeline_runs WHERE id = :id AND user_id = :u) AS owned
"""
)

_STEP = sa.text(
    "UPDATE pipeline_runs SET steps = jsonb_set(steps, ARRAY[:name],"
    " COALESCE(steps -> :name, '{}'::jsonb) || CAST(:f AS jsonb))"
    " WHERE id = :id AND user_id = :u RETURNING id"
)
_COUNT = sa.text(
    "UPDATE pipeline_runs SET steps = jsonb_set(steps, ARRAY[:name, :key],"
    " to_jsonb(COALESCE((steps -> :name ->> :key)::int, 0) + :n), true)"
    " WHERE id = :id AND user_id = :u RETURNING id"
)


class RunSql:
    """Pipeline runs; mixed into :class:`~jobsys.store.sync.SyncStore`."""

    _tx: Callable[[], AbstractContextManager[sa.Connection]]

    def start_run(self, user_id: str, *, full: bool) -> tuple[uuid.UUID, bool]:
        """A new run, or the user's running one with a follow-up recorded: ``(run_id, started)``."""
        run_id = uuid.uuid4()
        with self._tx() as conn:
            row = conn.execute(_START, {"id": run_id, "u": user_id, "full": full}).first()
            if row is not None:
                return run_id, True
            existing = conn.execute(_FOLLOW, {"u": user_id, "full": full}).scalar_one()
        return existing, False

    def step(self, user_id: str, run_id: uuid.UUID, name: str, **fields: Any) -> None:
        """Merge ``fields`` into the run's record of step ``name``.

        Raises:
            RunMismatchError: the user has no run ``run_id``; nothing was written.
        """
        params = {"id": run_id, "u": user_id, "name": name}
        self._touch(_STEP, {**params, "f": json.dumps(fields, default=str)})

    def count_step(self, user_id: str, run_id: uuid.UUID, name: str, key: str, amount: int) -> None:
        """Add ``amount`` to the counter ``key`` of step ``name``.

        Raises:
            RunMismatchError: the user has no run ``run_id``; nothing was written.
        """
        self._touch(_COUNT, {"id": run_id, "u": user_id, "name": name, "key": key, "n": amount})

    def _touch(self, statement: sa.TextClause, params: dict[str, Any]) -> None:
        with self._tx() as conn:
            if conn.execute(statement, params).first() is None:
                raise RunMismatchError(params["id"], params["u"])

    def finish_run(
        self,
        user_id: str,
        run_id: uuid.UUID,
        status: RunStatus,
        error: str | None = None,
        *,
        follow_up: JobTemplate,
    ) -> bool:
        """End a running run; when a follow-up was asked for, insert ``follow_up``'s job
        (payload ``{"full": ...}``) in the same transaction. Returns whether it did
        (False as well for a run that had already ended).

        Raises:
            RunMismatchError: the user has no run ``run_id``; nothing was written.
        """
        params = {
            "id": run_id,
            "u": user_id,
            "s": status.value,
            "e": error,
            "kind": follow_up.kind,
            "queue": follow_up.queue,
            "priority": follow_up.priority,
            "max_attempts": follow_up.max_attempts,
        }
        with self._tx() as conn:
            row = conn.execute(_FINISH, params).one()
            if not row.owned:
                raise RunMismatchError(run_id, user_id)
            followed = bool(row.followed)
            if followed:
                conn.execute(q.WAKE, {"wake": [follow_up.queue]})
        return followed

    def get_run(self, run_id: uuid.UUID) -> dict[str, Any] | None:
        with self._tx() as conn:
            row = (
                conn.execute(sa.text("SELECT * FROM pipeline_runs WHERE id = :id"), {"id": run_id})
                .mappings()
                .first()
            )
        return dict(row) if row else None

    def running_runs(self, *, idle_for: float) -> list[dict[str, Any]]:
        """Running runs created more than ``idle_for`` seconds ago."""
        with self._tx() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT * FROM pipeline_runs WHERE status = 'running'"
                    " AND created_at < now() - make_interval(secs => :s) ORDER BY created_at"
                ),
                {"s": idle_for},
            ).mappings()
            return [dict(r) for r in rows]
