"""The quota-unit rate limiter's arithmetic, on a real Redis, with a fake clock."""

from __future__ import annotations

import pickle
import time

import pytest
import redis

from jobsys.guards.ratelimit import RateLimited, RateLimiter

pytestmark = pytest.mark.integration


@pytest.fixture
def client(broker_url: str) -> redis.Redis:
    return redis.Redis.from_url(broker_url)


def limiter(client: redis.Redis, rate: float = 10, burst: float = 20) -> RateLimiter:
    return RateLimiter(client, name="gmail", rate=rate, burst=burst)


def test_a_burst_is_allowed_then_the_steady_rate(client: redis.Redis) -> None:
    # Given 10 units/s with a burst of 20
    rl = limiter(client)
    # When 20 units are asked at one instant
    burst = [rl.try_acquire("u1", now=1000.0).allowed for _ in range(20)]
    # Then all pass, and the 21st must wait one unit's interval
    assert all(burst)
    refused = rl.try_acquire("u1", now=1000.0)
    assert not refused.allowed
    assert refused.retry_after == pytest.approx(0.1)
    # And over the next second exactly 10 more units fit
    allowed = sum(rl.try_acquire("u1", now=1000.0 + i * 0.01).allowed for i in range(1, 101))
    assert allowed == 10


def test_refill_is_linear_and_capped_at_the_burst(client: redis.Redis) -> None:
    rl = limiter(client)
    assert all(rl.try_acquire("u1", now=0.0).allowed for _ in range(20))
    # After 0.55 s, 5 units have come back, not 6
    assert sum(rl.try_acquire("u1", now=0.55).allowed for _ in range(10)) == 5
    # After a long idle time the key holds the burst again, never more
    assert sum(rl.try_acquire("u1", now=100.0).allowed for _ in range(30)) == 20


def test_cost_is_charged_in_units(client: redis.Redis) -> None:
    # Given Gmail's costs: messages.get 5 units, history.list 2
    rl = limiter(client, rate=10, burst=20)
    assert [rl.try_acquire("u1", 5, now=0.0).allowed for _ in range(5)] == [True] * 4 + [False]
    # A cheaper call fits sooner than an expensive one
    assert rl.try_acquire("u1", 2, now=0.0).retry_after == pytest.approx(0.2)
    assert rl.try_acquire("u1", 5, now=0.0).retry_after == pytest.approx(0.5)


def test_keys_are_independent_and_shared_by_every_limiter_object(client: redis.Redis) -> None:
    # Two limiter objects (two workers) on one Redis share one budget per key
    a, b = limiter(client, burst=4), limiter(client, burst=4)
    assert [a.try_acquire("u1", now=5.0).allowed for _ in range(2)] == [True, True]
    assert [b.try_acquire("u1", now=5.0).allowed for _ in range(3)] == [True, True, False]
    # while another user's key is untouched
    assert a.try_acquire("u2", now=5.0).allowed


def test_a_429_holds_the_key_for_its_retry_after(client: redis.Redis) -> None:
    # Given a full key that the provider answered 429, Retry-After 3 s, at t=50
    rl = limiter(client)
    rl.penalize("u1", 3.0, now=50.0)
    # Then every call is refused until t=53, with the remaining wait
    refused = rl.try_acquire("u1", now=51.0)
    assert (refused.allowed, refused.retry_after) == (False, pytest.approx(2.0))
    assert not rl.try_acquire("u1", now=52.99).allowed
    # and the key refills from empty after it: one unit at t=53, the next 0.1 s later
    assert rl.try_acquire("u1", now=53.0).allowed
    assert not rl.try_acquire("u1", now=53.0).allowed
    assert rl.try_acquire("u1", now=53.1).allowed


def test_acquire_waits_within_its_bound_or_raises_with_the_delay(client: redis.Redis) -> None:
    # One unit every 0.5 s: the second call comes long before the unit is back,
    # however slow the machine is between the two calls
    rl = limiter(client, rate=2, burst=1)
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        time.sleep(seconds)

    rl.acquire("u1")
    # When the unit is not there yet, acquire sleeps the time the limiter names
    rl.acquire("u1", max_wait=1.0, sleep=sleep)
    assert slept and 0 < slept[0] <= 0.5
    # and past its bound it raises a typed, picklable error with that delay
    slow = limiter(client, rate=0.5, burst=1)
    slow.acquire("u9")
    with pytest.raises(RateLimited) as caught:
        slow.acquire("u9", max_wait=0.5)
    assert caught.value.retry_after > 1.5
    assert (caught.value.reason, caught.value.retryable) == ("quota", True)
    assert pickle.loads(pickle.dumps(caught.value)).retry_after == caught.value.retry_after


@pytest.mark.parametrize(
    ("rate", "burst", "message"), [(0, 1, "rate must be positive"), (1, 0, "burst must")]
)
def test_bad_limits_are_refused(
    client: redis.Redis, rate: float, burst: float, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        RateLimiter(client, name="x", rate=rate, burst=burst)


def test_a_cost_above_the_burst_can_never_pass_and_is_refused(client: redis.Redis) -> None:
    with pytest.raises(ValueError, match="cost must be in"):
        limiter(client, burst=5).try_acquire("u1", 6)


def test_microsecond_costs_are_not_rounded_away_at_a_high_rate(client: redis.Redis) -> None:
    # Given a project-sized limit, where one unit lasts 50 us, and an epoch-sized clock
    rl = limiter(client, rate=20_000, burst=1_000)
    now = 1_790_000_000.0
    # When 1,100 one-unit calls come at one instant
    allowed = sum(rl.try_acquire("project", now=now).allowed for _ in range(1_100))
    # Then exactly the burst passes: no unit was lost to rounding of the stored time
    assert allowed == 1_000
