"""The adaptive concurrency throttle's arithmetic and semaphore, on a real Redis, fake clock."""

from __future__ import annotations

import pickle
from typing import Any

import prometheus_client
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from structlog.testing import capture_logs

from jobsys.errors import JobsysError
from jobsys.guards.throttle import Adjustment, ConcurrencyThrottle, Throttled

pytestmark = pytest.mark.integration


@pytest.fixture
def client(broker_url: str) -> redis.Redis:
    return redis.Redis.from_url(broker_url)


def throttle(client: redis.Redis, **kwargs: Any) -> ConcurrencyThrottle:
    options: dict[str, Any] = {"name": "gmail", "maximum": 8, "window": 60.0, "cooldown": 30.0}
    return ConcurrencyThrottle(client, **(options | kwargs))


def outcomes(
    th: ConcurrencyThrottle, now: float, *, errors: int = 0, ok: int = 0, key: str = "p"
) -> list[tuple[int, Adjustment]]:
    """Record ``errors`` failures then ``ok`` successes at ``now``; the changes, by index."""
    results = [th.record(key, ok=False, now=now) for _ in range(errors)]
    results += [th.record(key, ok=True, now=now) for _ in range(ok)]
    return [(i, a) for i, a in enumerate(results) if a is not None]


def steps(changes: list[tuple[int, Adjustment]]) -> list[tuple[int, int]]:
    return [(a.old, a.new) for _, a in changes]


def test_errors_above_the_threshold_halve_the_limit_once_per_cooldown(
    client: redis.Redis,
) -> None:
    # Given a limit of 8, a 60 s window, 20 samples needed, a 30 s cooldown
    th = throttle(client, name="halve")
    # When 4 of 20 calls fail (20% > 15%)
    with capture_logs() as logs:
        changes = outcomes(th, 1000.0, errors=4, ok=16)
    # Then the 20th outcome halves the limit, and says what drove it
    assert changes == [(19, Adjustment("p", 8, 4, 0.2, 20))]
    assert th.limit("p") == 4
    adjust = [e for e in logs if e["event"] == "throttle.adjust"]
    assert adjust == [
        {
            "event": "throttle.adjust",
            "log_level": "info",
            "name": "halve",
            "key": "p",
            "old": 8,
            "new": 4,
            "error_rate": 0.2,
            "samples": 20,
            "window": 60.0,
            "threshold": 0.15,
        }
    ]
    gauge = {"throttle": "halve", "key": "p"}
    assert prometheus_client.REGISTRY.get_sample_value("jobsys_throttle_limit", gauge) == 4
    # And more failures within the cooldown change nothing
    assert outcomes(th, 1010.0, errors=20) == []
    assert th.limit("p") == 4
    # Then once per cooldown it halves again, down to the minimum and never below
    assert steps(outcomes(th, 1030.0, errors=20)) == [(4, 2)]
    assert steps(outcomes(th, 1060.0, errors=20)) == [(2, 1)]
    assert outcomes(th, 1090.0, errors=20) == []
    assert outcomes(th, 2000.0, errors=40) == []
    assert th.limit("p") == 1


def test_the_decrease_stops_at_a_minimum_above_one(client: redis.Redis) -> None:
    th = throttle(client, maximum=10, minimum=3)
    assert steps(outcomes(th, 0.0, errors=20)) == [(10, 5)]
    assert steps(outcomes(th, 30.0, errors=20)) == [(5, 3)]
    assert outcomes(th, 60.0, errors=20) == []
    assert th.limit("p") == 3


def test_clean_outcomes_raise_the_limit_by_one_per_cooldown_up_to_the_maximum(
    client: redis.Redis,
) -> None:
    # Given a limit of 4 driven down to 2 by an outage at t=0
    th = throttle(client, maximum=4)
    assert steps(outcomes(th, 0.0, errors=20)) == [(4, 2)]
    # When the outage has left the window and 20 calls succeed
    changes = outcomes(th, 100.0, ok=20)
    # Then the 20th raises the limit by one
    assert changes == [(19, Adjustment("p", 2, 3, 0.0, 20))]
    # and it rises by one per cooldown, never above the maximum
    assert outcomes(th, 110.0, ok=20) == []
    assert steps(outcomes(th, 130.0, ok=1)) == [(3, 4)]
    assert outcomes(th, 160.0, ok=20) == []
    assert outcomes(th, 500.0, ok=40) == []
    assert th.limit("p") == 4


