"""Anomaly alerting against real PostgreSQL, Redis and worker processes: an error burst
fires exactly one alert to a local webhook receiver, which resolves after recovery;
the outbox survives a receiver that is down; evaluations do not overlap; the CLI lists."""

from __future__ import annotations

import json
import random
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from jobsys import JobResult, Status
from jobsys.alerts import signals
from jobsys.alerts.detector import Series, step
from jobsys.alerts.evaluate import Report, evaluate
from jobsys.alerts.sinks import deliver
from jobsys.engine.runtime import Runtime
from jobsys.store.alerts import AlertStore, SeriesRow
from jobsys.store.signals import ERROR_RATE
from tests.conftest import Env, StartWorkers
from tests.support import kinds
from tests.support.wait import wait_until
from tests.support.webhook import receiver

pytestmark = pytest.mark.integration

KIND = "test.flaky"
MINUTE = timedelta(seconds=60)


def series_rows(rt: Runtime) -> list[SeriesRow]:
    with AlertStore(rt.postgres).evaluation() as ev:
        assert ev is not None
        return ev.series()


def seed_history(rt: Runtime, at: datetime) -> int:
    """An hour of the kind's error rate, around 2%, learned by the detector as the beat
    would have (seeded: no real hour passes); how many values it learned."""
    rng = random.Random(3)
    policy = signals.policy(signals.CATALOGUE[ERROR_RATE], rt.settings)
    series = Series()
    for _ in range(60):
        series = step(series, sum(rng.random() < 0.02 for _ in range(50)) / 50, policy).series
    row = SeriesRow(ERROR_RATE, KIND, series.n, series.level, series.recent, 0, False)
    with AlertStore(rt.postgres).evaluation() as ev:
        assert ev is not None
        ev.save([row], at)
    return series.n


def run_flaky(env: Env, count: int, failures: int) -> list[uuid.UUID]:
    """``count`` jobs of the kind that each fail ``failures`` times, then succeed; once done."""
    results: list[JobResult] = [
        kinds.flaky.delay("user-1", key=f"alerts-{uuid.uuid4().hex}", failures=failures)
        for _ in range(count)
    ]
    ids = [uuid.UUID(r.id) for r in results]
    for job_id in ids:
        job = wait_until(lambda i=job_id: env.finished(i), timeout=60, what="the jobs to finish")
        assert job.status is Status.SUCCEEDED
    return ids


def later(previous: datetime) -> datetime:
    """The next evaluation's clock: a minute after the previous one, and never in the past."""
    return max(datetime.now(UTC), previous + MINUTE)


def test_an_error_burst_fires_one_alert_and_resolves_it_after_recovery(
    jobsys_env: Env, start_workers: StartWorkers
) -> None:
    with receiver() as hook:
        rt = jobsys_env.reconfigure(JOBSYS_ALERT_WEBHOOK_URL=hook.url)
        start_workers(1, concurrency=2)
        # Given 20 jobs of the kind that succeeded, and an hour's baseline of its error rate
        run_flaky(jobsys_env, 20, failures=0)
        started = datetime.now(UTC)
        seeded = seed_history(rt, started - MINUTE)
        quiet = evaluate(rt, started)
        assert (quiet.ran, quiet.fired, hook.received()) == (True, (), [])
        # (that evaluation judged and learned an error rate of 0 from the 20 jobs)
        (learned,) = [r for r in series_rows(rt) if (r.signal, r.subject) == (ERROR_RATE, KIND)]
        assert (learned.n, learned.recent[-1]) == (seeded + 1, 0.0)

        # When 10 jobs fail twice each (20 failures of 50 attempts), evaluated three times
        burst = run_flaky(jobsys_env, 10, failures=2)
        clock = later(started)
        reports = [evaluate(rt, clock)]
        for _ in range(2):
            clock = later(clock)
            reports.append(evaluate(rt, clock))

        # Then the second evaluation fired one incident, and the receiver got one POST
        assert [len(r.fired) for r in reports] == [0, 1, 0]
        (alert,) = reports[1].fired
        assert (alert.signal, alert.subject) == (ERROR_RATE, KIND)
        assert alert.value == pytest.approx(20 / 50)
        assert hook.received() == [(alert.id, "firing")]
        body = hook.bodies[0]["alert"]
        assert body["resolved_at"] is None and body["threshold"] < body["value"]

        # When the kind recovers (20 jobs succeed) and the failures leave the window
        run_flaky(jobsys_env, 20, failures=0)
        last_failure = max(
            datetime.fromisoformat(e["failed_at"])
            for job_id in burst
            for e in jobsys_env.store.get_job(job_id).errors
        )
        window = timedelta(seconds=rt.settings.alert_window)
        clock = max(later(clock), last_failure + window + timedelta(milliseconds=1))
        recovered: list[Report] = []
        for _ in range(3):
            recovered.append(evaluate(rt, clock))
            clock += MINUTE

        # Then the third calm evaluation resolved it, and the receiver got one more POST
        assert [len(r.resolved) for r in recovered] == [0, 0, 1]
        assert [r.id for r in recovered[2].resolved] == [alert.id]
        assert hook.received() == [(alert.id, "firing"), (alert.id, "resolved")]
        assert hook.bodies[1]["alert"]["resolved_value"] is None  # the window was empty
        # And nothing else fired along the way
        assert sum(len(r.fired) for r in [quiet, *reports, *recovered]) == 1


