"""Adaptive concurrency limits (AIMD) per key, shared through Redis.

:meth:`ConcurrencyThrottle.record` counts outcomes of outside calls under a key
(e.g. ``gmail:project``) in a sliding window of ``window`` seconds (six time
buckets). Once the window holds ``min_samples`` outcomes, and at most once per
``cooldown``, an error rate above ``threshold`` halves the key's limit (not
below ``minimum``) and one at or below ``threshold / 2`` adds one (not above
``maximum``). Calls hold a slot of the limit (:meth:`ConcurrencyThrottle.slot`),
a counting semaphore whose holders expire after ``lease`` seconds, so a crashed
process cannot keep its slot. Each operation is one round trip (a Lua script),
so every worker on every node shares one limit and one semaphore per key.

Without Redis the throttle fails open: ``record`` changes nothing, ``try_enter``
admits, ``limit`` is ``maximum``; each call logs ``throttle.storage_unavailable``
and counts in ``jobsys_guard_storage_errors_total{guard="throttle"}``.

Redis keys, for throttle ``name`` and key ``key``::

    jobsys:throttle:{name}:{key}:window    hash "<bucket>:n" / "<bucket>:e" -> outcomes / errors
    jobsys:throttle:{name}:{key}:state     hash limit, changed (time of the last change)
    jobsys:throttle:{name}:{key}:holders   sorted set holder -> lease expiry

Errors::

    Refused (jobsys.guards)
    └── Throttled(key, retry_after)   reason "throttled", retryable: retry later, not fail
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from typing import Any

import structlog
from redis.exceptions import RedisError

from jobsys.guards import Refused
from jobsys.guards.metrics import STORAGE_ERRORS, THROTTLE_LIMIT, per_user

log = structlog.get_logger("jobsys.guards")

_BUCKETS = 6  # the window in six buckets: it slides in steps of window / 6
_STATE_TTL = 86_400  # s; a key without outcomes for a day starts again from maximum
_RETRY_CAP = 5.0  # s; the longest retry_after a Throttled carries

# Prefixes both scripts: ARGV[1] is now in seconds, "" for Redis TIME; the stored limit is clamped
# to [minimum, maximum] on read, so a redeploy with other bounds takes effect at once.
_CLOCK = """
local now = tonumber(ARGV[1])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local function current_limit(state, minimum, maximum)
  local limit = tonumber(redis.call('HGET', state, 'limit') or maximum)
  return math.max(minimum, math.min(maximum, limit))
end
"""

# KEYS = window, state; ARGV = now, ok (1/0), bucket width (s), buckets, minimum, maximum,
# threshold, min_samples, cooldown (s), state ttl (s). Returns {old, new, errors, samples}.
_RECORD = """
local width, buckets = tonumber(ARGV[3]), tonumber(ARGV[4])
local minimum, maximum = tonumber(ARGV[5]), tonumber(ARGV[6])
local threshold, min_samples, cooldown = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local cur = math.floor(now / width)
redis.call('HINCRBY', KEYS[1], cur .. ':n', 1)
if ARGV[2] == '0' then redis.call('HINCRBY', KEYS[1], cur .. ':e', 1) end
redis.call('EXPIRE', KEYS[1], math.ceil(width * buckets) + 1)
local samples, errors = 0, 0
local fields = redis.call('HGETALL', KEYS[1])
for i = 1, #fields, 2 do
  local bucket, count = string.match(fields[i], '^(.+):(%a)$')
  bucket = tonumber(bucket)
  if bucket <= cur - buckets then redis.call('HDEL', KEYS[1], fields[i])
  elseif bucket <= cur and count == 'n' then samples = samples + tonumber(fields[i + 1])
  elseif bucket <= cur then errors = errors + tonumber(fields[i + 1]) end
