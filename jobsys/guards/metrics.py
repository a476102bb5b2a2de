"""Prometheus metrics of the guards: what they decided, and when they could not ask Redis.

Worker nodes keep metrics in prometheus-client's multiprocess mode, where each
gauge says how the processes' values combine: these report the newest value
any process set. No label names a user (one series per user would not scale):
:func:`scope` folds a per-user breaker or throttle key into its kind, and the
per-user gauges are left unset (``jobsys breakers`` shows each user's breaker).
"""

from __future__ import annotations

import re

from prometheus_client import Counter, Gauge

_PER_USER = re.compile(r":user:.*$")

STORAGE_ERRORS = Counter(
    "jobsys_guard_storage_errors",
    "Guard operations that could not reach Redis and failed safe",
    ["guard"],
)
THROTTLE_LIMIT = Gauge(
    "jobsys_throttle_limit",
    "Current concurrency limit",
    ["throttle", "key"],
    multiprocess_mode="mostrecent",
)
RATE_LIMITED = Counter(
    "jobsys_ratelimit_waits",
    "Calls that waited for quota units, or were postponed",
    ["limit", "outcome"],
)
PROVIDER_THROTTLED = Counter(
    "jobsys_provider_throttled", "Provider answers of 429 fed back to the rate limiter", ["limit"]
)
BREAKER_STATE = Gauge(
    "jobsys_breaker_open",
    "1 while a circuit breaker is open or half-open, else 0",
    ["breaker"],
    multiprocess_mode="mostrecent",
)
BREAKER_REJECTED = Counter(
    "jobsys_breaker_rejected", "Calls refused because a breaker was open", ["breaker"]
)
BATCH_SIZE = Gauge(
    "jobsys_batch_size", "Current adaptive batch size", ["batch"], multiprocess_mode="mostrecent"
)


def scope(name: str) -> str:
    """``name`` without a user's id: ``google:user:u-1`` is ``google:user``."""
    return _PER_USER.sub(":user", name)


def per_user(name: str) -> bool:
    """Whether ``name`` (a breaker's, a throttle key) is one user's."""
    return _PER_USER.search(name) is not None