def open_incident(rt: Runtime, key: tuple[str, str], at: datetime) -> int:
    with AlertStore(rt.postgres).evaluation() as ev:
        assert ev is not None
        found = ev.open(key, 0.5, 0.02, 0.2, at)
        assert found is not None
        return found.id


def test_a_receiver_that_is_down_gets_each_notification_once_it_is_back(
    jobsys_env: Env,
) -> None:
    # Given an incident that fired and resolved, and a receiver refusing its first 4 requests
    with receiver(failures=4) as hook:
        rt = jobsys_env.reconfigure(
            JOBSYS_ALERT_WEBHOOK_URL=hook.url, JOBSYS_ALERT_WEBHOOK_TRIES="3"
        )
        at = datetime.now(UTC)
        alert_id = open_incident(rt, (ERROR_RATE, KIND), at)
        with AlertStore(rt.postgres).evaluation() as ev:
            assert ev is not None and ev.resolve((ERROR_RATE, KIND), 0.0, at) is not None
        store = AlertStore(rt.postgres)

        # When delivery runs: three tries fail, the notice stays in the outbox
        assert deliver(store, rt.settings) == (0, 1)
        assert (hook.requests, hook.received()) == (3, [])
        (pending,) = store.recent(since=at - MINUTE)
        assert (pending.send_attempts, pending.send_error) == (1, "HTTP 503")

        # And at the next evaluation's delivery the receiver is back (after one more 503)
        assert deliver(store, rt.settings) == (2, 0)

        # Then it got the firing notice, then the resolved one, each once
        assert hook.received() == [(alert_id, "firing"), (alert_id, "resolved")]
        assert hook.requests == 6
        assert deliver(store, rt.settings) == (0, 0)
        assert hook.requests == 6


def test_an_evaluation_is_skipped_while_another_runs_or_too_soon_after_one(
    jobsys_env: Env,
) -> None:
    rt = jobsys_env.runtime
    now = datetime.now(UTC)
    # Given another evaluation holding the lock, this one is skipped
    with AlertStore(rt.postgres).evaluation() as ev:
        assert ev is not None
        assert evaluate(rt, now) == Report(False, "another evaluation is running")
    # Given one that ran, another 10 s later is skipped (half the interval has not passed)
    assert evaluate(rt, now).ran
    assert evaluate(rt, now + timedelta(seconds=10)).skipped == (
        f"the last evaluation was at {now.isoformat()}"
    )
    assert evaluate(rt, now + MINUTE).ran


def test_cli_lists_open_and_recent_alerts(jobsys_env: Env) -> None:
    rt = jobsys_env.runtime
    now = datetime.now(UTC)
    # Given an open incident, one resolved an hour ago and one resolved three days ago
    old = open_incident(rt, ("dead_letters", "*"), now - timedelta(days=4))
    recent = open_incident(rt, (ERROR_RATE, "test.echo"), now - timedelta(hours=2))
    with AlertStore(rt.postgres).evaluation() as ev:
        assert ev is not None
        ev.resolve(("dead_letters", "*"), 0.0, now - timedelta(days=3))
        ev.resolve((ERROR_RATE, "test.echo"), 0.0, now - timedelta(hours=1))
    still = open_incident(rt, (ERROR_RATE, KIND), now - timedelta(days=5))

    # When listed as JSON (default: the last 24 h)
    done = jobsys_env.cli("alerts", "--json")
    assert done.returncode == 0, done.stderr
    listed = json.loads(done.stdout)
    # Then the open one comes first, then the recent one; the old one is left out
    assert [(a["id"], a["state"]) for a in listed] == [(still, "firing"), (recent, "resolved")]
    assert listed[0]["signal"] == ERROR_RATE and listed[0]["subject"] == KIND

    # And --since 7d lists all three; the table shows them
    wide = jobsys_env.cli("alerts", "--since", "7d", "--json")
    assert [a["id"] for a in json.loads(wide.stdout)] == [still, recent, old]
    jobsys_env.environ["COLUMNS"] = "300"  # rich fits a table to the terminal's width
    table = jobsys_env.cli("alerts")
    assert table.returncode == 0, table.stderr
    lines = [line for line in table.stdout.splitlines() if "error_rate" in line]
    assert len(lines) == 2 and "firing" in lines[0] and "test.flaky" in lines[0]
    assert "resolved" in lines[1] and "test.echo" in lines[1]

    # And a malformed --since is one line naming the option, the value and the rule
    bad = jobsys_env.cli("alerts", "--since", "banana")
    assert bad.returncode == 2 and bad.stdout == ""
    (line,) = bad.stderr.strip().splitlines()
    assert "--since" in line and "'banana'" in line and "number with an optional unit" in line