end
local limit = current_limit(KEYS[2], minimum, maximum)
local new, changed = limit, tonumber(redis.call('HGET', KEYS[2], 'changed') or '')
if samples >= min_samples and (not changed or now - changed >= cooldown) then
  if errors / samples > threshold then new = math.max(minimum, math.floor(limit / 2))
  elseif errors / samples <= threshold / 2 then new = math.min(maximum, limit + 1) end
end
if new ~= limit then redis.call('HSET', KEYS[2], 'limit', new, 'changed', tostring(now)) end
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[10]))
return {limit, new, errors, samples}
"""

# KEYS = holders, state; ARGV = now, holder, lease (s), minimum, maximum. Returns 1 admitted.
_ENTER = """
local lease = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local admitted = redis.call('ZSCORE', KEYS[1], ARGV[2])
if not admitted then
  local limit = current_limit(KEYS[2], tonumber(ARGV[4]), tonumber(ARGV[5]))
  admitted = redis.call('ZCARD', KEYS[1]) < limit
end
if not admitted then return 0 end
redis.call('ZADD', KEYS[1], now + lease, ARGV[2])
redis.call('EXPIRE', KEYS[1], math.ceil(lease) + 1)
return 1
"""


class Throttled(Refused):
    """Every slot of the key's concurrency limit is held; try again after ``retry_after`` s."""

    reason = "throttled"
    template = "concurrency limit of {key!r} reached"


@dataclasses.dataclass(frozen=True)
class Adjustment:
    """A change of a key's limit, with the window that drove it."""

    key: str
    old: int
    new: int
    error_rate: float
    samples: int


