"""What an attempt costs: the meter around a handler, the Google tally and counters,
and a kind's deadline."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import pytest
from celery.exceptions import Retry
from prometheus_client import REGISTRY

from jobsys.connectors.google.errors import QuotaError, TransientError
from jobsys.connectors.google.usage import metered, record, tallying
from jobsys.engine.cost import Meter
from jobsys.engine.registry import JobSpec, check_spec
from jobsys.errors import JobError
from tests.support.engine import ECHO, Engine

GET = "gmail.users.messages.get"


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_meter_measures_the_handlers_cpu_wall_time_and_google_calls() -> None:
    # Given a meter started before a handler that computes, sleeps and calls Google
    meter = Meter()
    deadline = time.thread_time() + 0.02
    while time.thread_time() < deadline:
        pass
    time.sleep(0.05)
    record(GET, ["200", "200", "429"])

    # When it is stopped
    cost = meter.stop()

    # Then CPU counts the computing, wall time the sleep too, and Google's calls are tallied
    assert cost.cpu_s is not None and cost.wall_s is not None
    assert cost.cpu_s >= 0.02 and cost.wall_s >= 0.05
    assert cost.cpu_s < cost.wall_s  # the sleep took no CPU
    assert (cost.google_requests, cost.quota_units) == (3, 10)  # the 429 costs no units
    # And stopping again reads the same figures, and later calls are tallied nowhere
    record(GET, ["200"])
    assert meter.stop() is cost


def test_calls_outside_a_tally_count_in_the_counters_only() -> None:
    before = sample("jobsys_google_requests_total", api="gmail", method=GET, status="200")
    units = sample("jobsys_quota_units_total", api="gmail")

    record(GET, ["200", "200"])

    after = sample("jobsys_google_requests_total", api="gmail", method=GET, status="200")
    assert after - before == 2
    assert sample("jobsys_quota_units_total", api="gmail") - units == 10


def test_metered_counts_a_batchs_parts_by_status_and_a_failed_request_in_full() -> None:
    tally, stop = tallying()
    try:
        # A batch of 4 whose parts include a 429 and a 404 (404 is charged, as Google does)
        parts = [QuotaError("slow down", status=429), TransientError("gone", status=404)]
        metered(GET, 4, lambda: parts, lambda r: r)()
        assert (tally.requests, tally.units) == (4, 15)

        # A request that fails whole: each of its calls counted with the status, no units
        def down() -> None:
            raise TransientError("backend", status=503)

        with pytest.raises(TransientError):
            metered("calendar.events.list", 1, down)()
        assert (tally.requests, tally.units) == (5, 15)
    finally:
        stop()


def test_a_deadline_must_be_a_positive_number_of_seconds() -> None:
    bad = JobSpec(
        kind="test.cost.bad",
        handler=lambda ctx: None,
        payload=None,
        max_attempts=None,
        timeout=None,
        soft_timeout=None,
        queue="default",
        deadline=0,
    )
    with pytest.raises(ValueError, match="deadline must be a positive number of seconds, got 0"):
        check_spec(bad)


def test_each_recorded_attempt_carries_its_cost_to_the_store(engine: Engine) -> None:
    # Given a job whose handler calls Google twice, then fails once and succeeds
    def handler(ctx: Any, payload: Any) -> dict[str, int]:
        record(GET, ["200"])
        record("calendar.events.list", ["200"])
        if ctx.attempt == 1:
            raise JobError("once", reason="flaky", retry_after=0.0)
        return {"done": 1}

    spec = dataclasses.replace(ECHO, handler=handler)
    new = engine.put(spec)

    # When it is delivered twice
    with pytest.raises(Retry):
        engine.deliver(new, spec)
    engine.clock.advance(1)
    engine.admit()  # the retry waited in the backlog; its promotion publishes it
    engine.deliver(new, spec)

    # Then each outcome was recorded with that attempt's own cost
    costs = engine.store.costs
    assert [(n, outcome) for _, n, outcome, _ in costs] == [(1, "retried"), (2, "succeeded")]
    for _, _, _, cost in costs:
        assert (cost.google_requests, cost.quota_units) == (2, 6)
        assert cost.cpu_s is not None and cost.cpu_s > 0
        assert cost.wall_s is not None and cost.wall_s > 0
