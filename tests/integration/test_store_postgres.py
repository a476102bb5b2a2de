"""The store contract on the PostgreSQL gateway (the reference implementation)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from jobsys.store import Store
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
