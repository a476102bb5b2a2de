"""The store contract on the PostgreSQL gateway (the reference implementation)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa

from jobsys.errors import StoreUnavailableError
from jobsys.store import Store
from jobsys.store import queries as q
from jobsys.store.fastpath import Prepared
from jobsys.store.gateway import _SQL
from jobsys.store.queries import CLAIM_BY_USER
from tests.store_contract import StoreContract

pytestmark = pytest.mark.integration

AUDIT = sa.text("SELECT actor, action, job_id, user_id, detail FROM audit_events ORDER BY id")


class TestPostgresStore(StoreContract):
    @pytest.fixture
    def store(self, database_url: str) -> Iterator[Store]:
        store = Store(database_url, pool_size=2)
        try:
            yield store
        finally:
            store.dispose()

    def audit_log(self, store: Any) -> list[dict[str, Any]]:
        with store.transaction() as conn:
            return [dict(r) for r in conn.execute(AUDIT).mappings().all()]


FLOOD = sa.text(
    "INSERT INTO jobs (id, user_id, kind, queue, max_attempts)"
    " SELECT gen_random_uuid(), 'heavy', 'bench.noop', 'celery', 3 FROM generate_series(1, :n)"
)
ONE_QUEUED = sa.text("SELECT id FROM jobs WHERE user_id = 'heavy' ORDER BY created_at DESC LIMIT 1")


def _rows_read(node: dict[str, Any]) -> int:
    """Rows the plan's scans produced or read and threw away."""
    children = node.get("Plans", [])
    own = int(node.get("Rows Removed by Filter", 0))
    if not children:
        own += int(node["Actual Rows"])
    return own + sum(_rows_read(child) for child in children)


def test_a_claim_reads_one_row_while_its_user_has_a_fresh_flood_queued(database_url: str) -> None:
    # Given one user's 5,000 jobs just queued, in a partition never analyzed
    store = Store(database_url, pool_size=1)
    try:
        with store.transaction() as conn:
            conn.execute(FLOOD, {"n": 5000})
            job_id = conn.execute(ONE_QUEUED).scalar_one()

        # When a worker claims one of them (measured, then rolled back)
        params = {"id": job_id, "user_id": "heavy", "lease": 60.0, "worker": "w", "pid": 1}
        with store.durable.connect() as conn, conn.begin():
            explain = sa.text("EXPLAIN (ANALYZE, FORMAT JSON) " + CLAIM_BY_USER.text)
            plan = conn.execute(explain, params).scalar_one()[0]["Plan"]
            conn.rollback()
    finally:
        store.dispose()

    # Then it found that one row by its key, reading none of the user's others
    assert _rows_read(plan) == 1, plan


RUNNING = sa.text(
    "UPDATE jobs SET status = 'running', attempt = 1, started_at = now()"
    " WHERE user_id = 'heavy' AND id IN (SELECT id FROM jobs WHERE user_id = 'heavy' LIMIT :n)"
    " RETURNING id"
)


def _mostly_running(store: Store) -> tuple[list[Any], Any]:
    """One user's 300 jobs, analyzed while all were queued, of which 200 then run:
    the running ones' ids, and a queued one's."""
    with store.transaction() as conn:
        conn.execute(FLOOD, {"n": 300})
        conn.exec_driver_sql("ANALYZE jobs")
        running = list(conn.execute(RUNNING, {"n": 200}).scalars().all())
        return running, conn.execute(ONE_QUEUED).scalar_one()


def _job_rows_read(node: dict[str, Any]) -> int:
    """Rows the plan's scans of ``jobs`` partitions returned or read and threw away."""
    own = 0
    if node["Node Type"].endswith("Scan") and node.get("Relation Name", "").startswith("jobs"):
        own = int(node["Actual Rows"]) + int(node.get("Rows Removed by Filter", 0))
    return own + sum(_job_rows_read(child) for child in node.get("Plans", []))


def _explained(store: Store, statement: Prepared, params: dict[str, Any]) -> dict[str, Any]:
    """The plan of a prepared statement as the hot path runs it (then rolled back)."""
    conn = store.hot.connection()
    with conn.cursor() as cur:
        cur.execute("BEGIN")
        try:
            cur.execute(statement.prepare)
            cur.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {statement.execute}", params)
            return cur.fetchone()[0][0]["Plan"]  # type: ignore[no-any-return]
        finally:
            cur.execute("ROLLBACK")


