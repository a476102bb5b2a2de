"""The shared circuit breaker on a real Redis: counting, opening, one trial, failing safe."""

from __future__ import annotations

import json
import pickle
import threading
import time

import pytest
import redis
from prometheus_client import REGISTRY
from redis.backoff import NoBackoff
from redis.retry import Retry

from jobsys.guards.breaker import BreakerOpen, SharedBreaker, breaker_states
from tests.conftest import Env

pytestmark = pytest.mark.integration


class Down(Exception):
    """What the protected provider raises when it is down."""


class Gone(Exception):
    """A failure of the request, not of the provider (e.g. a 404)."""


@pytest.fixture
def client(broker_url: str) -> redis.Redis:
    return redis.Redis.from_url(broker_url)


def breaker(client: redis.Redis, *, fail_max: int = 3, reset: float = 1.0) -> SharedBreaker:
    return SharedBreaker(
        client,
        "provider",
        fail_max=fail_max,
        reset_timeout=reset,
        counts=lambda e: isinstance(e, Down),
    )


def down() -> None:
    raise Down("503")


def gone() -> None:
    raise Gone("404")


def wait_for_trial(b: SharedBreaker) -> None:
    # pybreaker stores opened_at in whole seconds, so the trial may come up to 1 s late
    deadline = time.monotonic() + 5
    while b.remaining() > 0:
        assert time.monotonic() < deadline, "the breaker never admitted a trial"
        time.sleep(0.05)


def test_it_opens_after_fail_max_counted_failures_in_a_row(client: redis.Redis) -> None:
    # Given a breaker that opens after 3 failures
    b = breaker(client)
    calls = []

    def counted() -> None:
        calls.append(1)
        down()

    # When excluded failures and successes come between them, they do not count
    for _ in range(2):
        with pytest.raises(Down):
            b.call(counted)
    with pytest.raises(Gone):
        b.call(gone)  # an excluded error counts as a success: the run starts again
    for _ in range(2):
        with pytest.raises(Down):
            b.call(counted)
    assert breaker_states(client)[0].state == "closed"

    # When the third failure in a row comes, it is raised as itself and the breaker opens
    with pytest.raises(Down):
        b.call(counted)
    state = breaker_states(client)[0]
    assert (state.name, state.state) == ("provider", "open")
    assert state.history[0]["state"] == "open"
    assert state.history[0]["failures"] == 3

    # Then later calls never reach the provider, and say when to come back
    with pytest.raises(BreakerOpen) as refused:
        b.call(counted)
    assert 1.0 <= refused.value.retry_after <= 2.0  # the reset timeout, at least
    assert refused.value.reason == "breaker_open"
    assert len(calls) == 5


def test_every_breaker_object_on_one_redis_sees_one_state(client: redis.Redis) -> None:
    # Given two workers' breakers of the same name
    a, b = breaker(client), breaker(client)
    # When one of them sees the failures
    for _ in range(3):
        with pytest.raises(Down):
            a.call(down)
    # Then the other refuses too
    with pytest.raises(BreakerOpen):
        b.call(lambda: None)


