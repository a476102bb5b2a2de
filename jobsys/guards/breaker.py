"""Circuit breakers shared by every worker: pybreaker with its state in Redis.

A breaker counts the failures its ``counts`` predicate accepts (others count as
successes), opens after ``fail_max`` of them in a row, refuses calls for
``reset_timeout`` seconds, then lets exactly one caller, cluster-wide, make a
trial call: the holder of a short Redis lock. The trial's success closes it,
its failure opens it for another period. Every transition is appended to a
short history in Redis, which ``jobsys breakers`` shows.

When Redis cannot be reached the breaker fails safe: it keeps a breaker of the
same settings in process memory, so a dead provider is still not hammered,
and says so in the log (``breaker.storage_unavailable``) and in the
``jobsys_guard_storage_errors_total{guard="breaker"}`` metric.

Errors::

    Refused (jobsys.guards)
    └── BreakerOpen(name, retry_after)   reason "breaker_open", retryable: postpone, not fail
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import pybreaker
import structlog
from redis.exceptions import RedisError

from jobsys.guards import Refused
from jobsys.guards.metrics import (
    BREAKER_REJECTED,
    BREAKER_STATE,
    STORAGE_ERRORS,
    per_user,
    scope,
)

T = TypeVar("T")
log = structlog.get_logger("jobsys.guards")
NAMESPACE = "jobsys:breaker"
HISTORY = 50  # transitions kept per breaker
# Seconds a refused caller waits while another one makes the trial call.
TRIAL_WAIT = 1.0


class BreakerOpen(Refused):
    """The breaker refuses calls; it may let one through after ``retry_after`` seconds."""

    reason = "breaker_open"
    template = "circuit breaker {key!r} is open"

    @property
    def name(self) -> str:
        """The breaker's name (its key)."""
        return self.key


class _Storage(pybreaker.CircuitRedisStorage):
    """Redis storage that reports its failures instead of logging tracebacks."""

    def __init__(self, redis: Any, name: str) -> None:
        self.failed = False
        self._name = name
        self.logger = self  # type: ignore[assignment]  # pybreaker reports through .exception()
        super().__init__(pybreaker.STATE_CLOSED, redis, namespace=f"{NAMESPACE}:{name}")

    def _initialize_redis_state(self, state: str) -> None:
        try:
            super()._initialize_redis_state(state)
        except RedisError as e:
            self.exception(str(e))

    def exception(self, message: str, *args: Any) -> None:
        self.failed = True
        STORAGE_ERRORS.labels("breaker").inc()
        log.warning("breaker.storage_unavailable", breaker=self._name, detail=message)


class _Recorded(pybreaker.CircuitBreaker):
    """A breaker that records the transitions it makes (not those it merely notices).

    pybreaker tells listeners about every state a process notices in the shared
    storage, so each transition would be told once per process; the transition
    methods run only in the process that makes it.
    """

    def __init__(self, redis: Any, **settings: Any) -> None:
        super().__init__(**settings)
        self._redis = redis

    def open(self) -> bool:
        failures = self.fail_counter
        trip = super().open()
        self._record(pybreaker.STATE_OPEN, failures)
        return trip

    def half_open(self) -> None:
        super().half_open()
        self._record(pybreaker.STATE_HALF_OPEN, self.fail_counter)

    def close(self) -> None:
        super().close()
        self._record(pybreaker.STATE_CLOSED, 0)

    def _record(self, state: str, failures: int) -> None:
        name = str(self.name)
        if not per_user(name):  # a user's breaker has no series of its own
            BREAKER_STATE.labels(name).set(0 if state == pybreaker.STATE_CLOSED else 1)
        log.warning("breaker.state", breaker=name, state=state, failures=failures, by=_whoami())
        entry = {"at": time.time(), "state": state, "failures": failures, "by": _whoami()}
        key = f"{NAMESPACE}:{name}:history"
        try:
            self._redis.pipeline().lpush(key, json.dumps(entry)).ltrim(
                key, 0, HISTORY - 1
            ).execute()
        except RedisError:
            STORAGE_ERRORS.labels("breaker").inc()


