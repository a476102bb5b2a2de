"""The adaptive batch size on a real Redis: shared per key, applied atomically, failing safe."""

from __future__ import annotations

import threading

import pytest
import redis
from prometheus_client import REGISTRY
from redis.backoff import NoBackoff
from redis.retry import Retry

from jobsys.guards.batching import AdaptiveBatch, Observation

pytestmark = pytest.mark.integration
CLEAN, THROTTLED = Observation(10, 0.1), Observation(10, 0.1, throttled=1)


def sizer(client: redis.Redis) -> AdaptiveBatch:
    return AdaptiveBatch(client, "gets", minimum=10, maximum=100, step=10, target=2.0)


def test_two_processes_share_one_size_per_key(broker_url: str) -> None:
    client = redis.Redis.from_url(broker_url)
    a, b = sizer(client), sizer(client)
    # Given a key that grew to 40 through one object
    for _ in range(3):
        a.observe("u1", CLEAN)
    # Then the other sees 40, and its halving is seen by the first
    assert b.size("u1") == 40
    assert b.observe("u1", THROTTLED) == 20
    assert a.size("u1") == 20
    # And another key starts from the minimum
    assert a.size("u2") == 10


def test_simultaneous_observations_are_all_applied(broker_url: str) -> None:
    # Given a size of 100
    client = redis.Redis.from_url(broker_url)
    for _ in range(9):
        sizer(client).observe("u1", CLEAN)
    assert sizer(client).size("u1") == 100
    # When eight workers each report a throttled batch at the same moment
    start = threading.Barrier(8)

    def report() -> None:
        mine = sizer(redis.Redis.from_url(broker_url))
        start.wait()
        mine.observe("u1", THROTTLED)

    threads = [threading.Thread(target=report) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Then every halving counted: 100 -> 50 -> 25 -> 12 -> 10 (the minimum) ...
    assert sizer(client).size("u1") == 10


def test_without_redis_the_size_adapts_in_process_memory() -> None:
    unreachable = redis.Redis(
        host="127.0.0.1", port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0)
    )
    sample = {"guard": "batch"}
    before = REGISTRY.get_sample_value("jobsys_guard_storage_errors_total", sample) or 0.0
    s = sizer(unreachable)
    assert [s.observe("u1", CLEAN) for _ in range(3)] == [20, 30, 40]
    assert s.size("u1") == 40
    assert s.observe("u1", THROTTLED) == 20
    after = REGISTRY.get_sample_value("jobsys_guard_storage_errors_total", sample) or 0.0
    assert after >= before + 5
