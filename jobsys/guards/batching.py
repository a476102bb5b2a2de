"""Adaptive batch size: additive increase, multiplicative decrease (AIMD).

A batch that came back clean and within the latency target grows the next
one by ``step``; a batch with any throttled (429) or failed (5xx) part halves
it; a clean but slow batch keeps it. The size lives in Redis per key, so the
next job for the same user starts where the last one left off; without Redis
it is kept in process memory (and said so in the log and the metric).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import structlog
from redis.exceptions import RedisError

from jobsys.guards.metrics import BATCH_SIZE, STORAGE_ERRORS

log = structlog.get_logger("jobsys.guards")
# A size nobody used for a day starts again from the bottom.
_TTL = 86_400


@dataclass(frozen=True)
class Observation:
    """How one batch went."""

    size: int
    latency: float
    throttled: int = 0
    failed: int = 0


def verdict(seen: Observation, target: float) -> str:
    """``halve`` after any throttled or failed part, ``grow`` after a clean fast batch."""
    if seen.throttled or seen.failed:
        return "halve"
    return "grow" if seen.latency <= target else "hold"


def next_size(
    current: int, seen: Observation, *, minimum: int, maximum: int, step: int, target: float
) -> int:
    """The AIMD rule, pure: what the batch after ``seen`` should hold."""
    decided = verdict(seen, target)
    if decided == "halve":
        return max(minimum, current // 2)
    if decided == "grow":
        return min(maximum, current + step)
    return current


# The same rule applied to the stored size in one step, so that two jobs observing
# at once cannot overwrite each other's decision (a lost halving after a 429).
# KEYS[1] = key; ARGV = start size, minimum, maximum, step, verdict, ttl
_OBSERVE = """
local minimum, maximum = tonumber(ARGV[2]), tonumber(ARGV[3])
local current = tonumber(redis.call('GET', KEYS[1]) or ARGV[1])
current = math.max(minimum, math.min(maximum, current))
local new = current
if ARGV[5] == 'halve' then
  new = math.max(minimum, math.floor(current / 2))
elseif ARGV[5] == 'grow' then
  new = math.min(maximum, current + tonumber(ARGV[4]))
end
redis.call('SET', KEYS[1], new, 'EX', tonumber(ARGV[6]))
return {current, new}
"""


class AdaptiveBatch:
    """A batch size per key between ``minimum`` and ``maximum``, shared through Redis.

    Parameters:
        redis: a redis-py client.
        name: what is batched, e.g. ``gmail.messages.get``.
        minimum: the smallest size, and where a new key starts.
        maximum: the largest size.
        step: the additive increase.
        target: seconds a batch may take and still let the size grow.

    Raises:
        ValueError: a size below 1, ``minimum`` above ``maximum``, or a target not positive.
    """

    def __init__(
        self, redis: Any, name: str, *, minimum: int, maximum: int, step: int, target: float
    ) -> None:
        if not 1 <= minimum <= maximum:
            raise ValueError(f"need 1 <= minimum <= maximum, got {minimum} and {maximum}")
        if step < 1 or target <= 0:
            raise ValueError(f"step must be >= 1 and target > 0 s, got {step} and {target}")
        self.name, self._redis = name, redis
        self.minimum, self.maximum, self.step, self.target = minimum, maximum, step, target
        self._local: dict[str, int] = {}  # the last size seen, for when Redis is away
        self._observe = redis.register_script(_OBSERVE)

    def size(self, key: str) -> int:
        """The size the next batch for ``key`` should have."""
        try:
            stored = self._redis.get(self._key(key))
        except RedisError as e:
            self._unavailable(e)
            return self._local.get(key, self.minimum)
        return self._clamp(int(stored)) if stored else self._local.get(key, self.minimum)

    def observe(self, key: str, seen: Observation) -> int:
        """Record how a batch went; returns the next size (and logs the decision)."""
        decided = verdict(seen, self.target)
        start = self._local.get(key, self.minimum)
        args = [start, self.minimum, self.maximum, self.step, decided, _TTL]
        try:
            current, new = (int(v) for v in self._observe(keys=[self._key(key)], args=args))
        except RedisError as e:
            self._unavailable(e)
            current = start
            new = next_size(
                current,
                seen,
                minimum=self.minimum,
                maximum=self.maximum,
                step=self.step,
                target=self.target,
            )
        self._local[key] = new
        BATCH_SIZE.labels(self.name).set(new)
        log.info(
            "batch.size",
            batch=self.name,
            key=key,
            old=current,
            new=new,
            decision=decided,
            used=seen.size,
            latency=round(seen.latency, 3),
            target=self.target,
            throttled=seen.throttled,
            failed=seen.failed,
        )
        return new

    def _clamp(self, size: int) -> int:
        return max(self.minimum, min(self.maximum, size))

    def _key(self, key: str) -> str:
        return f"jobsys:batch:{self.name}:{key}"

    def _unavailable(self, error: Exception) -> None:
        STORAGE_ERRORS.labels("batch").inc()
        log.warning("batch.storage_unavailable", batch=self.name, detail=str(error))
