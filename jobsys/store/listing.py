"""Listings the HTTP API pages through: jobs, a user's runs, dead letters by filter.

Pages are keyset-paginated on ``(created_at, id)``, newest first (``pages.py``).
"""

from __future__ import annotations

import dataclasses
import uuid
from contextlib import AbstractContextManager
from typing import Any

import sqlalchemy as sa

from jobsys.store import queries as q
from jobsys.store import roles
from jobsys.store.gateway import Store
from jobsys.store.pages import Cursor, JobFilter, equalities, jobs_page, keyset
from jobsys.store.records import DeadLetter, Job


@dataclasses.dataclass(frozen=True, kw_only=True)
class LetterFilter:
    user_id: str | None = None
    kind: str | None = None
    reason: str | None = None


class Listing:
    """Read-only SQL for the API, on the same engines as :class:`Store`.

    With ``user_id``, every statement runs as ``jobsys_api`` for that user, so the
    database's row-level security, not only this code, keeps other users' rows out.
    """

    def __init__(self, store: Store, *, user_id: str | None = None) -> None:
        self._store = store
        self._user_id = user_id

    def _tx(self) -> AbstractContextManager[sa.Connection]:
        if self._user_id is None:
            return self._store.transaction()
        return roles.scoped(self._store, self._user_id)

    def job(self, job_id: uuid.UUID) -> Job | None:
        sql = sa.text(q.LIST_JOBS + " WHERE id = :id")
        with self._tx() as conn:
            row = conn.execute(sql, {"id": job_id}).mappings().first()
        return Job.from_row(row) if row else None

    def letter(self, letter_id: int) -> DeadLetter | None:
        with self._tx() as conn:
            row = conn.execute(q.GET_DEAD_LETTER, {"id": letter_id}).mappings().first()
        return DeadLetter.from_row(row) if row else None

    def user(self, ident: str) -> str | None:
        """The id of the user with that id or e-mail."""
        sql = sa.text("SELECT id FROM users WHERE id = :v OR email = lower(:v)")
        with self._tx() as conn:
            found = conn.execute(sql, {"v": ident}).scalar()
        return str(found) if found is not None else None

    def jobs_of_run(self, user_id: str, run_id: uuid.UUID) -> list[dict[str, Any]]:
        with self._tx() as conn:
            rows = conn.execute(q.JOBS_OF_RUN, {"u": user_id, "r": str(run_id)}).mappings()
            return [dict(r) for r in rows]

    def jobs(self, where: JobFilter, *, limit: int, after: Cursor | None) -> list[Job]:
        sql, params = jobs_page(where, limit=limit, after=after)
        with self._tx() as conn:
            rows = conn.execute(sa.text(sql), params).mappings().all()
        return [Job.from_row(r) for r in rows]

    def runs(self, user_id: str, *, limit: int, after: Cursor | None) -> list[dict[str, Any]]:
        clauses, params = equalities({"user_id": user_id})
        sql = "SELECT * FROM pipeline_runs" + keyset(clauses, after, params, "uuid")
        sql += " ORDER BY created_at DESC, id DESC LIMIT :limit"
        with self._tx() as conn:
            rows = conn.execute(sa.text(sql), {**params, "limit": limit}).mappings().all()
        return [dict(r) for r in rows]

    def run(self, run_id: uuid.UUID) -> dict[str, Any] | None:
        sql = sa.text("SELECT * FROM pipeline_runs WHERE id = :id")
        with self._tx() as conn:
            row = conn.execute(sql, {"id": run_id}).mappings().first()
        return dict(row) if row else None

    def running_run(self, user_id: str) -> str | None:
        sql = sa.text("SELECT id FROM pipeline_runs WHERE user_id = :u AND status = 'running'")
        with self._tx() as conn:
            found = conn.execute(sql, {"u": user_id}).scalar()
        return str(found) if found else None

    def letters(
        self, where: LetterFilter, *, limit: int, after: Cursor | None, unretried: bool = False
    ) -> list[dict[str, Any]]:
        clauses, params = equalities(dataclasses.asdict(where))
        if unretried:
            clauses.append("retried_at IS NULL")
        sql = "SELECT * FROM dead_letters" + keyset(clauses, after, params, "bigint")
        sql += " ORDER BY created_at DESC, id DESC LIMIT :limit"
        with self._tx() as conn:
            rows = conn.execute(sa.text(sql), {**params, "limit": limit}).mappings().all()
        return [dict(r) for r in rows]


__all__ = ["Cursor", "JobFilter", "LetterFilter", "Listing"]