def test_the_prepared_claim_and_success_find_their_row_by_its_key_on_generic_plans(
    database_url: str,
) -> None:
    # Given one user's 300 queued jobs, analyzed while none ran, of which 200 then run
    store = Store(database_url, pool_size=1)
    try:
        running, job_id = _mostly_running(store)
        claim = {"id": job_id, "user_id": "heavy", "lease": 60.0, "worker": "w", "pid": 1}
        success = {"id": running[0], "user_id": "heavy", "attempt": 1, "result": "null"}
        success |= {"cpu_s": None, "wall_s": None, "google_requests": None, "quota_units": None}

        # When the hot path's claim and success run on their generic plans
        claimed = _explained(store, _SQL["claim_by_user"], claim)  # type: ignore[arg-type]
        succeeded = _explained(store, _SQL["succeed"], success)  # type: ignore[arg-type]
    finally:
        store.dispose()

    # Then each read its one row, not the user's running or queued jobs
    assert _job_rows_read(claimed) == 1, claimed
    assert _job_rows_read(succeeded) == 1, succeeded


TERMINATE = sa.text(
    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
    " WHERE pid <> pg_backend_pid() AND query LIKE :query"
)


def test_the_hot_path_prepares_its_statements_again_on_a_new_connection(
    database_url: str,
) -> None:
    # Given a store whose hot connection prepared the claim, then lost its backend
    store = Store(database_url, pool_size=1)
    try:
        with store.transaction() as conn:
            conn.execute(FLOOD, {"n": 2})
            first, second = conn.exec_driver_sql("SELECT id FROM jobs").scalars().all()
        assert store.claim(first, "heavy", lease=60.0, worker="w", pid=1) is not None
        with store.transaction() as conn:
            killed = conn.execute(TERMINATE, {"query": "EXECUTE jobsys_claim%"}).scalar_one()
            assert killed == 1

        # When the next claims run: the first meets the dead connection
        with pytest.raises(StoreUnavailableError):
            store.claim(second, "heavy", lease=60.0, worker="w", pid=1)
        job = store.claim(second, "heavy", lease=60.0, worker="w", pid=1)
    finally:
        store.dispose()

    # Then the one after it prepares the claim on its new connection and claims the job
    assert job is not None and job.id == second


_ATTEMPT = {"attempt": 1, "cpu_s": None, "wall_s": None, "google_requests": None}
_BACK = {**_ATTEMPT, "quota_units": None, "delay": 1.0, "backlog": True, "canvas": None}
MOVES_OF_A_RUNNING_JOB = {
    "requeue": (q.REQUEUE, {**_BACK, "error": '[{"reason": "x"}]'}),
    "postpone": (q.POSTPONE, {**_BACK, "limit": None}),
    "cancel_running": (q.CANCEL_RUNNING, {**_ATTEMPT, "quota_units": None}),
    "heartbeat_job": (q.HEARTBEAT_JOB, {"attempt": 1, "lease": 60.0}),
    "fail_lost": (q.FAIL_LOST, {"worker": "w", "pid": None}),
}


@pytest.mark.parametrize("name", sorted(MOVES_OF_A_RUNNING_JOB))
def test_a_running_jobs_statements_find_it_by_its_key_not_by_its_status(
    database_url: str, name: str
) -> None:
    # Given one user's 300 jobs, analyzed while none ran, of which 200 then run
    statement, params = MOVES_OF_A_RUNNING_JOB[name]
    store = Store(database_url, pool_size=1)
    try:
        running, _ = _mostly_running(store)
        params = {**params, "user_id": "heavy", "id": running[0], "due": datetime.now(UTC)}

        # When the statement runs on one of the running jobs (measured, then rolled back)
        with store.durable.connect() as conn, conn.begin():
            explain = sa.text(f"EXPLAIN (ANALYZE, FORMAT JSON) {statement.text}")
            plan = conn.execute(explain, params).scalar_one()[0]["Plan"]
            conn.rollback()
    finally:
        store.dispose()

    # Then it read that one row, not every running job of the partition
    assert _job_rows_read(plan) == 1, plan