def noisy_minute(rng: random.Random) -> dict[tuple[str, str], float]:
    """One minute of a steady fleet: every signal's values, with noise."""
    return {
        (ERROR_RATE, KIND): sum(rng.random() < 0.05 for _ in range(60)) / 60,
        (ERROR_RATE, "test.echo"): sum(rng.random() < 0.01 for _ in range(200)) / 200,
        ("start_latency_p95", "default"): rng.lognormvariate(0.5, 0.3),
        ("duration_p95", KIND): rng.lognormvariate(-1.5, 0.3),
        ("oldest_queued", "default"): rng.uniform(0.0, 3.0),
        ("dead_letters", "*"): float(sum(rng.random() < 0.02 for _ in range(20))),
        ("stale_users", "*"): float(rng.random() < 0.05),
        ("breaker_openings", "google"): float(rng.random() < 0.02),
    }


def test_an_hour_of_steady_noise_through_the_store_and_sinks_fires_nothing(
    jobsys_env: Env,
) -> None:
    # Given a webhook receiver, and an hour of every signal's steady noise (seeded)
    rng = random.Random(5)
    hour = [noisy_minute(rng) for _ in range(60)]
    with receiver() as hook:
        rt = jobsys_env.reconfigure(JOBSYS_ALERT_WEBHOOK_URL=hook.url)
        start = datetime.now(UTC)

        # When the detector evaluates it once a minute, its state in PostgreSQL
        reports = [
            evaluate(rt, start + i * MINUTE, read=lambda _rt, _now, v=values: v)
            for i, values in enumerate(hour)
        ]

        # Then every evaluation ran, none fired, and the receiver got nothing
        assert [r.ran for r in reports] == [True] * 60
        assert [r.series for r in reports] == [8] * 60
        assert sum(len(r.fired) for r in reports) == 0
        assert hook.requests == 0
        assert AlertStore(rt.postgres).recent(since=start - MINUTE) == []

        # And then a 5-minute error burst on one kind fires once and resolves once
        burst = [{**noisy_minute(rng), (ERROR_RATE, KIND): 0.6} for _ in range(5)]
        after = [noisy_minute(rng) for _ in range(10)]
        clock = start + 60 * MINUTE
        for values in [*burst, *after]:
            evaluate(rt, clock, read=lambda _rt, _now, v=values: v)
            clock += MINUTE
        (alert,) = AlertStore(rt.postgres).recent(since=start)
        assert (alert.signal, alert.subject, alert.peak) == (ERROR_RATE, KIND, 0.6)
        assert hook.received() == [(alert.id, "firing"), (alert.id, "resolved")]


def test_a_series_has_at_most_one_open_incident(jobsys_env: Env) -> None:
    # Given an open incident of a series
    rt, at = jobsys_env.runtime, datetime.now(UTC)
    first = open_incident(rt, (ERROR_RATE, KIND), at)
    # When another evaluation tries to open one for it, the database refuses
    with AlertStore(rt.postgres).evaluation() as ev:
        assert ev is not None
        assert ev.open((ERROR_RATE, KIND), 0.9, 0.0, 0.1, at + MINUTE) is None
        # But once resolved, the series may fire again
        assert ev.resolve((ERROR_RATE, KIND), 0.0, at + MINUTE) is not None
        again = ev.open((ERROR_RATE, KIND), 0.9, 0.0, 0.1, at + 2 * MINUTE)
    assert again is not None and again.id != first
    assert [a.id for a in AlertStore(rt.postgres).recent(since=at)] == [again.id, first]
