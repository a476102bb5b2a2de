"""The guards around one user's Google calls, configured from :class:`Settings`.

Per call: spend the method's quota units for the user and for the project
(waiting up to ``quota_max_wait``), pass the user's breaker (auth failures)
and the provider's breaker (5xx, timeouts, connection errors), then learn from
the answer: a 429 holds the user's quota key for its Retry-After, and every
outcome feeds the ingestion throttle's error window. Ingestion jobs hold a
slot of the provider's adaptive concurrency limit while they run. (How many of
one user's ingestions run at once is their kinds' concurrency key, held in
PostgreSQL at admission: a job over it waits in the backlog, not here.)

A guard that refuses (quota spent, breaker open, no slot) postpones the job to
when it may pass: :func:`postponing` turns the refusal into ``JobPostponed``.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import structlog
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from jobsys.config import Settings
from jobsys.connectors.google.costs import api_of, units
from jobsys.connectors.google.errors import AuthError, GoogleError, QuotaError, TransientError
from jobsys.engine.runtime import Runtime
from jobsys.errors import JobPostponed
from jobsys.guards import Refused
from jobsys.guards.batching import AdaptiveBatch, Observation
from jobsys.guards.breaker import SharedBreaker
from jobsys.guards.fuse import FusedRedis
from jobsys.guards.metrics import PROVIDER_THROTTLED, RATE_LIMITED
from jobsys.guards.ratelimit import RateLimited, RateLimiter
from jobsys.guards.throttle import ConcurrencyThrottle

T = TypeVar("T")
log = structlog.get_logger("jobsys.guards")
PROVIDER = "google"
GMAIL_GET_UNITS = units("gmail.users.messages.get")
QUOTA_DEFAULT_WAIT = 30.0  # s, after a 429 without Retry-After
FIXED_BATCH = 50  # messages.get per batch with the guards off (Gmail's advice)


class _PartsFailed(Exception):
    """A batch answered, but some parts failed in a way a breaker must count."""

    def __init__(self, result: Any, error: GoogleError) -> None:
        super().__init__(str(error))
        self.result, self.error = result, error


def _counting(kind: type[GoogleError]) -> Callable[[BaseException], bool]:
    """A breaker's predicate: failures of ``kind``, raised or inside a batch's parts."""

    def counts(e: BaseException) -> bool:
        return isinstance(e.error if isinstance(e, _PartsFailed) else e, kind)

    return counts


# (api, scope) -> the settings that give its rate and burst
_LIMITS = {
    ("gmail", "user"): ("gmail_user_units_per_second", "gmail_user_burst_units"),
    ("gmail", "project"): ("gmail_project_units_per_second", "gmail_project_burst_units"),
    ("calendar", "user"): ("calendar_user_requests_per_second", "calendar_user_burst"),
    ("calendar", "project"): ("calendar_project_requests_per_second", "calendar_project_burst"),
}


class Guards:
    """This process's guards, shared by every user's calls; state lives in Redis."""

    def __init__(self, settings: Settings, client: Any) -> None:
        self.settings, self.redis = settings, client
        s = settings
        self.limits = {
            (api, scope): RateLimiter(
                client, name=f"{api}-{scope}", rate=getattr(s, rate), burst=getattr(s, burst)
            )
            for (api, scope), (rate, burst) in _LIMITS.items()
        }
        self.provider = SharedBreaker(
            client,
            PROVIDER,
            fail_max=s.breaker_fail_max,
            reset_timeout=s.breaker_reset_timeout,
            counts=_counting(TransientError),
        )
        self._users: dict[str, SharedBreaker] = {}
        self._lock = threading.Lock()
        self.batches = AdaptiveBatch(client, "gmail.messages.get", **_batch_bounds(s))
        throttle: dict[str, Any] = {
            "threshold": s.throttle_error_rate,
            "window": s.throttle_window,
            "min_samples": s.throttle_min_samples,
        }
        self.provider_slots = ConcurrencyThrottle(
            client, name="ingest-provider", maximum=s.ingest_provider_concurrency, **throttle
        )

    def user_breaker(self, user_id: str) -> SharedBreaker:
        with self._lock:
            found = self._users.get(user_id)
            if found is None:
                found = self._users[user_id] = SharedBreaker(
                    self.redis,
                    f"{PROVIDER}:user:{user_id}",
                    fail_max=self.settings.user_breaker_fail_max,
                    reset_timeout=self.settings.user_breaker_reset_timeout,
                    counts=_counting(AuthError),
                )
            return found


def _batch_bounds(s: Settings) -> dict[str, Any]:
    # A batch must fit in both bursts, or its units could never be acquired at once.
    burst = min(s.gmail_user_burst_units, s.gmail_project_burst_units)
    maximum = max(1, min(s.batch_max, int(burst // GMAIL_GET_UNITS)))
    return {
        "minimum": min(s.batch_min, maximum),
        "maximum": maximum,
        "step": s.batch_step,
        "target": s.batch_latency_target,
    }


def guards(rt: Runtime) -> Guards:
    """The runtime's guards in this process, built on first use (never across a fork)."""
    return rt.state(Guards, _build_guards)


