"""SQL for the fleet: worker nodes, dead letters and audit events (part of :class:`Store`).

A dead letter's revival and an audit event are a user's own rows: in a user's scope
(``tenancy.py``) they run there, as ``jobsys_api``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import sqlalchemy as sa

from jobsys.errors import JobNotFoundError
from jobsys.store import queries as q
from jobsys.store import tenancy
from jobsys.store.fastpath import FastPath, compiled
from jobsys.store.records import DeadLetter, Job, WorkerRow

_HEARTBEAT_WORKER = compiled(q.HEARTBEAT_WORKER)
_AUDIT = compiled(q.AUDIT)
_REVIVE = compiled(q.REVIVE)
_MARK_LETTER_RETRIED = compiled(q.MARK_LETTER_RETRIED)


class FleetSql:
    """Workers, dead letters and audit events; mixed into the gateway, :class:`Store`."""

    hot: FastPath
    hot_durable: FastPath
    transaction: Callable[[], AbstractContextManager[sa.Connection]]

    # -- workers -----------------------------------------------------------

    def register_worker(
        self, name: str, *, hostname: str, pid: int, queues: list[str], concurrency: int
    ) -> None:
        params = {
            "name": name,
            "hostname": hostname,
            "pid": pid,
            "queues": json.dumps(queues),
            "concurrency": concurrency,
        }
        with self.transaction() as conn:
            conn.execute(q.UPSERT_WORKER, params)
            audit_event(conn, name, "worker.start", None, None, {"pid": pid, "queues": queues})

    def heartbeat_worker(self, name: str, pid: int) -> bool:
        return self.hot.one(_HEARTBEAT_WORKER, {"name": name, "pid": pid}) is not None

    def stop_worker(self, name: str, pid: int) -> None:
        with self.transaction() as conn:
            conn.execute(q.STOP_WORKER, {"name": name, "pid": pid})

    def mark_dead_workers(self, dead_after: float) -> list[str]:
        with self.transaction() as conn:
            names = [r[0] for r in conn.execute(q.MARK_DEAD_WORKERS, {"dead_after": dead_after})]
            for name in names:
                audit_event(conn, "sweeper", "worker.dead", None, None, {"worker": name})
        return names

    def retire_worker(self, name: str, pid: int, *, by: str) -> bool:
        """Mark a node's process dead now (a new process of the node saw it gone).

        Only while the row is still that process's and alive; returns whether it was.
        """
        with self.transaction() as conn:
            row = conn.execute(q.RETIRE_WORKER, {"name": name, "pid": pid}).first()
            if row is not None:
                audit_event(conn, by, "worker.dead", None, None, {"worker": name, "pid": pid})
        return row is not None

    def dead_worker_names(self) -> list[str]:
        with self.transaction() as conn:
            return [r[0] for r in conn.execute(q.DEAD_WORKER_NAMES)]

    def list_workers(self) -> list[WorkerRow]:
        with self.transaction() as conn:
            return [WorkerRow.from_row(r) for r in conn.execute(q.LIST_WORKERS).mappings()]

    def fleet_gauges(self) -> list[tuple[str, str, str, float]]:
        """``(metric, label, label, value)`` rows for a metrics scrape, in one statement:
        ``depth`` (queue, state), ``oldest`` (queue), ``dead_letters`` (kind), ``workers``
        (state)."""
        with self.transaction() as conn:
            rows = conn.execute(q.FLEET_GAUGES).all()
        return [(str(m), str(a), str(b), float(v)) for m, a, b, v in rows]

    # -- dead letters ------------------------------------------------------

    def get_dead_letter(self, letter_id: int) -> DeadLetter:
        with self.transaction() as conn:
            row = conn.execute(q.GET_DEAD_LETTER, {"id": letter_id}).mappings().first()
        if row is None:
            raise JobNotFoundError("dead letter", letter_id)
        return DeadLetter.from_row(row)

    def list_dead_letters(
        self, *, kind: str | None = None, user_id: str | None = None, limit: int = 100
    ) -> list[DeadLetter]:
        params = {"kind": kind, "user_id": user_id, "limit": limit}
        with self.transaction() as conn:
            rows = conn.execute(q.LIST_DEAD_LETTERS, params).mappings().all()
        return [DeadLetter.from_row(r) for r in rows]

    def revive(self, letter: DeadLetter, *, actor: str, backlog: bool = False) -> Job | None:
        """Give a dead job a fresh set of attempts; ``None`` if it is no longer dead.

        With ``backlog`` it waits in the backlog for admission (as a keyed job always
        does); otherwise the caller publishes it.
        """
        with tenancy.own_rows(self.transaction) as rows:
            row = rows.one(_REVIVE, {"id": letter.job_id, "backlog": backlog})
            if row is None:
                return None
            rows.then(_MARK_LETTER_RETRIED, {"id": letter.id})
            detail = {"letter": letter.id}
            audit_later(rows, actor, "dlq.retry", letter.job_id, letter.user_id, detail)
        return Job.from_row(row)

    def dead_letter_of(self, job_id: uuid.UUID) -> DeadLetter | None:
        """The newest dead letter of a job, if it has one."""
        with self.transaction() as conn:
            row = conn.execute(q.DEAD_LETTER_OF_JOB, {"job_id": job_id}).mappings().first()
        return DeadLetter.from_row(row) if row else None

    def purge_dead_letters(self, older_than: float, *, actor: str) -> int:
        with self.transaction() as conn:
            ids = [r[0] for r in conn.execute(q.PURGE_LETTERS, {"older_than": older_than})]
            audit_event(conn, actor, "dlq.purge", None, None, {"count": len(ids)})
        return len(ids)

    def audit(
        self,
        actor: str,
        action: str,
        *,
        job_id: uuid.UUID | None = None,
        user_id: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        # One statement on the hot path's connection: the API writes one per call (in a
        # user's scope, sent with its commit).
        params = _audit_params(actor, action, job_id, user_id, detail or {})
        tenancy.then(self.hot_durable, _AUDIT, params)


def audit_event(
    conn: sa.Connection,
    actor: str,
    action: str,
    job_id: uuid.UUID | None,
    user_id: str | None,
    detail: dict[str, Any],
) -> None:
    conn.execute(q.AUDIT, _audit_params(actor, action, job_id, user_id, detail))


def audit_later(
    rows: tenancy.Rows,
    actor: str,
    action: str,
    job_id: uuid.UUID | None,
    user_id: str | None,
    detail: dict[str, Any],
) -> None:
    """An audit event in ``rows``' transaction (nothing reads it back before the commit)."""
    rows.then(_AUDIT, _audit_params(actor, action, job_id, user_id, detail))


def _audit_params(
    actor: str,
    action: str,
    job_id: uuid.UUID | None,
    user_id: str | None,
    detail: dict[str, Any],
) -> dict[str, Any]:
    return {
        "actor": actor,
        "action": action,
        "job_id": job_id,
        "user_id": user_id,
        "detail": json.dumps(detail),
    }
