"""A GCRA rate limiter in quota units, shared through Redis, one round trip per acquire.

Each key (e.g. ``gmail:user:u-1``, ``gmail:project``) refills at ``rate`` units
per second and holds at most ``burst`` units. A call of ``cost`` units is
allowed when the key's theoretical arrival time (TAT), pushed ``cost / rate``
seconds ahead, stays within ``burst / rate`` seconds of now; the Lua script
decides and records that atomically, so every worker on every node shares
one budget. A 429 from the provider feeds back with :meth:`RateLimiter.penalize`,
which holds the key for the Retry-After period.

When Redis cannot be reached the limiter fails safe: it applies the same limit
in process memory (each process then spends the budget on its own, so a 429
may follow, which feeds back as usual) and says so in the log
(``ratelimit.storage_unavailable``) and the
``jobsys_guard_storage_errors_total{guard="ratelimit"}`` metric.

Errors::

    Refused (jobsys.guards)
    └── RateLimited(key, retry_after)   reason "quota", retryable: retry later, not fail
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import structlog
from redis.exceptions import RedisError

from jobsys.guards import Refused
from jobsys.guards.metrics import STORAGE_ERRORS

log = structlog.get_logger("jobsys.guards")

# ARGV[1] = now in seconds, "" for Redis TIME. TATs are stored with %.6f: Lua's
# tostring keeps 14 digits, i.e. 0.1 ms of an epoch time, too coarse at 20,000 units/s.
_CLOCK = """
local now = tonumber(ARGV[1])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
"""

# KEYS[1] = key; ARGV = now, rate (units/s), burst (units), cost (units)
_ACQUIRE = (
    _CLOCK
    + """
local rate, burst, cost = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + cost / rate
local wait = new_tat - now - burst / rate
if wait > 0 then
  return {0, tostring(wait)}
end
redis.call('SET', KEYS[1], string.format('%.6f', new_tat), 'PX',
  math.ceil((new_tat - now) * 1000) + 1000)
return {1, '0'}
"""
)

# KEYS[1] = key; ARGV = now, seconds to hold, rate, burst.
# The key refuses every call for ``seconds``, then refills from empty.
_PENALIZE = (
    _CLOCK
    + """
local rate, burst = tonumber(ARGV[3]), tonumber(ARGV[4])
local hold = now + tonumber(ARGV[2]) + (burst - 1) / rate
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < hold then
  redis.call('SET', KEYS[1], string.format('%.6f', hold), 'PX',
    math.ceil((hold - now) * 1000) + 1000)
end
return 1
"""
)


class RateLimited(Refused):
    """The key's budget is spent; try again after ``retry_after`` seconds."""

    reason = "quota"
    template = "rate limit of {key!r} reached"


@dataclasses.dataclass(frozen=True)
class Decision:
    allowed: bool
    retry_after: float = 0.0


class RateLimiter:
    """One limit (``rate`` units/s, ``burst`` units) applied per key.

    Raises:
        ValueError: a rate, burst or cost that is not positive, or a cost above the burst.
    """

    def __init__(self, redis: Any, *, name: str, rate: float, burst: float) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be positive units per second, got {rate}")
        if burst <= 0:
            raise ValueError(f"burst must be positive units, got {burst}")
        self.name, self.rate, self.burst = name, float(rate), float(burst)
        self._acquire = redis.register_script(_ACQUIRE)
        self._penalize = redis.register_script(_PENALIZE)
        self._local: dict[str, float] = {}  # key -> TAT, used only while Redis is away

    def try_acquire(self, key: str, cost: float = 1, *, now: float | None = None) -> Decision:
        """Take ``cost`` units from ``key`` if they are there; one Redis round trip."""
        if cost <= 0 or cost > self.burst:
            raise ValueError(f"cost must be in (0, burst={self.burst}], got {cost}")
        args = ["" if now is None else repr(now), self.rate, self.burst, cost]
        try:
            allowed, wait = self._acquire(keys=[self._key(key)], args=args)
        except RedisError as e:
            self._unavailable(e)
            return self._try_locally(key, cost, time.time() if now is None else now)
        return Decision(bool(int(allowed)), max(0.0, float(wait)))

    def acquire(
        self,
        key: str,
        cost: float = 1,
        *,
        max_wait: float = 0.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """Take ``cost`` units, waiting up to ``max_wait`` seconds for them.

        Raises:
            RateLimited: the units would not be there within ``max_wait`` seconds.
        """
        waited = 0.0
        while True:
            decision = self.try_acquire(key, cost)
            if decision.allowed:
                return
            if waited + decision.retry_after > max_wait:
                raise RateLimited(self._key(key), decision.retry_after)
            sleep(decision.retry_after)
            waited += decision.retry_after

    def penalize(self, key: str, seconds: float, *, now: float | None = None) -> None:
        """Hold ``key`` for ``seconds`` (a provider's Retry-After after a 429)."""
        if seconds > 0:
            args = ["" if now is None else repr(now), seconds, self.rate, self.burst]
            try:
                self._penalize(keys=[self._key(key)], args=args)
            except RedisError as e:
                self._unavailable(e)
                at = time.time() if now is None else now
                hold = at + seconds + (self.burst - 1) / self.rate
                self._local[key] = max(self._local.get(key, at), hold)

    def _try_locally(self, key: str, cost: float, now: float) -> Decision:
        """The Lua script's arithmetic, in this process only."""
        tat = max(self._local.get(key, now), now)
        new_tat = tat + cost / self.rate
        wait = new_tat - now - self.burst / self.rate
        if wait > 0:
            return Decision(False, wait)
        self._local[key] = new_tat
        return Decision(True)

    def _unavailable(self, error: Exception) -> None:
        STORAGE_ERRORS.labels("ratelimit").inc()
        log.warning("ratelimit.storage_unavailable", limit=self.name, detail=str(error))

    def _key(self, key: str) -> str:
        return f"jobsys:rl:{self.name}:{key}"