@dataclass(frozen=True)
class Admission:
    """Leave to make one call through a breaker (from :meth:`SharedBreaker.admitted`)."""

    owner: SharedBreaker
    breaker: pybreaker.CircuitBreaker

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn``; its outcome counts for (or against) the breaker."""
        try:
            return self.breaker.call(fn)
        except pybreaker.CircuitBreakerError:
            # Another process opened it between admission and call.
            BREAKER_REJECTED.labels(scope(self.owner.name)).inc()
            raise BreakerOpen(self.owner.name, self.owner.remaining() or TRIAL_WAIT) from None


@dataclass(frozen=True)
class BreakerState:
    """A breaker as ``jobsys breakers`` shows it."""

    name: str
    state: str
    failures: int
    opened_at: datetime | None
    history: tuple[dict[str, Any], ...]


class SharedBreaker:
    """One named breaker whose state every worker shares through Redis.

    Parameters:
        redis: a redis-py client (bytes responses).
        name: e.g. ``google`` or ``google:user:u-1``; the Redis namespace.
        fail_max: counted failures in a row that open the breaker.
        reset_timeout: seconds it stays open before one trial call.
        counts: which exceptions are failures of what the breaker protects.

    Raises:
        ValueError: ``fail_max`` below 1 or ``reset_timeout`` not positive.
    """

    def __init__(
        self,
        redis: Any,
        name: str,
        *,
        fail_max: int,
        reset_timeout: float,
        counts: Callable[[BaseException], bool],
    ) -> None:
        if fail_max < 1:
            raise ValueError(f"fail_max must be at least 1, got {fail_max}")
        if reset_timeout <= 0:
            raise ValueError(f"reset_timeout must be positive seconds, got {reset_timeout}")
        self.name, self._redis = name, redis
        self._storage = _Storage(redis, name)
        settings: dict[str, Any] = {
            "fail_max": fail_max,
            # pybreaker stores opened_at in whole seconds (truncated): one second more
            # keeps the breaker open at least reset_timeout, never up to a second less.
            "reset_timeout": reset_timeout + 1,
            "exclude": [lambda e: not counts(e)],
            # The failure that trips the breaker is re-raised as itself, so the caller
            # still sees what went wrong; later callers get BreakerOpen.
            "throw_new_error_on_trip": False,
            "name": name,
        }
        self._shared = _Recorded(redis, state_storage=self._storage, **settings)
        self._local = pybreaker.CircuitBreaker(**settings)

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` if the breaker lets it through.

        Raises:
            BreakerOpen: the breaker is open, or another caller is making the trial call.
        """
        with self.admitted() as admission:
            return admission.call(fn)

    @contextlib.contextmanager
    def admitted(self) -> Iterator[Admission]:
        """Ask to pass before calling, so that several breakers can all be asked first.

        A refusal is raised here, before any breaker runs anything: nested breakers
        would otherwise count an inner breaker's refusal as an outer success.

        Raises:
            BreakerOpen: the breaker is open, or another caller is making the trial call.
        """
        self._storage.failed = False
        state = self._shared.current_state
        if self._storage.failed:
            yield Admission(self, self._local)
            return
        trial = None if state == pybreaker.STATE_CLOSED else self._admit_trial(state)
        try:
            yield Admission(self, self._shared)
        finally:
            if trial is not None:
                self._end_trial(trial)

    def reset(self) -> None:
        """Close the breaker (an operator fixed the cause, e.g. new credentials)."""
        self._shared.close()
        self._local.close()

    def _admit_trial(self, state: str) -> str:
        """Take the trial lock, or raise BreakerOpen: one trial call cluster-wide."""
        remaining = self.remaining() if state == pybreaker.STATE_OPEN else 0.0
        if remaining > 0:
            BREAKER_REJECTED.labels(scope(self.name)).inc()
            raise BreakerOpen(self.name, remaining)
        token = uuid.uuid4().hex
        # The lock outlives a trial that hangs, so a crashed trial cannot block forever.
        ttl = int(max(self._shared.reset_timeout, 30.0) * 1000)
        try:
            taken = self._redis.set(f"{NAMESPACE}:{self.name}:trial", token, nx=True, px=ttl)
        except RedisError:
            self._storage.exception("trial lock unavailable")
            return token
        if not taken:
            BREAKER_REJECTED.labels(scope(self.name)).inc()
            raise BreakerOpen(self.name, TRIAL_WAIT)
        log.info("breaker.trial", breaker=self.name, by=_whoami())
        return token

    def _end_trial(self, token: str) -> None:
        key = f"{NAMESPACE}:{self.name}:trial"
        try:
            if self._redis.get(key) == token.encode():
                self._redis.delete(key)
        except RedisError:
            self._storage.exception("trial lock unavailable")

    def remaining(self) -> float:
        """Seconds until an open breaker admits a trial call (0 when it may now)."""
        opened = self._storage.opened_at
        if opened is None:
            return 0.0
        until = opened.timestamp() + self._shared.reset_timeout
        return max(0.0, until - time.time())


def breaker_states(redis: Any) -> list[BreakerState]:
    """Every breaker recorded in Redis, by name.

    Raises:
        redis.exceptions.RedisError: Redis cannot be reached.
    """
    suffix = f":{pybreaker.CircuitRedisStorage.BASE_NAMESPACE}:state"
    names = sorted(
        key.decode().removeprefix(f"{NAMESPACE}:").removesuffix(suffix)
        for key in redis.scan_iter(match=f"{NAMESPACE}:*{suffix}", count=500)
    )
    return [_state_of(redis, name) for name in names]


def _state_of(redis: Any, name: str) -> BreakerState:
    prefix = f"{NAMESPACE}:{name}:{pybreaker.CircuitRedisStorage.BASE_NAMESPACE}"
    state, failures, opened, history = (
        redis.pipeline()
        .get(f"{prefix}:state")
        .get(f"{prefix}:fail_counter")
        .get(f"{prefix}:opened_at")
        .lrange(f"{NAMESPACE}:{name}:history", 0, 9)
        .execute()
    )
    return BreakerState(
        name=name,
        state=(state or b"closed").decode(),
        failures=int(failures or 0),
        opened_at=datetime.fromtimestamp(int(opened), UTC) if opened else None,
        history=tuple(json.loads(h) for h in history),
    )


def _whoami() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def openings(redis: Any, since: float, until: float) -> dict[str, int]:
    """Transitions to open in ``(since, until]`` (epoch seconds), by breaker scope (all
    users' breakers as one, ``google:user``); every scope that has a history is listed.

    Only a breaker's last ``HISTORY`` transitions are kept, so a breaker that flapped
    more often than that within the window is undercounted (it is still counted high).

    Raises:
        redis.exceptions.RedisError: Redis cannot be reached.
    """
    keys = sorted(redis.scan_iter(match=f"{NAMESPACE}:*:history", count=1000))
    found: dict[str, int] = {}
    pipe = redis.pipeline()
    for key in keys:
        pipe.lrange(key, 0, HISTORY - 1)
    for key, entries in zip(keys, pipe.execute(), strict=True):
        name = key.decode().removeprefix(f"{NAMESPACE}:").removesuffix(":history")
        events = (json.loads(e) for e in entries)
        n = sum(e["state"] == pybreaker.STATE_OPEN and since < e["at"] <= until for e in events)
        found[scope(name)] = found.get(scope(name), 0) + n
    return found
