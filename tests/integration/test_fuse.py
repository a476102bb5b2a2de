"""The guards' Redis client fails fast for a while after Redis stopped answering."""

from __future__ import annotations

import time

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from jobsys.guards.fuse import FusedRedis

pytestmark = pytest.mark.integration


def test_after_a_timeout_commands_fail_at_once_until_the_cooldown_ends(broker_url: str) -> None:
    # Given a guard client with a 0.2 s timeout, and a Redis that stops answering for 1 s
    client = FusedRedis.from_url(broker_url, socket_timeout=0.2, retry=Retry(NoBackoff(), 0))
    client.cooldown = 1.5
    assert client.set("k", "v")
    admin = redis.Redis.from_url(broker_url)
    admin.client_pause(1000)

    # When a command times out
    with pytest.raises(redis.TimeoutError):
        client.get("k")

    # Then the next ones are refused by the fuse without reaching the socket
    for _ in range(10):
        with pytest.raises(redis.ConnectionError, match="guards skip it for a moment"):
            client.get("k")

    # And once the cooldown is over (Redis answering again), commands go through
    time.sleep(1.6)
    assert client.get("k") == b"v"
    admin.close()
    client.close()