def test_an_error_rate_between_half_the_threshold_and_the_threshold_holds_the_limit(
    client: redis.Redis,
) -> None:
    th = throttle(client, maximum=8)
    outcomes(th, 0.0, errors=20)
    # 10% errors: not enough to halve (> 15%), too many to grow (<= 7.5%)
    assert outcomes(th, 100.0, errors=2, ok=18) == []
    # however the errors fall among the outcomes (here 2 in the first 20, 3 of 21, ... 4 of 40)
    interleaved = [th.record("p", ok=i % 10 != 0, now=200.0) for i in range(40)]
    assert interleaved == [None] * 40
    assert th.limit("p") == 4
    # while 5% lets it grow
    assert steps(outcomes(th, 300.0, errors=1, ok=19)) == [(4, 5)]


def test_too_few_samples_change_nothing(client: redis.Redis) -> None:
    th = throttle(client, min_samples=20)
    # Every call failing, but only 19 of them
    assert outcomes(th, 0.0, errors=19) == []
    assert th.limit("p") == 8
    # The 20th is enough
    assert steps(outcomes(th, 0.0, errors=1)) == [(8, 4)]


def test_old_buckets_leave_the_window(client: redis.Redis) -> None:
    # Given 19 failures at t=0 on two keys (buckets of 10 s, six to a 60 s window)
    th = throttle(client)
    for key in ("a", "b"):
        assert outcomes(th, 0.0, errors=19, key=key) == []
    # When a 20th failure comes at t=55, the first 19 still count
    assert steps(outcomes(th, 55.0, errors=1, key="a")) == [(8, 4)]
    # but at t=60 their bucket has left the window, and is deleted
    assert outcomes(th, 60.0, errors=1, key="b") == []
    assert th.limit("b") == 8
    assert client.hgetall("jobsys:throttle:gmail:b:window") == {b"6:n": b"1", b"6:e": b"1"}


def test_the_semaphore_admits_up_to_the_limit_and_again_after_leave(client: redis.Redis) -> None:
    th = throttle(client, maximum=3)
    assert [th.try_enter("p", h, now=0.0) for h in ("h1", "h2", "h3", "h4")] == [
        True,
        True,
        True,
        False,
    ]
    th.leave("p", "h2")
    assert th.try_enter("p", "h4", now=1.0)
    assert not th.try_enter("p", "h5", now=1.0)
    # Leaving a slot not held is harmless; keys are independent
    th.leave("p", "nobody")
    assert not th.try_enter("p", "h5", now=1.0)
    assert th.try_enter("other", "h5", now=1.0)
    assert client.zcard("jobsys:throttle:gmail:p:holders") == 3


def test_expired_holders_are_dropped(client: redis.Redis) -> None:
    # Given two slots taken at t=0 with a 10 s lease, by holders that then crashed
    th = throttle(client, maximum=2, lease=10.0)
    assert th.try_enter("p", "h1", now=0.0) and th.try_enter("p", "h2", now=0.0)
    # Then the slots stay taken until the lease runs out, then free up
    assert not th.try_enter("p", "h3", now=9.99)
    assert th.try_enter("p", "h3", now=10.0)
    assert th.try_enter("p", "h4", now=10.0)
    assert not th.try_enter("p", "h5", now=10.0)


def test_entering_again_keeps_one_slot_and_refreshes_the_lease(client: redis.Redis) -> None:
    th = throttle(client, maximum=1, lease=10.0)
    assert th.try_enter("p", "h1", now=0.0)
    # The holder enters again: admitted, still one slot
    assert th.try_enter("p", "h1", now=8.0)
    assert client.zcard("jobsys:throttle:gmail:p:holders") == 1
    assert not th.try_enter("p", "h2", now=8.0)
    # Its lease now runs to t=18, not t=10
    assert not th.try_enter("p", "h2", now=12.0)
    assert th.try_enter("p", "h2", now=18.0)


def test_a_lowered_limit_lowers_admission(client: redis.Redis) -> None:
    # Given 4 slots held of a limit of 4
    th = throttle(client, maximum=4)
    assert all(th.try_enter("p", f"h{i}", now=0.0) for i in range(4))
    # When errors halve the limit to 2
    assert steps(outcomes(th, 0.0, errors=20)) == [(4, 2)]
    # Then nobody new enters until fewer than 2 slots are held
    th.leave("p", "h0")
    th.leave("p", "h1")
    assert not th.try_enter("p", "new", now=1.0)
    th.leave("p", "h2")
    assert th.try_enter("p", "new", now=1.0)
    assert not th.try_enter("p", "newer", now=1.0)