class ConcurrencyThrottle:
    """An adaptive concurrency limit in ``[minimum, maximum]`` applied per key.

    Parameters:
        redis: a ``redis.Redis`` client.
        name: names the throttle in Redis keys, logs and metrics.
        maximum, minimum: bounds of the limit; an unset limit is ``maximum``.
        threshold: the error rate above which the limit halves; at or below half of
            it the limit grows by one.
        window: seconds of outcomes the error rate is taken over.
        min_samples: outcomes the window must hold before the limit may change.
        cooldown: seconds between two changes of a key's limit; by default ``window``,
            so each change is judged on outcomes seen after the previous one.
        lease: seconds a slot is held without ``leave`` before it is dropped.

    Raises:
        ValueError: an argument outside its range (the message names it, its value and the rule).
    """

    def __init__(
        self,
        redis: Any,
        *,
        name: str,
        maximum: int,
        minimum: int = 1,
        threshold: float = 0.15,
        window: float = 60.0,
        min_samples: int = 20,
        cooldown: float | None = None,
        lease: float = 300.0,
    ) -> None:
        self.name, self.maximum, self.minimum = name, maximum, minimum
        self.threshold, self.window, self.min_samples = threshold, window, min_samples
        self.cooldown, self.lease = window if cooldown is None else cooldown, lease
        _validate(self)  # on the values as given, so that the messages show them
        self.threshold, self.window = float(threshold), float(window)
        self.cooldown, self.lease = float(self.cooldown), float(lease)
        # A slot frees when some call ends, which the throttle cannot foresee: retry soon,
        # but not so soon that waiting callers poll Redis in a loop.
        self.retry_after = min(_RETRY_CAP, self.window / 12)
        self._record = redis.register_script(_CLOCK + _RECORD)
        self._enter = redis.register_script(_CLOCK + _ENTER)
        self._redis = redis

    def record(self, key: str, *, ok: bool, now: float | None = None) -> Adjustment | None:
        """Count one outcome of a call under ``key`` and adapt its limit; one round trip.

        Parameters:
            ok: False for a failure that signals overload (5xx, 429, timeout).
            now: the time in seconds; Redis's clock when None.

        Returns:
            The change of the limit this outcome caused, or None (also when Redis is down).
        """
        args = [_clock(now), int(ok), self.window / _BUCKETS, _BUCKETS, self.minimum]
        args += [self.maximum, repr(self.threshold), self.min_samples, self.cooldown, _STATE_TTL]
        keys = [self._key(key, "window"), self._key(key, "state")]
        try:
            reply = self._record(keys=keys, args=args)
        except RedisError as e:
            self._unavailable("record", key, e)
            return None
        old, new, errors, samples = (int(v) for v in reply)
        if old == new:
            return None
        adjustment = Adjustment(key, old, new, errors / samples, samples)
        if not per_user(key):  # a user's limit has no series of its own
            THROTTLE_LIMIT.labels(throttle=self.name, key=key).set(new)
        facts = dataclasses.asdict(adjustment) | {
            "window": self.window,
            "threshold": self.threshold,
        }
        log.info("throttle.adjust", name=self.name, **facts)
        return adjustment

    def limit(self, key: str) -> int:
        """The key's current limit: ``maximum`` when unset, or when Redis is down."""
        try:
            stored = self._redis.hget(self._key(key, "state"), "limit")
        except RedisError as e:
            self._unavailable("limit", key, e)
            return self.maximum
        return self.maximum if stored is None else max(self.minimum, min(self.maximum, int(stored)))

    def try_enter(self, key: str, holder: str, *, now: float | None = None) -> bool:
        """Take a slot of ``key`` for ``holder`` if one is free; one round trip.

        A holder that already holds a slot keeps it and its lease restarts.

        Returns:
            True when admitted (also when Redis is down), False when every slot is held.
        """
        args = [_clock(now), holder, self.lease, self.minimum, self.maximum]
        keys = [self._key(key, "holders"), self._key(key, "state")]
        try:
            admitted = self._enter(keys=keys, args=args)
        except RedisError as e:
            self._unavailable("try_enter", key, e)
            return True
        return bool(int(admitted))

    def leave(self, key: str, holder: str) -> None:
        """Give back ``holder``'s slot of ``key``; a slot not held is ignored."""
        try:
            self._redis.zrem(self._key(key, "holders"), holder)
        except RedisError as e:
            self._unavailable("leave", key, e)

    @contextlib.contextmanager
    def slot(self, key: str, holder: str) -> Iterator[None]:
        """Hold a slot of ``key`` for the block, released on exit, also on an exception.

        The slot is released on the block's exit even if ``holder`` held it before:
        re-entry refreshes a lease, it does not nest.

        Raises:
            Throttled: every slot is held; ``retry_after`` is ``min(5, window / 12)`` s.
        """
        if not self.try_enter(key, holder):
            raise Throttled(f"jobsys:throttle:{self.name}:{key}", self.retry_after)
        try:
            yield
        finally:
            self.leave(key, holder)

    def _unavailable(self, op: str, key: str, error: RedisError) -> None:
        STORAGE_ERRORS.labels(guard="throttle").inc()
        reason = f"{type(error).__name__}: {error}"  # no traceback: an outage, not a bug
        log.warning("throttle.storage_unavailable", name=self.name, key=key, op=op, error=reason)

    def _key(self, key: str, part: str) -> str:
        return f"jobsys:throttle:{self.name}:{key}:{part}"


def _clock(now: float | None) -> str:
    return "" if now is None else repr(float(now))


def _validate(t: ConcurrencyThrottle) -> None:
    rules = [
        ("name", t.name, bool(t.name), "must not be empty"),
        ("maximum", t.maximum, t.maximum >= 1, "must be at least 1"),
        ("minimum", t.minimum, 1 <= t.minimum <= t.maximum, f"must be in [1, maximum={t.maximum}]"),
        ("threshold", t.threshold, 0 < t.threshold < 1, "must be an error rate in (0, 1)"),
        ("window", t.window, t.window > 0, "must be positive seconds"),
        ("min_samples", t.min_samples, t.min_samples >= 1, "must be at least 1"),
        ("cooldown", t.cooldown, t.cooldown >= 0, "must be zero or positive seconds"),
        ("lease", t.lease, t.lease > 0, "must be positive seconds"),
    ]
    for argument, value, valid, rule in rules:
        if not valid:
            raise ValueError(f"{argument} {rule}, got {value!r}")
