"""A promotion's cost does not grow with the number of users waiting: read from the
plans PostgreSQL runs (rows each statement reads), not from the clock."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from jobsys.store.admission import WAITING
from tests.conftest import Env

pytestmark = pytest.mark.integration


def rows_read(plan: dict[str, Any], relation: str) -> int:
    """Rows the plan's scans of ``relation`` returned, over all their loops."""
    own = plan["Actual Rows"] * plan["Actual Loops"] if plan.get("Relation Name") == relation else 0
    return own + sum(rows_read(child, relation) for child in plan.get("Plans", []))


def test_picking_the_waiting_users_reads_as_many_as_the_slots_not_every_tied_user(
    jobsys_env: Env,
) -> None:
    # Given 3,000 users waiting in one queue, tied on virtual time (all joined at once)
    with jobsys_env.store.durable.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO fair_users (queue, user_id, vtime, next_due, since)"
            " SELECT 'default', 'u-' || g, 0, now(), now() FROM generate_series(1, 3000) g"
        )
        conn.exec_driver_sql("ANALYZE fair_users")

    # When the promotion's first statement picks the users for 10 slots
    with jobsys_env.store.durable.begin() as conn:
        explain = sa.text(f"EXPLAIN (ANALYZE, FORMAT JSON) {WAITING.sql}")
        (found,) = conn.execute(explain, {"queue": "default", "limit": 10, "aging": 60.0}).one()

    # Then it read 10 of them, in (vtime, user_id) order, not the whole tied group
    assert rows_read(found[0]["Plan"], "fair_users") == 10
