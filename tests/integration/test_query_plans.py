"""A promotion's and a tick's cost do not grow with the number of users: read from the
plans PostgreSQL runs (rows each statement reads), not from the clock."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from jobsys.pipeline.schedule import sync_job
from jobsys.store import Store
from jobsys.store.admission import PICK, WAITING
from jobsys.store.schedule import TICK, tick_params
from tests.conftest import Env
from tests.contract.base import new_job

pytestmark = pytest.mark.integration


def rows_read(plan: dict[str, Any], relation: str) -> int:
    """Rows the plan's scans of ``relation`` (or of its partitions) returned, over all
    their loops."""
    name = plan.get("Relation Name", "")
    partition = name.startswith(f"{relation}_p") and name[len(relation) + 2 :].isdigit()
    scan = plan["Node Type"].endswith("Scan") and (name == relation or partition)
    own = plan["Actual Rows"] * plan["Actual Loops"] if scan else 0
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

    # When the promotion's first statement picks the users for 10 slots (as a
    # promotion does, and as a catch-up: all of them are at the queue's clock)
    plans = []
    for behind in (False, True):
        params = {"queue": "default", "limit": 10, "aging": 60.0, "behind": behind}
        with jobsys_env.store.durable.begin() as conn:
            explain = sa.text(f"EXPLAIN (ANALYZE, FORMAT JSON) {WAITING.sql}")
            (found,) = conn.execute(explain, params).one()
        plans.append(found[0]["Plan"])

    # Then it read 10 of them, in (vtime, user_id) order, not the whole tied group
    assert [rows_read(plan, "fair_users") for plan in plans] == [10, 10]


def test_a_ticks_batch_reads_its_own_users_not_every_user_due_at_the_same_time(
    jobsys_env: Env,
) -> None:
    # Given 3,000 users added together, so all due at the same time
    with jobsys_env.store.durable.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO users (id, email)"
            " SELECT 'u-' || g, 'u-' || g || '@example.com' FROM generate_series(1, 3000) g"
        )
        conn.exec_driver_sql("ANALYZE users")
    params = tick_params(sync_job(jobsys_env.runtime), interval=300.0, batch=10)

    # When a tick takes a batch of 10 of them (its statement run, then rolled back)
    with jobsys_env.store.durable.connect() as conn, conn.begin() as tx:
        explain = sa.text(f"EXPLAIN (ANALYZE, FORMAT JSON) {TICK.text}")
        (found,) = conn.execute(explain, params).one()
        tx.rollback()

    # Then it read 10 users to pick them and 10 to move them on, not all 3,000
    assert rows_read(found[0]["Plan"], "users") == 20


def test_a_promotion_reads_the_picked_jobs_only_after_the_table_grew_past_its_statistics(
    database_url: str,
) -> None:
    # Given a promoter whose statements were prepared while the jobs table looked
    # empty (one job, analyzed), then one user's 2,000 jobs joining the backlog
    store = Store(database_url, pool_size=1)
    try:
        store.insert(new_job(user_id="heavy", admitted=False))
        with store.transaction() as conn:
            conn.exec_driver_sql("ANALYZE jobs")
        assert len(store.promote("default", 10).rows) == 1
        store.insert_many([new_job(user_id="heavy", admitted=False) for _ in range(2000)])

        # When 8 promotions of 10 slots run (past PostgreSQL's first five plans of a
        # prepared statement), then the pick is explained on the promoter's session
        for _ in range(8):
            assert len(store.promote("default", 10).rows) == 10
        conn = store._promotions()._connection()
        with conn.cursor() as cur:
            cur.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {PICK.execute()}", PICK_TEN)
            ((found,),) = cur.fetchall()
        conn.rollback()
    finally:
        store.dispose()

    # Then the pick read its 10 jobs and marked them by key: not the user's whole
    # backlog, to sort it or to find each job in it
    assert rows_read(found[0]["Plan"], "jobs") <= 20, found


PICK_TEN = ["default", ["heavy"], [10], 10]