def test_slot_raises_throttled_and_releases_on_exit(client: redis.Redis) -> None:
    th = throttle(client, maximum=1, window=60.0)
    with th.slot("p", "a"):
        with pytest.raises(Throttled) as caught:
            with th.slot("p", "b"):
                pytest.fail("entered a full throttle")
    assert caught.value.retry_after == 5.0
    assert caught.value.key == "jobsys:throttle:gmail:p"
    # The slot was given back on exit
    with th.slot("p", "b"):
        assert client.zrange("jobsys:throttle:gmail:p:holders", 0, -1) == [b"b"]
    # also when the block raised
    with pytest.raises(RuntimeError, match="provider"):
        with th.slot("p", "c"):
            raise RuntimeError("provider failed")
    assert client.zcard("jobsys:throttle:gmail:p:holders") == 0
    # A short window retries sooner
    assert throttle(client, window=24.0).retry_after == 2.0


def test_two_throttle_objects_share_state(client: redis.Redis) -> None:
    # Two objects (two workers) on one Redis share the window, the limit and the slots
    a, b = throttle(client, maximum=2), throttle(client, maximum=2)
    assert outcomes(a, 0.0, errors=10) == []
    assert steps(outcomes(b, 0.0, errors=10)) == [(2, 1)]
    assert a.limit("p") == 1
    assert a.try_enter("p", "h1", now=1.0)
    assert not b.try_enter("p", "h2", now=1.0)
    b.leave("p", "h1")
    assert a.try_enter("p", "h2", now=1.0)


def test_throttled_is_a_typed_picklable_jobsys_error() -> None:
    error = Throttled("jobsys:throttle:gmail:p", 2.5)
    copy = pickle.loads(pickle.dumps(error))
    assert isinstance(copy, JobsysError)
    assert (copy.key, copy.retry_after, str(copy)) == (error.key, 2.5, str(error))
    assert (copy.reason, copy.retryable) == ("throttled", True)
    assert "retry after 2.500 s" in str(copy)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": ""}, "name must not be empty, got ''"),
        ({"maximum": 0}, r"maximum must be at least 1, got 0"),
        ({"minimum": 0}, r"minimum must be in \[1, maximum=8\], got 0"),
        ({"minimum": 9}, r"minimum must be in \[1, maximum=8\], got 9"),
        ({"threshold": 0}, r"threshold must be an error rate in \(0, 1\), got 0"),
        ({"threshold": 1.0}, r"threshold must be an error rate in \(0, 1\), got 1.0"),
        ({"window": 0}, "window must be positive seconds, got 0"),
        ({"min_samples": 0}, "min_samples must be at least 1, got 0"),
        ({"cooldown": -1}, "cooldown must be zero or positive seconds, got -1"),
        ({"lease": 0}, "lease must be positive seconds, got 0"),
    ],
)
def test_bad_arguments_are_refused(
    client: redis.Redis, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        throttle(client, **kwargs)


def test_the_cooldown_defaults_to_the_window(client: redis.Redis) -> None:
    th = ConcurrencyThrottle(client, name="gmail", maximum=8, window=20.0)
    assert th.cooldown == 20.0
    assert steps(outcomes(th, 0.0, errors=20)) == [(8, 4)]
    assert outcomes(th, 19.9, errors=20) == []
    assert steps(outcomes(th, 20.0, errors=1)) == [(4, 2)]


def test_an_unreachable_redis_fails_open_and_is_counted() -> None:
    # Given a Redis nobody listens on (no retries, so the test stays fast)
    down = redis.Redis(
        host="127.0.0.1", port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0)
    )
    th = ConcurrencyThrottle(down, name="down", maximum=3)
    labels = {"guard": "throttle"}
    before = prometheus_client.REGISTRY.get_sample_value(
        "jobsys_guard_storage_errors_total", labels
    )
    # When it is used
    with capture_logs() as logs:
        admitted = th.try_enter("p", "h1")
        recorded = th.record("p", ok=False)
        limit = th.limit("p")
        with th.slot("p", "h2"):
            pass
    # Then it admits, changes nothing, answers the maximum, and raises nothing
    assert (admitted, recorded, limit) == (True, None, 3)
    # and every call is logged, without a traceback, and counted
    warnings = [e for e in logs if e["event"] == "throttle.storage_unavailable"]
    ops = ["try_enter", "record", "limit", "try_enter", "leave"]
    assert [e["op"] for e in warnings] == ops
    assert all(e["log_level"] == "warning" and "exc_info" not in e for e in warnings)
    assert warnings[0]["error"].startswith("ConnectionError")
    after = prometheus_client.REGISTRY.get_sample_value("jobsys_guard_storage_errors_total", labels)
    assert after == (before or 0.0) + len(ops)
