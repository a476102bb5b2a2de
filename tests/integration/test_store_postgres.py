"""The store contract on the PostgreSQL gateway (the reference implementation)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from jobsys.store import Store
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