def _build_guards(rt: Runtime) -> Guards:
    # Short timeouts, one quick retry and a fuse: a guard that cannot reach Redis
    # fails safe at once rather than stalling the call it guards (redis-py's
    # default retries take seconds).
    client = FusedRedis.from_url(
        rt.urls.broker,
        socket_timeout=0.5,
        socket_connect_timeout=0.5,
        retry=Retry(ExponentialBackoff(cap=0.2, base=0.05), 1),
    )
    return Guards(rt.settings, client)


def reset_user_breaker(rt: Runtime, user_id: str) -> None:
    """Close the user's breaker: their credentials were renewed.

    Raises:
        redis.exceptions.RedisError: Redis cannot be reached.
    """
    shared = guards(rt)
    shared.redis.ping()  # a breaker fails safe on its own; here the caller must know it failed
    shared.user_breaker(user_id).reset()


class GoogleGuard:
    """The :class:`~jobsys.connectors.google.clients.Guard` for one user's calls."""

    def __init__(self, shared: Guards, user_id: str) -> None:
        self._g, self.user_id = shared, user_id
        self._user_key = f"user:{user_id}"

    def call(
        self,
        method: str,
        count: int,
        fn: Callable[[], T],
        *,
        part_errors: Callable[[T], Iterable[GoogleError]] | None = None,
    ) -> T:
        api = api_of(method)

        def attempt() -> T:
            result = fn()
            errors = list(part_errors(result)) if part_errors else []
            self._learn(api, errors)
            counted = _breaking(errors, count)
            if counted:
                raise _PartsFailed(result, counted[0])
            return result

        user = self._g.user_breaker(self.user_id)
        # Both breakers admit (or refuse) before quota is spent and anything is called.
        with user.admitted() as as_user, self._g.provider.admitted() as as_provider:
            self._spend(api, units(method, count))
            try:
                return as_provider.call(lambda: as_user.call(attempt))
            except _PartsFailed as e:
                return e.result  # type: ignore[no-any-return]  # what attempt() returned
            except GoogleError as e:
                self._learn(api, [e])
                raise

    def _spend(self, api: str, cost: int) -> None:
        wait = self._g.settings.quota_max_wait
        for scope, key in (("user", self._user_key), ("project", "project")):
            limiter = self._g.limits[(api, scope)]
            try:
                limiter.acquire(key, cost, max_wait=wait, sleep=_counted_sleep(limiter.name))
            except RateLimited:
                RATE_LIMITED.labels(limiter.name, "postponed").inc()
                raise

    def _learn(self, api: str, errors: list[GoogleError]) -> None:
        quota = [e for e in errors if isinstance(e, QuotaError)]
        for scope in sorted({quota_scope(e) for e in quota}):
            mine = [e for e in quota if quota_scope(e) == scope]
            hold = max((e.retry_after or 1.0) for e in mine)
            key = self._user_key if scope == "user" else "project"
            limiter = self._g.limits[(api, scope)]
            limiter.penalize(key, hold)
            PROVIDER_THROTTLED.labels(limiter.name).inc(len(mine))
            log.warning(
                "ratelimit.feedback",
                limit=limiter.name,
                key=key,
                answered_429=len(mine),
                hold=hold,
            )
        ok = not any(isinstance(e, QuotaError | TransientError) for e in errors)
        self._g.provider_slots.record(PROVIDER, ok=ok)


