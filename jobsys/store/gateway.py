"""The one gateway for SQL: every statement jobsys runs goes through :class:`Store`.

State transitions are single conditional UPDATEs (see ``queries.py``): each
names the status and attempt it expects, so a duplicate delivery or a late
worker loses the race and changes nothing.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import psycopg2
import sqlalchemy as sa

from jobsys.errors import (
    JobNotFoundError,
    StoreUnavailableError,
)
from jobsys.store import jsonb, tenancy
from jobsys.store import queries as q
from jobsys.store.admission import AdmissionSql
from jobsys.store.db import make_engine
from jobsys.store.fastpath import FastPath, Prepared, compiled
from jobsys.store.fleet import FleetSql, audit_later
from jobsys.store.inserts import InsertSql
from jobsys.store.jsonb import RESULT
from jobsys.store.pages import JobFilter, jobs_page
from jobsys.store.quotas import QuotaSql
from jobsys.store.records import UNMEASURED, Cost, Job, unknown_kind_entry
from jobsys.store.status import Status

_SWEEP_LOCK_KEY = 0x6A6F6273  # "jobs"
# The hot path's statements, compiled once for the direct connections; the two every
# job runs are prepared on them.
_SQL: dict[str, str | Prepared] = {
    "claim": compiled(q.CLAIM),
    "claim_by_user": Prepared.of("jobsys_claim", q.CLAIM_BY_USER),
    "job_state": compiled(q.JOB_STATE),
    "succeed": Prepared.of("jobsys_succeed", q.SUCCEED),
    "requeue": compiled(q.REQUEUE),
    "postpone": compiled(q.POSTPONE),
    "set_trace": compiled(q.SET_TRACE),
    "cancel_running": compiled(q.CANCEL_RUNNING),
    "heartbeat_job": compiled(q.HEARTBEAT_JOB),
    "running_on": compiled(q.FAIL_LOST),
}
_REQUEST_CANCEL = compiled(q.REQUEST_CANCEL)


class Store(InsertSql, QuotaSql, FleetSql, AdmissionSql):
    """Gateway to PostgreSQL.

    ``durable`` is a SQLAlchemy engine for everything that is not on a job's
    hot path (multi-statement transactions, operator actions, reads). The hot
    path's one-statement transitions run on direct autocommit connections
    (``fastpath.py``): ``hot`` skips the WAL flush for job state transitions,
    whose loss in a crash only re-runs an idempotent job; ``hot_durable``
    commits accepted enqueues synchronously. A user's scope (``tenancy.py``)
    borrows this thread's ``hot_durable`` connection for that user's own rows.
    """

    def __init__(self, url: str, *, pool_size: int = 5, connection_factory: Any = None) -> None:
        self.url = url
        self.durable = make_engine(url, pool_size=pool_size)
        hot = {"connection_factory": connection_factory}
        self.hot = FastPath(url, synchronous_commit=False, **hot)
        self.hot_durable = FastPath(url, synchronous_commit=True, **hot)

    def dispose(self, *, close: bool = True) -> None:
        self.durable.dispose(close=close)
        if close:
            self.hot.close()
            self.hot_durable.close()
            self._promotions().close()

    @contextmanager
    def transaction(self) -> Iterator[sa.Connection]:
        """A transaction on the durable engine; connection loss is StoreUnavailableError.

        For the store package's other gateways (users, sync data); nothing outside
        ``jobsys.store`` runs SQL.
        """
        try:
            with self.durable.begin() as conn:
                yield conn
        except (sa.exc.OperationalError, sa.exc.InterfaceError) as e:
            if getattr(e, "connection_invalidated", False) or _is_connectivity(e):
                raise StoreUnavailableError(f"PostgreSQL unavailable: {e.orig}") from e
            raise

    # -- execution ---------------------------------------------------------

    def claim(
        self, job_id: uuid.UUID, user_id: str | None, *, lease: float, worker: str, pid: int
    ) -> Job | None:
        """Move a due queued job to running; ``None`` if this delivery lost the race."""
        params = {"id": job_id, "user_id": user_id, "lease": lease, "worker": worker, "pid": pid}
        row = self.hot.one(_SQL["claim" if user_id is None else "claim_by_user"], params)
        return Job.from_row(row) if row else None

    def job_state(self, job_id: uuid.UUID) -> tuple[Status, datetime] | None:
        row = self.hot.one(_SQL["job_state"], {"id": job_id})
        return (Status(row["status"]), row["run_after"]) if row else None

    def succeed(self, job: Job, result: Any, *, cost: Cost = UNMEASURED) -> bool:
        """Record the running job's result, and the attempt's ``cost``.

        Raises:
            UnstorableError: ``jsonb`` cannot hold the result; nothing was written.
        """
        params = {**_key(job), **cost.params(), "result": jsonb.dumps(result, what=RESULT)}
        return self.hot.one(_SQL["succeed"], params) is not None

    def requeue(
        self,
        job: Job,
        *,
        delay: float,
        error: dict[str, Any],
        backlog: bool = False,
        canvas: Mapping[str, Any] | None = None,
        cost: Cost = UNMEASURED,
    ) -> datetime | None:
        """Put a failed attempt back in the queue after ``delay`` seconds; with
        ``backlog``, into admission's backlog (else the caller publishes it).

        ``canvas``: the Celery options its promotion publishes it with (a keyed
        canvas member's place); None keeps what the row holds.
        """
        params = {**_moved(job, cost), "delay": delay, "error": json.dumps([error])}
        params.update(backlog=backlog, canvas=_canvas(canvas))
        row = self.hot.one(_SQL["requeue"], params)
        return row["run_after"] if row else None

    def note_trace(self, job: Job, trace: dict[str, str]) -> None:
        """Keep the span contexts of ``job``'s attempt (while the row is still that
        attempt's): the next attempt links to it, wherever it is published from."""
        self.hot.one(_SQL["set_trace"], {**_key(job), "trace": json.dumps(trace)})

    def postpone(
        self,
        job: Job,
        *,
        delay: float,
        backlog: bool = False,
        limit: float | None = None,
        canvas: Mapping[str, Any] | None = None,
        cost: Cost = UNMEASURED,
    ) -> datetime | None:
        """Put a running job back without counting its attempt (a guard said not yet).

        Counts the postponement. ``None`` when the job is no longer this attempt's,
        was asked to stop, or was first postponed at least ``limit`` seconds ago (None: no limit).
        ``canvas`` as for :meth:`requeue`.
        """
        params = {**_moved(job, cost), "delay": delay, "backlog": backlog, "limit": limit}
        params["canvas"] = _canvas(canvas)
        row = self.hot.one(_SQL["postpone"], params)
        return row["run_after"] if row else None

    def bury(
        self,
        job: Job,
        *,
        error: dict[str, Any],
        traceback: str,
        reason: str,
        retryable: bool,
        actor: str,
        cost: Cost = UNMEASURED,
    ) -> int | None:
        """Mark the running job dead and write its dead letter; returns the letter's id."""
        params = _bury_params(error, traceback, reason, retryable, actor) | cost.params()
        with self.transaction() as conn:
            row = conn.execute(q.BURY, {**_key(job), **params}).first()
        return int(row[0]) if row else None

    def note_unknown_kind(
        self, job_id: uuid.UUID, *, worker: str, limit: int
    ) -> tuple[int, int | None] | None:
        """Record a delivery to a worker that does not know the job's kind.

        After ``limit`` such deliveries the queued job is dead-lettered with
        reason ``unknown_kind``. Returns ``(deliveries, dead letter id or None)``,
        or None when the job is not queued (unknown, or already moved on).
        """
        error = unknown_kind_entry(worker)
        with self.transaction() as conn:
            row = conn.execute(
                q.NOTE_UNKNOWN_KIND, {"id": job_id, "error": json.dumps([error])}
            ).first()
            if row is None:
                return None
            user_id, deliveries = row[0], int(row[1])
            if deliveries < limit:
                return deliveries, None
            params = _bury_params(error, "", "unknown_kind", False, worker) | UNMEASURED.params()
            params |= {"id": job_id, "user_id": user_id, "error": "[]"}
            letter = conn.execute(q.BURY_QUEUED, params).scalar()
        return deliveries, int(letter) if letter is not None else None

    def cancel_running(self, job: Job, *, cost: Cost = UNMEASURED) -> bool:
        params = {**_key(job), **cost.params()}
        return self.hot.one(_SQL["cancel_running"], params) is not None

    def heartbeat(self, job: Job, *, lease: float) -> bool | None:
        """Extend the lease; returns whether cancel was requested, ``None`` if lost."""
        row = self.hot.one(_SQL["heartbeat_job"], {**_key(job), "lease": lease})
        return bool(row["cancel_requested"]) if row else None

    def running_on(self, job_id: uuid.UUID, worker: str, pid: int | None) -> Job | None:
        """The job if it is still running in the given worker process (any, if None)."""
        row = self.hot.one(_SQL["running_on"], {"id": job_id, "worker": worker, "pid": pid})
        return Job.from_row(row) if row else None

    # -- reading -----------------------------------------------------------

    def get_job(self, job_id: uuid.UUID) -> Job:
        with self.transaction() as conn:
            row = conn.execute(q.GET_JOB, {"id": job_id}).mappings().first()
        if row is None:
            raise JobNotFoundError("job", job_id)
        return Job.from_row(row)

    def list_jobs(
        self,
        *,
        user_id: str | None = None,
        status: Status | None = None,
        kind: str | None = None,
        limit: int = 100,
    ) -> list[Job]:
        where = JobFilter(user_id=user_id, status=status, kind=kind)
        sql, params = jobs_page(where, limit=limit, after=None)
        with self.transaction() as conn:
            rows = conn.execute(sa.text(sql), params).mappings().all()
        return [Job.from_row(r) for r in rows]

    def count_by_status(self, job_ids: Sequence[uuid.UUID] | None = None) -> dict[Status, int]:
        sql = "SELECT status, count(*) FROM jobs"
        params: dict[str, Any] = {}
        if job_ids is not None:
            sql += " WHERE id = ANY(:ids)"
            params["ids"] = list(job_ids)
        with self.transaction() as conn:
            rows = conn.execute(sa.text(sql + " GROUP BY status"), params).all()
        return {Status(r[0]): int(r[1]) for r in rows}

    def request_cancel(self, job_id: uuid.UUID, *, actor: str) -> Job | None:
        """Cancel a queued job at once, or flag a running one; ``None`` if it finished.

        Returns the job as it is now: ``cancelled``, or still ``running`` with
        ``cancel_requested`` set (it stops at its next heartbeat).
        """
        with tenancy.own_rows(self.transaction) as rows:
            row = rows.one(_REQUEST_CANCEL, {"id": job_id})
            if row is not None:
                detail = {"status": str(row["status"])}
                audit_later(rows, actor, "job.cancel", job_id, row["user_id"], detail)
        return Job.from_row(row) if row else None

    # -- recovery ----------------------------------------------------------

    def expired(self, dead_workers: Sequence[str], *, limit: int = 1000) -> list[Job]:
        params = {"dead_workers": list(dead_workers), "limit": limit}
        with self.transaction() as conn:
            rows = conn.execute(q.EXPIRED, params).mappings().all()
        return [Job.from_row(r) for r in rows]

    def stale_queued(
        self,
        *,
        everything: bool,
        lost_after: float,
        queues: Sequence[str] | None,
        limit: int = 10_000,
    ) -> list[dict[str, Any]]:
        """Queued jobs whose message may be lost (all of them when ``everything``)."""
        params = {
            "everything": everything,
            "lost_after": lost_after,
            "queues": list(queues) if queues is not None else None,
            "limit": limit,
        }
        with self.transaction() as conn:
            return [dict(r) for r in conn.execute(q.DUE_QUEUED, params).mappings().all()]

    @contextmanager
    def sweep_lock(self) -> Iterator[bool]:
        """Hold a transaction-scoped advisory lock so one sweeper runs at a time."""
        with self.transaction() as conn:
            yield bool(conn.execute(q.SWEEP_LOCK, {"key": _SWEEP_LOCK_KEY}).scalar())


def _key(job: Job) -> dict[str, Any]:
    return {"id": job.id, "user_id": job.user_id, "attempt": job.attempt}


def _moved(job: Job, cost: Cost) -> dict[str, Any]:
    # A job put back gets a new run_after: the attempt row takes the one it was due at.
    return {**_key(job), **cost.params(), "due": job.run_after}


def _canvas(canvas: Mapping[str, Any] | None) -> str | None:
    return jsonb.dumps(dict(canvas), what="the canvas options") if canvas else None


def _bury_params(
    error: dict[str, Any], traceback: str, reason: str, retryable: bool, actor: str
) -> dict[str, Any]:
    return {
        "error": json.dumps([error]),
        "exc_type": error["type"],
        "message": error["message"],
        "traceback": traceback,
        "reason": reason,
        "retryable": retryable,
        "actor": actor,
    }


def _is_connectivity(e: sa.exc.DBAPIError) -> bool:
    return _names_connection_loss(str(e.orig))


def _names_connection_loss(text: str) -> bool:
    markers = ("connection", "server closed", "terminating", "could not connect", "shutting down")
    return any(m in text.lower() for m in markers)


def connection_lost(exc: BaseException) -> bool:
    """Whether ``exc`` says PostgreSQL went away (a restart, a terminated backend).

    True for :class:`StoreUnavailableError` and for the driver's own connection
    errors that reached a caller unwrapped (SQL a handler ran some other way).
    """
    if isinstance(exc, StoreUnavailableError):
        return True
    if isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError):
        return bool(exc.connection_invalidated) or _is_connectivity(exc)
    if isinstance(exc, psycopg2.OperationalError | psycopg2.InterfaceError):
        return _names_connection_loss(str(exc))
    return False
