"""Hourly roll-ups: a report over rolled and raw hours agrees with the all-raw report.

Costs are multiples of 1/4, so sums are exact in any order and compared exactly;
p95s and SLA compliance are held to the error bounds ``jobsys/store/rollup.py``
documents, worked out from the seeded values.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any

import pytest
import sqlalchemy as sa

from jobsys.engine.stats import report
from jobsys.engine.sweeper import Sweeper
from jobsys.store import rollup
from jobsys.store.stats import Stats
from tests.conftest import Env
from tests.integration import test_stats as exact
from tests.integration.stats_support import Try, seed

pytestmark = pytest.mark.integration

HOUR = 3600.0
DAY = 86_400.0
KINDS = ("test.echo", "test.flaky", "test.broken")
DEADLINES = {"test.echo": 60.0, "test.flaky": 120.0}
OUTCOMES = [*["succeeded"] * 6, "retried", "dead", "cancelled", "postponed"]
PRIORITIES = (0, 5, 9)
# 66 hours of attempts, one every 1,000 s: rolled with a 6 h horizon, ~60 hours roll.
TRIES = [
    Try(
        f"u{i % 4}",
        KINDS[i % 3],
        OUTCOMES[i % 10],
        took=5 + (i * 7) % 200,
        ago=300 + i * 1000,
        reason={"retried": "transient", "dead": ("bug", "auth")[i % 2]}.get(OUTCOMES[i % 10]),
        priority=PRIORITIES[(i // 3) % 3],
        latency=0.25 * (1 + i % 37),
        cpu=None if i % 11 == 0 else 0.25 * (i % 5),
        wall=0.5 * (i % 3),
        requests=None if i % 13 == 0 else i % 4,
        units=5 * (i % 4),
    )
    for i in range(240)
]
# A week (everything), and one whose start falls inside an hour (a raw partial hour).
WINDOWS = (7 * 86_400.0, 40 * HOUR + 1234)
EXACT_KIND = ("kind", "jobs", "attempts", "success_rate", "cpu_s_per_job", "wall_s_per_job",
              "requests_per_job", "units_per_job", "deadline_s")  # fmt: skip


def band(priority: int) -> str:
    return "urgent" if priority >= 8 else "raised" if priority > 0 else "normal"


def in_window(window: float, kind: str | None = None) -> list[Try]:
    return [t for t in TRIES if t.ago < window and kind in (None, t.kind)]


def p95_bound(window: float, name: str, kind: str | None) -> float:
    """The widest bucket holding one of the two ranks percentile_cont interpolates between."""
    values = sorted(t.latency for t in in_window(window, kind) if band(t.priority) == name)
    rank = math.floor(0.95 * (len(values) - 1))
    return max(rollup.bucket_width(v) for v in values[rank : rank + 2])


def sla_bound(window: float, kind: str, jobs: int) -> float:
    """The successes whose age shares the deadline's bucket, as a share of the jobs."""
    deadline = rollup.bucket_of(DEADLINES[kind])
    near = [
        t for t in in_window(window, kind)
        if t.outcome == "succeeded" and rollup.bucket_of(t.took) == deadline
    ]  # fmt: skip
    return len(near) / jobs


def assert_agree(raw: Stats, rolled: Stats, window: float, kind: str | None = None) -> None:
    # Exact: counts, sums, rates
    assert [
        {k: v for k, v in ks.items() if k in EXACT_KIND} for ks in rolled.as_dict()["kinds"]
    ] == [{k: v for k, v in ks.items() if k in EXACT_KIND} for ks in raw.as_dict()["kinds"]]
    assert (rolled.fleet.jobs, rolled.fleet.jobs_per_second) == (
        raw.fleet.jobs,
        raw.fleet.jobs_per_second,
    )
    assert rolled.fleet.dead_letter_rate == raw.fleet.dead_letter_rate
    # Within the documented error: the p95s and the SLA compliance
    for name, p95 in raw.fleet.start_latency_p95_s.items():
        estimate = rolled.fleet.start_latency_p95_s[name]
        assert p95 is not None and estimate is not None
        assert abs(estimate - p95) <= p95_bound(window, name, kind), name
    for was, now in zip(raw.kinds, rolled.kinds, strict=True):
        if was.sla_compliance is None:
            assert now.sla_compliance is None
            continue
        assert now.sla_compliance is not None
        assert abs(now.sla_compliance - was.sla_compliance) <= sla_bound(window, was.kind, was.jobs)


def rolled_until(env: Env) -> Any:
    with env.store.transaction() as conn:
        return conn.execute(sa.text("SELECT rolled_until FROM attempt_rollup")).scalar_one()


