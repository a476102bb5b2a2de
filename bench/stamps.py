"""Where both systems' ``stamp`` handlers record their start time (no jobsys or Celery import)."""

from __future__ import annotations

import os

import redis

STAMPS_KEY = "bench:stamps"
_clients: dict[int, redis.Redis] = {}


def stamps() -> redis.Redis:
    """One Redis client per process (prefork children must not share the parent's)."""
    pid = os.getpid()
    client = _clients.get(pid)
    if client is None:
        _clients.clear()
        client = _clients[pid] = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"])
    return client
