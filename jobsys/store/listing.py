"""Listings the HTTP API pages through: jobs, a user's runs, dead letters by filter.

Pages are keyset-paginated on ``(created_at, id)``, newest first: a page's cursor
is the last row's pair, so rows inserted meanwhile never shift or repeat a page.
"""

from __future__ import annotations

import dataclasses
import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from jobsys.store import queries as q
from jobsys.store.gateway import Store
from jobsys.store.records import Job
from jobsys.store.status import Status


@dataclasses.dataclass(frozen=True)
class Cursor:
    """Where the next page starts: strictly older than this row."""

    created_at: datetime
    id: str


@dataclasses.dataclass(frozen=True, kw_only=True)
class JobFilter:
    user_id: str | None = None
    status: Status | None = None
    kind: str | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class LetterFilter:
    user_id: str | None = None
    kind: str | None = None
    reason: str | None = None


class Listing:
    """Read-only SQL for the API's listings, on the same engines as :class:`Store`."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def jobs(self, where: JobFilter, *, limit: int, after: Cursor | None) -> list[Job]:
        clauses, params = _equalities(dataclasses.asdict(where))
        sql = q.LIST_JOBS + _where(clauses, after, params, "id::text")
        sql += " ORDER BY created_at DESC, id::text DESC LIMIT :limit"
        with self._store.transaction() as conn:
            rows = conn.execute(sa.text(sql), {**params, "limit": limit}).mappings().all()
        return [Job.from_row(r) for r in rows]

    def runs(self, user_id: str, *, limit: int, after: Cursor | None) -> list[dict[str, Any]]:
        clauses, params = _equalities({"user_id": user_id})
        sql = "SELECT * FROM pipeline_runs" + _where(clauses, after, params, "id::text")
        sql += " ORDER BY created_at DESC, id::text DESC LIMIT :limit"
        with self._store.transaction() as conn:
            rows = conn.execute(sa.text(sql), {**params, "limit": limit}).mappings().all()
        return [dict(r) for r in rows]

    def run(self, run_id: uuid.UUID) -> dict[str, Any] | None:
        sql = sa.text("SELECT * FROM pipeline_runs WHERE id = :id")
        with self._store.transaction() as conn:
            row = conn.execute(sql, {"id": run_id}).mappings().first()
        return dict(row) if row else None

    def running_run(self, user_id: str) -> str | None:
        sql = sa.text("SELECT id FROM pipeline_runs WHERE user_id = :u AND status = 'running'")
        with self._store.transaction() as conn:
            found = conn.execute(sql, {"u": user_id}).scalar()
        return str(found) if found else None

    def letters(
        self, where: LetterFilter, *, limit: int, after: Cursor | None, unretried: bool = False
    ) -> list[dict[str, Any]]:
        clauses, params = _equalities(dataclasses.asdict(where))
        if unretried:
            clauses.append("retried_at IS NULL")
        key = "lpad(id::text, 20, '0')"  # a text key that sorts as the number does
        sql = "SELECT * FROM dead_letters" + _where(clauses, after, params, key)
        sql += " ORDER BY created_at DESC, id DESC LIMIT :limit"
        with self._store.transaction() as conn:
            rows = conn.execute(sa.text(sql), {**params, "limit": limit}).mappings().all()
        return [dict(r) for r in rows]


def _equalities(values: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
    present = {k: v for k, v in values.items() if v is not None}
    return [f"{k} = :{k}" for k in present], present


def _where(clauses: list[str], after: Cursor | None, params: dict[str, Any], key: str) -> str:
    if after is not None:
        # A row tuple comparison: one range condition the planner can use.
        clauses = [*clauses, f"(created_at, {key}) < (:after_at, :after_id)"]
        params.update(after_at=after.created_at, after_id=after.id)
    return " WHERE " + " AND ".join(clauses) if clauses else ""
