"""SQL for enqueues: one job (one statement) or many (one COPY); part of :class:`Store`.

An enqueue charged to a user's quota (``quotas.py``) takes one statement too
while the user has no limit: the insert itself checks that ``user_limits``
holds none. A limited user's enqueue runs as a transaction: lock the user,
count, insert, charge.

One job's insert, its coalescing join and its charge are the user's own rows: in
a user's scope (``tenancy.py``) they run there, as ``jobsys_api``.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from typing import Any

import psycopg2
import sqlalchemy as sa

from jobsys.errors import DuplicateJobError, OptionError, StoreUnavailableError
from jobsys.store import queries as q
from jobsys.store import quotas, tenancy
from jobsys.store.fastpath import FastPath, compiled
from jobsys.store.quotas import Quota
from jobsys.store.records import JoinRace, NewJob
from jobsys.store.status import Status

_SQL = {
    "insert": compiled(q.INSERT_JOB),
    "insert_chosen": compiled(q.INSERT_CHOSEN_ID),
    "insert_unlimited": compiled(q.INSERT_UNLIMITED),
    "limited": compiled(quotas.LIMITED),
    "run_after": compiled(q.RUN_AFTER),
    "fair_join_many": compiled(q.FAIR_JOIN_MANY),
    "wake": compiled(q.WAKE),
    "waiting_twin": compiled(q.WAITING_TWIN),
    "set_payload": compiled(q.SET_PAYLOAD),
    "find_live_unique": compiled(q.FIND_LIVE_UNIQUE),
}


class _NothingInserted(Exception):
    """The charged insert stored nothing: its charge is rolled back with it."""


class InsertSql:
    """Enqueues; mixed into the gateway, :class:`Store`."""

    durable: sa.Engine
    hot_durable: FastPath
    transaction: Callable[[], AbstractContextManager[sa.Connection]]
    job_state: Callable[..., tuple[Status, datetime] | None]
    get_job: Callable[..., Any]

    def insert(self, job: NewJob, *, quota: Quota | None = None) -> datetime:
        """Insert one job; returns its ``run_after``.

        Inserting an id that exists changes nothing (a re-sent canvas member, or
        a Celery retry of the same message) and returns the stored ``run_after``.
        With ``quota`` (the settings' defaults) the job is charged to its user.

        Raises:
            DuplicateJobError: a live job of that kind and user holds ``unique_key``.
            QuotaExceeded: the user is at a limit; nothing was stored.
        """
        try:
            return self._insert(job, quota)
        except StoreUnavailableError:
            # Connections from before a database restart fail once and are then
            # discarded with their pool, so one more try runs on a fresh connection.
            try:
                return self._insert(job, quota)
            except sa.exc.IntegrityError:
                # The first try committed but its answer was lost.
                return self.get_job(job.id).run_after  # type: ignore[no-any-return]

    def _insert(self, job: NewJob, quota: Quota | None) -> datetime:
        row = self._insert_row(job, quota)
        if row is None:
            params = {"user_id": job.user_id, "id": job.id}
            row = tenancy.one(self.hot_durable, _SQL["run_after"], params)
        if row is None:
            if self.job_state(job.id) is not None:
                raise OptionError("task_id", str(job.id), "is the id of another user's job")
            if job.coalesce and job.unique_key is None:
                raise JoinRace(job.kind)
            with tenancy.own_rows(self.transaction) as rows:
                raise _duplicate(rows, job)
        return row["run_after"]  # type: ignore[no-any-return]

    def _insert_row(self, job: NewJob, quota: Quota | None) -> dict[str, Any] | None:
        if job.chosen_id and tenancy.current() is not None:
            # Ids are unique across users, which a user's own rows cannot tell.
            raise OptionError("task_id", str(job.id), "cannot be chosen when acting as a user")
        plain = _SQL["insert_chosen" if job.chosen_id else "insert"]
        if quota is None:
            return tenancy.one(self.hot_durable, plain, _insert_params(job))
        if quota.limits_everyone:
            return self._insert_charged(job, quota)
        if job.chosen_id:
            if self._limited(job.user_id):
                return self._insert_charged(job, quota)
            return tenancy.one(self.hot_durable, plain, _insert_params(job))
        row = tenancy.one(self.hot_durable, _SQL["insert_unlimited"], _insert_params(job))
        if row is None and self._limited(job.user_id):
            row = self._insert_charged(job, quota)
        return row

    def _limited(self, user_id: str) -> bool:
        return tenancy.one(self.hot_durable, _SQL["limited"], {"users": [user_id]}) is not None

    def _insert_charged(self, job: NewJob, quota: Quota) -> dict[str, Any] | None:
        try:
            with tenancy.own_transaction(self._raw_transaction) as cur:
                quotas.charge(cur, {job.user_id: 1}, quota)
                sql = _SQL["insert_chosen" if job.chosen_id else "insert"]
                cur.execute(sql, _insert_params(job))
                row = cur.fetchone()
                if row is None:
                    raise _NothingInserted
                return {"run_after": row[0]}
        except _NothingInserted:
            return None  # the id exists, or a unique key is held: nothing charged

    def join(self, job: NewJob, merge: Callable[[dict[str, Any], dict[str, Any]], Any]) -> Any:
        """The id of the user's job of ``job``'s kind still in the backlog, its payload
        merged with ``job``'s; None when there is none (insert ``job`` then)."""
        with tenancy.own_rows(self.transaction) as rows:
            params = {"user_id": job.user_id, "kind": job.kind}
            found = rows.one(_SQL["waiting_twin"], params)
            if found is None:
                return None
            payload = merge(dict(found["payload"]), dict(job.payload))
            if payload != found["payload"]:
                params = {"user_id": job.user_id, "id": found["id"], "payload": json.dumps(payload)}
                rows.then(_SQL["set_payload"], params)
            return found["id"]

    def insert_many(self, jobs: Sequence[NewJob], *, quota: Quota | None = None) -> None:
        """Insert many jobs with one COPY (no unique keys; they all run now).

        Jobs not ``admitted`` join the backlog as :meth:`insert` does. With
        ``quota`` the whole batch is charged: over any user's limit, nothing is
        stored (QuotaExceeded).
        """
        try:
            self._copy(jobs, quota)
        except StoreUnavailableError:
            # As in insert(): one more try on a fresh connection after a restart.
            try:
                self._copy(jobs, quota)
            except psycopg2.IntegrityError:
                pass  # the first COPY committed; its answer was lost

    def _copy(self, jobs: Sequence[NewJob], quota: Quota | None) -> None:
        buffer = _csv(jobs)
        with self._raw_transaction() as cur:
            if quota is not None:
                quotas.charge(cur, quotas.asked(j.user_id for j in jobs), quota)
            cur.copy_expert(q.COPY_JOBS, buffer)
            waiting = sorted({(j.queue, j.user_id) for j in jobs if not j.admitted})
            if waiting:
                queues, users = [w[0] for w in waiting], [w[1] for w in waiting]
                cur.execute(_SQL["fair_join_many"], {"queues": queues, "users": users})
                joined = {row[0] for row in cur.fetchall()}
                cur.execute(_SQL["wake"], {"wake": _wake(jobs, joined)})

    @contextmanager
    def _raw_transaction(self) -> Iterator[Any]:
        """A cursor in a transaction on a pooled connection, committed if the block ends well."""
        try:
            raw = self.durable.raw_connection()
        except sa.exc.OperationalError as e:
            raise StoreUnavailableError(f"PostgreSQL unavailable: {e.orig}") from e
        try:
            cur = raw.cursor()
            try:
                yield cur
            finally:
                cur.close()
            raw.commit()
        except psycopg2.OperationalError as e:
            raw.invalidate()
            self.durable.dispose()  # its siblings in the pool predate the outage too
            raise StoreUnavailableError(f"PostgreSQL unavailable: {e}") from e
        except BaseException:
            raw.rollback()
            raise
        finally:
            raw.close()


def _csv(jobs: Sequence[NewJob]) -> io.StringIO:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    for j in jobs:
        writer.writerow(
            (
                j.id,
                j.user_id,
                j.kind,
                j.queue,
                j.priority,
                j.payload_text(),
                j.max_attempts,
                "now" if j.admitted else "",
                j.concurrency_key,
                j.concurrency,
                json.dumps(j.trace) if j.trace else None,
            )
        )
    buffer.seek(0)
    return buffer


def _wake(jobs: Sequence[NewJob], joined: set[str]) -> list[str]:
    """The admission channel's payloads for these backlog jobs: each queue where a user
    started waiting or urgent work joined (marked so)."""
    backlog = [j for j in jobs if not j.admitted]
    urgent = {j.queue for j in backlog if j.priority >= q.URGENT_PRIORITY}
    return sorted({q.URGENT_MARK + n for n in urgent} | (joined - urgent))


def _insert_params(job: NewJob) -> dict[str, Any]:
    return {
        "id": job.id,
        "user_id": job.user_id,
        "kind": job.kind,
        "queue": job.queue,
        "priority": job.priority,
        "payload": job.payload_text(),
        "max_attempts": job.max_attempts,
        "unique_key": job.unique_key,
        "delay": job.delay,
        "admitted": job.admitted,
        "concurrency_key": job.concurrency_key,
        "concurrency": job.concurrency,
        "coalesce": job.coalesce,
        "trace": json.dumps(job.trace) if job.trace else None,
        "canvas": json.dumps(job.canvas) if job.canvas else None,
    }


def _duplicate(rows: tenancy.Rows, job: NewJob) -> DuplicateJobError:
    # Only a unique key can turn the insert into a no-op.
    key = job.unique_key or ""
    params = {"user_id": job.user_id, "kind": job.kind, "unique_key": key}
    existing = rows.one(_SQL["find_live_unique"], params)
    return DuplicateJobError(job.kind, job.user_id, key, existing["id"] if existing else None)
