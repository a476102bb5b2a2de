"""Per-user quota as token buckets, and request accounting for the stats endpoint.

Google enforces per-user limits as a moving rate; a token bucket with a burst
is the simplest model that both throttles a hot loop and lets a well-paced
client run at full rate. Every request, throttled or not, is counted per user
and per method so that a benchmark can compute utilisation.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

BATCH_HISTORY = 10_000


@dataclass
class _Bucket:
    rate: float
    capacity: float
    level: float
    stamp: float

    def take(self, cost: float, now: float) -> float:
        """Take ``cost`` tokens; return 0.0 on success, else seconds to wait."""
        self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.level >= cost:
            self.level -= cost
            return 0.0
        return (cost - self.level) / self.rate


@dataclass
class MethodStats:
    """Counters for one (user, method) pair."""

    requests: int = 0
    throttled: int = 0
    errors: int = 0
    units: int = 0


class QuotaBook:
    """Token buckets per (user, API) and counters per (user, method).

    Parameters:
        limits: API name (``gmail``/``calendar``) → (rate per second, burst).
        clock: a monotonic clock, replaceable in tests.
    """

    def __init__(
        self,
        limits: dict[str, tuple[float, float]],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limits = dict(limits)
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        self._stats: dict[tuple[str, str], MethodStats] = {}
        self._batches: dict[str, list[int]] = {}
        self._started = time.time()

    def charge(self, email: str, api: str, method: str, cost: int) -> float | None:
        """Charge one request; return None if allowed, else the Retry-After seconds.

        Parameters:
            email: the user the request is made for.
            api: ``gmail`` or ``calendar`` (selects the bucket).
            method: the method id, e.g. ``gmail.users.messages.get``.
            cost: the quota units the request costs.

        Returns:
            None when the request may proceed, else seconds until it could.
        """
        with self._lock:
            stats = self._stats.setdefault((email, method), MethodStats())
            stats.requests += 1
            bucket = self._bucket(email, api)
            wait = bucket.take(cost, self._clock())
            if wait > 0:
                stats.throttled += 1
                return float(max(1, math.ceil(wait)))
            stats.units += cost
            return None

    def count(self, email: str, method: str, *, error: bool = False) -> None:
        """Count a request that was not charged (rejected before quota, or a fault)."""
        with self._lock:
            stats = self._stats.setdefault((email, method), MethodStats())
            stats.requests += 1
            stats.errors += int(error)

    def count_error(self, email: str, method: str) -> None:
        """Count an error answer for a request that was already charged."""
        with self._lock:
            self._stats.setdefault((email, method), MethodStats()).errors += 1

    def note_batch(self, email: str, size: int) -> None:
        """Remember the size of a batch request, the latest ``BATCH_HISTORY`` per user."""
        with self._lock:
            sizes = self._batches.setdefault(email, [])
            sizes.append(size)
            del sizes[:-BATCH_HISTORY]

    def _bucket(self, email: str, api: str) -> _Bucket:
        key = (email, api)
        bucket = self._buckets.get(key)
        if bucket is None:
            rate, burst = self._limits[api]
            bucket = _Bucket(rate, burst, burst, self._clock())
            self._buckets[key] = bucket
        return bucket

    def snapshot(self) -> dict[str, object]:
        """Return every counter, per user and per method, and the configured limits."""
        with self._lock:
            users: dict[str, dict[str, dict[str, int]]] = {}
            for (email, method), s in sorted(self._stats.items()):
                users.setdefault(email, {})[method] = {
                    "requests": s.requests,
                    "throttled": s.throttled,
                    "errors": s.errors,
                    "units": s.units,
                }
            return {
                "since": self._started,
                "elapsed": time.time() - self._started,
                "limits": {k: {"rate": r, "burst": b} for k, (r, b) in self._limits.items()},
                "users": users,
                "batches": {email: list(sizes) for email, sizes in self._batches.items()},
            }

    def reset(self) -> None:
        """Forget every counter and refill every bucket."""
        with self._lock:
            self._stats.clear()
            self._buckets.clear()
            self._batches.clear()
            self._started = time.time()
