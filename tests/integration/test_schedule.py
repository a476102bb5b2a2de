"""Periodic syncs: a tick enqueues one sync per due user, never twice, never for paused users."""

from __future__ import annotations

import json
import threading

import pytest

from jobsys.pipeline.schedule import PERIODIC_KEY, Tick, tick
from jobsys.store.schedule import ScheduleStore
from tests.conftest import Env

pytestmark = pytest.mark.integration


def add_users(env: Env, n: int, *, prefix: str = "p") -> list[str]:
    with env.store.durable.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO users (id, email) SELECT %(p)s || g, %(p)s || g || '@example.com'"
            " FROM generate_series(1, %(n)s) g",
            {"p": f"{prefix}-", "n": n},
        )
    return [f"{prefix}-{i}" for i in range(1, n + 1)]


def syncs_by_user(env: Env) -> dict[str, int]:
    with env.store.durable.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT user_id, count(*) FROM jobs WHERE kind = 'sync.user' GROUP BY user_id"
        ).all()
    return {r[0]: r[1] for r in rows}


def test_two_ticks_at_once_enqueue_one_sync_per_due_user(jobsys_env: Env) -> None:
    # Given 1,000 due users, one paused, and one synced a minute ago (due in 4 minutes)
    due = add_users(jobsys_env, 1000)
    paused, recent = add_users(jobsys_env, 2, prefix="x")
    with jobsys_env.store.durable.begin() as conn:
        conn.exec_driver_sql("UPDATE users SET paused = true WHERE id = %(u)s", {"u": paused})
        conn.exec_driver_sql(
            "UPDATE users SET next_sync_at = now() + interval '4 minutes' WHERE id = %(u)s",
            {"u": recent},
        )
    rt = jobsys_env.reconfigure(JOBSYS_SCHEDULE_BATCH="50")

    # When two ticks run at once
    ticks: list[Tick] = []
    threads = [threading.Thread(target=lambda: ticks.append(tick(rt))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)

    # Then exactly one sync was enqueued per due user, in the backlog, none for the others
    assert sum(len(t.enqueued) for t in ticks) == 1000
    assert sum(t.batches for t in ticks) >= 2 * (1000 // 50) // 2
    assert syncs_by_user(jobsys_env) == dict.fromkeys(due, 1)
    with jobsys_env.store.durable.connect() as conn:
        kept = conn.exec_driver_sql(
            "SELECT DISTINCT unique_key, payload::text, dispatched_at IS NULL FROM jobs"
        ).all()
    assert kept == [(PERIODIC_KEY, '{"full": false}', True)]

    # And a tick right after finds nobody due
    assert tick(rt).due == 0

    # And users due again while their periodic sync still waits get no second one
    ScheduleStore(jobsys_env.store).make_due([*due[:10], paused])
    again = tick(rt)
    assert (len(again.enqueued), sorted(again.coalesced)) == (0, sorted(due[:10]))
    assert syncs_by_user(jobsys_env) == dict.fromkeys(due, 1)


def test_schedule_tick_cli_and_a_users_own_interval(jobsys_env: Env) -> None:
    # Given three users, one of them with a sync interval of its own
    for email in ("a@example.com", "b@example.com", "c@example.com"):
        assert jobsys_env.cli("user", "add", email).returncode == 0
    done = jobsys_env.cli("user", "set", "c@example.com", "--sync-interval", "2h")
    assert done.stdout.strip() == "c@example.com: sync_interval 7200", done.stderr

    # When `jobsys schedule tick --json` runs, twice
    first = jobsys_env.cli("schedule", "tick", "--json")
    second = jobsys_env.cli("schedule", "tick")

    # Then the first enqueued the three syncs and says which, the second none
    assert first.returncode == 0, first.stderr
    report = json.loads(first.stdout)
    assert (report["due"], report["enqueued"], report["coalesced"]) == (3, 3, 0)
    assert len({j["job_id"] for j in report["jobs"]}) == 3
    assert second.stdout.startswith("0 users due: 0 syncs enqueued"), second.stdout

    # And each user's next sync is one interval on: the settings' 5 min, or its own 2 h
    listed = {u["email"]: u for u in json.loads(jobsys_env.cli("user", "list", "--json").stdout)}
    assert listed["a@example.com"]["sync_every"] == 300
    assert listed["c@example.com"]["sync_every"] == 7200
    with jobsys_env.store.durable.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT email, round(extract(epoch FROM next_sync_at - now())) FROM users"
        ).all()
    ahead = {r[0]: float(r[1]) for r in rows}
    assert 290 <= ahead["a@example.com"] <= 300 and 7190 <= ahead["c@example.com"] <= 7200