def test_after_the_reset_timeout_exactly_one_caller_makes_the_trial(client: redis.Redis) -> None:
    # Given an open breaker, shared by four "workers"
    breakers = [breaker(client, reset=1.0) for _ in range(4)]
    for _ in range(3):
        with pytest.raises(Down):
            breakers[0].call(down)
    wait_for_trial(breakers[0])

    # When all four call at once, each with a call that succeeds; the trial's call
    # returns only once the other three were refused, so none can come after it
    reached: list[int] = []
    refused: list[float] = []
    others_refused = threading.Event()
    start = threading.Barrier(4)

    def trial_call(n: int) -> None:
        reached.append(n)
        others_refused.wait(10)

    def call(n: int) -> None:
        start.wait()
        try:
            breakers[n].call(lambda: trial_call(n))
        except BreakerOpen as e:
            refused.append(e.retry_after)
            if len(refused) == 3:
                others_refused.set()

    threads = [threading.Thread(target=call, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    # Then one call went through (the trial) and three were told to wait a little
    assert len(reached) == 1
    assert len(refused) == 3
    assert all(0 < r <= 1.0 for r in refused)
    # And the trial's success closed the breaker: everyone passes again
    history = [h["state"] for h in breaker_states(client)[0].history]
    assert history[:3] == ["closed", "half-open", "open"]
    breakers[3].call(lambda: None)


def test_a_failed_trial_opens_it_for_another_period(client: redis.Redis) -> None:
    b = breaker(client, reset=1.0)
    for _ in range(3):
        with pytest.raises(Down):
            b.call(down)
    wait_for_trial(b)
    # When the trial fails
    with pytest.raises(Down):
        b.call(down)
    # Then it is open again, for a new reset timeout
    with pytest.raises(BreakerOpen):
        b.call(lambda: None)
    states = [h["state"] for h in breaker_states(client)[0].history]
    assert states[:3] == ["open", "half-open", "open"]


def test_reset_closes_it(client: redis.Redis) -> None:
    b = breaker(client, fail_max=1, reset=60)
    with pytest.raises(Down):
        b.call(down)
    with pytest.raises(BreakerOpen):
        b.call(lambda: None)
    b.reset()
    assert b.call(lambda: 42) == 42


def test_without_redis_it_fails_safe_on_a_breaker_in_process_memory() -> None:
    # Given a breaker whose Redis cannot be reached
    unreachable = redis.Redis(
        host="127.0.0.1", port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0)
    )
    sample = {"guard": "breaker"}
    before = REGISTRY.get_sample_value("jobsys_guard_storage_errors_total", sample) or 0.0
    b = breaker(unreachable, fail_max=2, reset=60)

    # Then calls still go through, and the errors are counted
    assert b.call(lambda: "ok") == "ok"
    after = REGISTRY.get_sample_value("jobsys_guard_storage_errors_total", sample) or 0.0
    assert after > before

    # And a dead provider still trips the local breaker: it is not hammered
    for _ in range(2):
        with pytest.raises(Down):
            b.call(down)
    with pytest.raises(BreakerOpen):
        b.call(lambda: "never")


def test_breaker_open_pickles_with_its_fields() -> None:
    e = pickle.loads(pickle.dumps(BreakerOpen("google", 2.5)))
    assert (e.name, e.retry_after) == ("google", 2.5)


def test_validation_names_the_argument(client: redis.Redis) -> None:
    with pytest.raises(ValueError, match="fail_max must be at least 1, got 0"):
        breaker(client, fail_max=0)
    with pytest.raises(ValueError, match="reset_timeout must be positive seconds, got 0"):
        breaker(client, reset=0)


def test_the_cli_lists_breakers(jobsys_env: Env) -> None:
    # Given one open and one closed breaker on the test's Redis
    client = redis.Redis.from_url(jobsys_env.broker_url)
    b = SharedBreaker(client, "google", fail_max=1, reset_timeout=30, counts=lambda e: True)
    with pytest.raises(Down):
        b.call(down)
    SharedBreaker(client, "google:user:u-1", fail_max=1, reset_timeout=30, counts=lambda e: True)

    # When an operator asks
    shown = jobsys_env.cli("breakers", "--json")
    table = jobsys_env.cli("breakers")

    # Then both are there, with their state, failures and last transition
    assert shown.returncode == 0, shown.stderr
    found = {b["name"]: b for b in json.loads(shown.stdout)}
    assert found["google"]["state"] == "open"
    assert found["google"]["failures"] == 1
    assert found["google"]["history"][0]["state"] == "open"
    assert found["google:user:u-1"]["state"] == "closed"
    assert table.returncode == 0, table.stderr
    assert "google:user:u-1" in table.stdout and "open at" in table.stdout