def test_a_report_over_rolled_and_raw_hours_agrees_with_the_raw_one(jobsys_env: Env) -> None:
    # Given 66 hours of attempts, and their reports from raw rows only
    seed(jobsys_env.store, [], TRIES)
    rt = jobsys_env.runtime
    raw = {w: report(rt, window=w) for w in WINDOWS}
    raw_echo = report(rt, window=WINDOWS[0], kind="test.echo")
    raw_user = report(rt, window=WINDOWS[0], user_id="u1")
    raw_day = report(rt, window=DAY)

    # When every whole hour older than 6 h is rolled up
    hours = rollup.roll_up_all(jobsys_env.store, horizon=6 * HOUR)

    # Then some 60 hours rolled, and each window's report agrees with the raw one
    assert 59 <= hours <= 61
    for window in WINDOWS:
        assert_agree(raw[window], report(rt, window=window), window)
    assert_agree(raw_echo, report(rt, window=WINDOWS[0], kind="test.echo"), WINDOWS[0], "test.echo")
    # And a user's report still reads raw attempts: exactly the same figures
    assert report(rt, window=WINDOWS[0], user_id="u1").kinds == raw_user.kinds
    # And a day's report reads raw attempts only, its 18 rolled hours too: exactly the same
    assert report(rt, window=DAY) == raw_day


def test_rolled_hours_are_read_from_the_roll_ups_not_the_attempts(jobsys_env: Env) -> None:
    # Given a rolled history
    seed(jobsys_env.store, [], TRIES)
    rollup.roll_up_all(jobsys_env.store, horizon=6 * HOUR)
    rt = jobsys_env.runtime
    before = report(rt, window=WINDOWS[0])

    # When the attempts of the rolled hours are deleted
    with jobsys_env.store.transaction() as conn:
        deleted = conn.execute(
            sa.text("DELETE FROM attempts WHERE finished_at < :t"), {"t": rolled_until(jobsys_env)}
        ).rowcount

    # Then the week's report has not changed
    assert deleted > 200
    assert report(rt, window=WINDOWS[0]) == before


def test_rolling_twice_or_from_two_threads_counts_each_attempt_once(jobsys_env: Env) -> None:
    seed(jobsys_env.store, [], TRIES)

    # Two rollers at once, then a third after them
    found: list[int] = []
    threads = [
        threading.Thread(
            target=lambda: found.append(rollup.roll_up_all(jobsys_env.store, horizon=6 * HOUR))
        )
        for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    again = rollup.roll_up(jobsys_env.store, horizon=6 * HOUR)

    # Each hour was rolled by one of them, and nothing is left for the third
    with jobsys_env.store.transaction() as conn:
        span = conn.execute(
            sa.text(
                "SELECT extract(epoch FROM r.rolled_until - date_trunc('hour', min(a.finished_at),"
                " 'UTC')) / 3600 FROM attempts a, attempt_rollup r GROUP BY r.rolled_until"
            )
        ).scalar_one()
        rolled, raw = conn.execute(
            sa.text(
                "SELECT (SELECT sum(attempts) FROM attempt_hours),"
                " (SELECT count(*) FROM attempts WHERE finished_at <"
                " (SELECT rolled_until FROM attempt_rollup))"
            )
        ).one()
    assert sum(found) == int(span)
    assert again == 0
    assert rolled == raw > 200


def test_the_day_report_stays_exact_after_a_roll_up_with_the_default_horizon(
    jobsys_env: Env,
) -> None:
    # Given the hand-made history of test_stats, its two-day-old attempt rolled
    began = time.monotonic()
    seed(jobsys_env.store, exact.RUNS, exact.TRIES)
    assert rollup.roll_up_all(jobsys_env.store) >= 24

    # When the last 24 hours are reported
    data = report(jobsys_env.runtime, window=exact.DAY).as_dict()

    # Then every figure is the exact one
    assert exact.approx(exact.users_without_freshness(data)) == exact.approx(exact.EXPECTED_USERS)
    exact.check_freshness(data, time.monotonic() - began)
    assert exact.approx(data["kinds"]) == exact.approx([exact.BROKEN, exact.ECHO, exact.FLAKY])
    assert exact.approx(data["fleet"]) == exact.approx(exact.FLEET)


def test_a_sweep_rolls_a_bounded_number_of_hours_per_pass(jobsys_env: Env) -> None:
    # Given attempts 50 hours old: at least 26 whole hours before the raw horizon
    seed(jobsys_env.store, [], [Try("u1", "test.echo", "succeeded", took=5, ago=50 * HOUR)])

    # When the sweeper passes twice
    first = Sweeper(jobsys_env.runtime).run()
    second = Sweeper(jobsys_env.runtime).run()

    # Then the first rolled a day's worth, the second the rest, and the attempt counts once
    assert first.rolled_hours == rollup.MAX_HOURS
    assert second.rolled_hours >= 2
    assert jobsys_env.count_rows("attempt_hours") == 1


def test_jobsys_db_rollup_catches_up_every_due_hour(jobsys_env: Env) -> None:
    # Given attempts 50 and 30 hours old
    tries = [Try("u1", "test.echo", "succeeded", took=5, ago=h * HOUR) for h in (50, 30)]
    seed(jobsys_env.store, [], tries)

    # When the command runs, then again
    done = jobsys_env.cli("db", "rollup")
    again = jobsys_env.cli("db", "rollup")

    # Then the first rolled both hours past the day, the second nothing
    assert done.returncode == 0, done.stderr
    assert "rolled up " in done.stdout
    assert again.stdout.strip() == "rolled up 0 hour(s) of attempts"
    with jobsys_env.store.transaction() as conn:
        rolled = conn.execute(sa.text("SELECT sum(attempts) FROM attempt_hours")).scalar_one()
    assert rolled == 2