def _breaking(part_errors: list[GoogleError], parts: int) -> list[GoogleError]:
    """The failures in a batch's parts that a breaker counts as one failed call.

    Any auth failure; 5xx parts only when at least half the parts failed: a few
    failed parts are noise, retried on their own, and an outage fails them all.
    """
    auth: list[GoogleError] = [e for e in part_errors if isinstance(e, AuthError)]
    transient: list[GoogleError] = [e for e in part_errors if isinstance(e, TransientError)]
    return auth or (transient if 2 * len(transient) >= parts else [])


def quota_scope(error: QuotaError) -> str:
    """Whose quota a 429 is about: Google says ``userRateLimitExceeded`` for the user's,
    ``rateLimitExceeded``/``quotaExceeded``/``dailyLimitExceeded`` for the project's."""
    return "user" if error.api_reason in ("userRateLimitExceeded", "") else "project"


def _counted_sleep(name: str) -> Callable[[float], None]:
    def sleep(seconds: float) -> None:
        RATE_LIMITED.labels(name, "waited").inc()
        time.sleep(seconds)

    return sleep


@dataclass(frozen=True)
class BatchSizer:
    """The messages.get batch size for one user: adaptive with the guards, else fixed."""

    batches: AdaptiveBatch | None
    user_id: str

    def size(self) -> int:
        return self.batches.size(self.user_id) if self.batches else FIXED_BATCH

    def observe(self, seen: Observation) -> None:
        if self.batches:
            self.batches.observe(self.user_id, seen)


@contextlib.contextmanager
def ingesting(rt: Runtime, job_id: uuid.UUID) -> Iterator[None]:
    """Hold a slot of the provider's ingestion limit; guards' refusals postpone the job.

    The per-user limit is not held here: the ingestion kinds' concurrency key
    (``ingest:{user_id}``) kept the job in the backlog until the user had room.

    The job holds the slot, not the process: a process killed mid-ingestion
    leaves its slot behind until its lease runs out (minutes), and the job's
    next attempt, wherever it runs, takes it back at once instead of waiting
    behind it.

    Raises:
        JobPostponed: the provider's slots, the quota or a breaker said not yet.
    """
    if not rt.settings.guards:
        yield
        return
    with postponing(), guards(rt).provider_slots.slot(PROVIDER, f"job:{job_id}"):
        yield


@contextlib.contextmanager
def postponing() -> Iterator[None]:
    """Turn a refusal into ``JobPostponed`` after the refuser's delay, plus jitter.

    A 429 that got past the limiter postpones too: the quota says when, so the
    attempt is not spent. Jitter keeps jobs refused together from all coming
    back at the same instant.
    """
    try:
        yield
    except Refused as e:
        raise JobPostponed(str(e), delay=_jitter(e.retry_after or 0.0), reason=e.reason) from e
    except QuotaError as e:
        # No Retry-After (e.g. a daily limit): come back in a while, not in a second.
        delay = _jitter(e.retry_after if e.retry_after is not None else QUOTA_DEFAULT_WAIT)
        raise JobPostponed(str(e), delay=delay, reason=e.reason) from e


def _jitter(delay: float) -> float:
    return delay * random.uniform(1.0, 1.1) + random.uniform(0.0, 0.25)
