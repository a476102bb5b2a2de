"""``jobsys stats`` over a seeded history: the exact figures worked out by hand below."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from jobsys.engine.stats import report
from jobsys.store.stats import Stats
from tests.conftest import Env
from tests.integration.stats_support import Run, Try, seed

pytestmark = pytest.mark.integration

DAY = 86_400.0
FRESH, STALE, NEVER = "u-fresh", "u-stale", "u-never"

RUNS = [
    # u-fresh: 3 of 4 succeeded, durations 10/20/30/40 s, the last success 600 s ago
    Run(FRESH, "succeeded", ago=600, took=10),
    Run(FRESH, "succeeded", ago=3600, took=20),
    Run(FRESH, "succeeded", ago=7200, took=30),
    Run(FRESH, "failed", ago=300, took=40),
    # u-stale: its last success 1,200 s ago; an older one outside the window
    Run(STALE, "succeeded", ago=1200, took=100),
    Run(STALE, "succeeded", ago=2 * DAY, took=5),
    # u-never: two failures, no success ever
    Run(NEVER, "failed", ago=100, took=5),
    Run(NEVER, "failed", ago=200, took=15),
]
TRIES = [
    # test.echo (deadline 60 s), u-fresh, priority 0, start latencies 1..5 s
    Try(FRESH, "test.echo", "succeeded", took=30, latency=1, cpu=0.5, wall=1, requests=3, units=15),
    Try(FRESH, "test.echo", "retried", took=20, latency=2, cpu=0.25, wall=0.5, requests=1,
        units=5, reason="transient"),
    Try(FRESH, "test.echo", "succeeded", took=90, n=2, latency=3, cpu=0.25, wall=0.5,
        requests=1, units=5),
    Try(FRESH, "test.echo", "dead", took=10, latency=4, cpu=0.5, wall=1, reason="bug"),
    Try(FRESH, "test.echo", "succeeded", took=45, latency=5, cpu=0.5, wall=1, requests=2,
        units=10),
    # outside the window: counted nowhere
    Try(FRESH, "test.echo", "succeeded", took=5, ago=2 * DAY, cpu=100, wall=100),
    # test.flaky (deadline 2 min), u-stale, priority 5, start latencies 10 and 20 s
    Try(STALE, "test.flaky", "succeeded", took=100, priority=5, latency=10, cpu=1, wall=2),
    Try(STALE, "test.flaky", "cancelled", took=50, priority=5, latency=20),
    # test.broken (no deadline), u-never, priority 9, start latencies 0.5, 0.5, 1.5 s
    Try(NEVER, "test.broken", "postponed", took=5, priority=9, latency=0.5, cpu=0.5, wall=0.5),
    Try(NEVER, "test.broken", "dead", took=20, priority=9, latency=0.5, reason="auth",
        cpu=0.5, wall=0.5),
    Try(NEVER, "test.broken", "dead", took=30, priority=9, latency=1.5, reason="bug"),
]  # fmt: skip

ECHO = {
    "kind": "test.echo",
    "jobs": 4,  # three successes and a dead job; the retry is an attempt, not a job
    "attempts": 5,
    "success_rate": 0.75,
    "cpu_s_per_job": 2.0 / 4,
    "wall_s_per_job": 4.0 / 4,
    "requests_per_job": 7 / 4,
    "units_per_job": 35 / 4,
    "deadline_s": 60.0,
    "sla_compliance": 2 / 4,  # 30 s and 45 s kept it; 90 s did not; the dead job did not
}
FLAKY = {
    "kind": "test.flaky",
    "jobs": 2,
    "attempts": 2,
    "success_rate": 0.5,
    "cpu_s_per_job": 0.5,
    "wall_s_per_job": 1.0,
    "requests_per_job": 0.0,
    "units_per_job": 0.0,
    "deadline_s": 120.0,
    "sla_compliance": 0.5,
}
BROKEN = {
    "kind": "test.broken",
    "jobs": 2,
    "attempts": 3,
    "success_rate": 0.0,
    "cpu_s_per_job": 0.5,
    "wall_s_per_job": 0.5,
    "requests_per_job": 0.0,
    "units_per_job": 0.0,
    "deadline_s": None,
    "sla_compliance": None,
}
FLEET = {
    "jobs": 8,
    "jobs_per_second": 8 / DAY,
    # percentile_cont: 1..5 -> 4.8; 10, 20 -> 19.5; 0.5, 0.5, 1.5 -> 1.4
    "start_latency_p95_s": {"normal": 4.8, "raised": 19.5, "urgent": 1.4},
    "dead_letter_rate": {"auth": 1 / 8, "bug": 2 / 8},
}


def users_without_freshness(found: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        u["user_id"]: {k: v for k, v in u.items() if k not in ("user_id", "freshness_s")}
        for u in found["users"]
    }


def check_freshness(found: dict[str, Any], elapsed: float) -> None:
    fresh = {u["user_id"]: u["freshness_s"] for u in found["users"]}
    # The reading's now() is later than the seeding's by at most the time the test took.
    assert 600 <= fresh[FRESH] <= 600 + elapsed
    assert 1200 <= fresh[STALE] <= 1200 + elapsed
    assert fresh[NEVER] is None


EXPECTED_USERS = {
    FRESH: {"runs": 4, "success_rate": 0.75, "p95_duration_s": 38.5, "fresh": True},
    STALE: {"runs": 1, "success_rate": 1.0, "p95_duration_s": 100.0, "fresh": False},
    NEVER: {"runs": 2, "success_rate": 0.0, "p95_duration_s": 14.5, "fresh": False},
}


def approx(value: Any) -> Any:
    """``value`` with every float rounded to 9 places (``pytest.approx`` does not nest)."""
    if isinstance(value, dict):
        return {k: approx(v) for k, v in value.items()}
    if isinstance(value, list):
        return [approx(v) for v in value]
    return round(value, 9) if isinstance(value, float) else value


def test_stats_report_the_figures_of_a_seeded_history(jobsys_env: Env) -> None:
    # Given the history above
    began = time.monotonic()
    seed(jobsys_env.store, RUNS, TRIES)

    # When the last 24 hours are reported
    found: Stats = report(jobsys_env.runtime, window=DAY)
    data = found.as_dict()
    elapsed = time.monotonic() - began

    # Then each user's runs, success rate, p95 duration and freshness against 15 min
    assert data["freshness_slo_s"] == 900.0
    assert approx(users_without_freshness(data)) == approx(EXPECTED_USERS)
    check_freshness(data, elapsed)
    # And each kind's jobs, success rate, cost per job and SLA compliance
    assert approx(data["kinds"]) == approx([BROKEN, ECHO, FLAKY])
    # And the fleet's throughput, start latency by band and dead-letter rate by reason
    assert approx(data["fleet"]) == approx(FLEET)


def test_stats_narrowed_to_a_user_or_a_kind(jobsys_env: Env) -> None:
    seed(jobsys_env.store, RUNS, TRIES)

    # A user: its runs and its attempts only
    mine = report(jobsys_env.runtime, window=DAY, user_id=FRESH).as_dict()
    assert [u["user_id"] for u in mine["users"]] == [FRESH]
    assert approx(mine["kinds"]) == approx([ECHO])
    assert approx(mine["fleet"]["dead_letter_rate"]) == approx({"bug": 1 / 4})

    # A kind: its attempts only
    flaky = report(jobsys_env.runtime, window=DAY, kind="test.flaky").as_dict()
    assert approx(flaky["kinds"]) == approx([FLAKY])
    assert flaky["fleet"]["jobs"] == 2
    assert approx(flaky["fleet"]["start_latency_p95_s"]) == approx(
        {"normal": None, "raised": 19.5, "urgent": None}
    )

    # A shorter window: 30 minutes leaves u-fresh's older runs out
    recent = report(jobsys_env.runtime, window=1800).as_dict()
    runs = {u["user_id"]: u["runs"] for u in recent["users"]}
    assert runs == {FRESH: 2, STALE: 1, NEVER: 2}


def test_the_cli_prints_the_same_figures_as_json_and_a_table(jobsys_env: Env) -> None:
    began = time.monotonic()
    seed(jobsys_env.store, RUNS, TRIES)

    done = jobsys_env.cli("stats", "--since", "24h", "--json")
    elapsed = time.monotonic() - began

    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert approx(users_without_freshness(data)) == approx(EXPECTED_USERS)
    check_freshness(data, elapsed)
    assert approx(data["kinds"]) == approx([BROKEN, ECHO, FLAKY])
    assert approx(data["fleet"]) == approx(FLEET)

    table = jobsys_env.cli("stats", "--since", "7d", "--kind", "test.echo")
    assert table.returncode == 0, table.stderr
    # (over 7 days, the echo job two days old counts too: 4 of 5 succeeded, 1 of 5 dead)
    for shown in ("80.0%", "dead-letter rate (bug)", "20.0%", "STALE"):
        assert shown in table.stdout


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--since", "banana"], "--since"),
        (["--since", "0h"], "--since"),
        (["--since", "24"], "--since"),
        (["--kind", "no.such"], "--kind"),
    ],
)
def test_bad_options_get_one_line_naming_the_option(
    jobsys_env: Env, args: list[str], named: str
) -> None:
    done = jobsys_env.cli("stats", *args)

    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert "Traceback" not in done.stderr
    assert any(named in line for line in lines), done.stderr
    assert args[1] in done.stderr
