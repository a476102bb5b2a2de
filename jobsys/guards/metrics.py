"""Prometheus metrics of the guards: what they decided, and when they could not ask Redis."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

STORAGE_ERRORS = Counter(
    "jobsys_guard_storage_errors",
    "Guard operations that could not reach Redis and failed safe",
    ["guard"],
)
THROTTLE_LIMIT = Gauge("jobsys_throttle_limit", "Current concurrency limit", ["throttle", "key"])
RATE_LIMITED = Counter(
    "jobsys_ratelimit_waits",
    "Calls that waited for quota units, or were postponed",
    ["limit", "outcome"],
)
PROVIDER_THROTTLED = Counter(
    "jobsys_provider_throttled", "Provider answers of 429 fed back to the rate limiter", ["limit"]
)
BREAKER_STATE = Gauge(
    "jobsys_breaker_open", "1 while a circuit breaker is open or half-open, else 0", ["breaker"]
)
BREAKER_REJECTED = Counter(
    "jobsys_breaker_rejected", "Calls refused because a breaker was open", ["breaker"]
)
BATCH_SIZE = Gauge("jobsys_batch_size", "Current adaptive batch size", ["batch"])
