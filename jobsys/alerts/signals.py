"""The signals alerting watches: how each one fires, and reading them all at an instant.

Every SQL signal is read by :mod:`jobsys.store.signals` (one statement); breaker
openings come from the breakers' history in Redis (:func:`jobsys.guards.breaker.openings`).

| signal | subject | value | fires only above |
|---|---|---|---|
| ``error_rate`` | kind | failed attempts / attempts ended in the window | 10 %, 2x baseline |
| ``start_latency_p95`` | queue | p95 of claim - due time of attempts claimed | 5 s, 3x baseline |
| ``duration_p95`` | kind | p95 run time of attempts that succeeded | 1 s, 3x baseline |
| ``oldest_queued`` | queue | age of the oldest due queued job, s | 60 s, 3x baseline |
| ``dead_letters`` | ``*`` | dead letters written in the window | 3 |
| ``stale_users`` | ``*`` | unpaused users without a successful sync within the SLO | 2 |
| ``breaker_openings`` | breaker scope | transitions to open in the window | 2 |

The three counts start from a baseline of zero (there is nothing to learn before
an incident can fire); the others learn ``JOBSYS_ALERT_MIN_SAMPLES`` values first.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime

import redis
import structlog

from jobsys.alerts.detector import Policy, Series
from jobsys.config import Settings
from jobsys.engine.runtime import Runtime
from jobsys.guards.breaker import openings
from jobsys.store import signals as sql

BREAKER_OPENINGS = "breaker_openings"
log = structlog.get_logger("jobsys.alerts")


@dataclasses.dataclass(frozen=True)
class Signal:
    """A signal's firing bounds and unit."""

    floor: float
    ratio: float
    unit: str
    zero_prior: bool = False  # a count: its baseline starts at 0, already warm


CATALOGUE: dict[str, Signal] = {
    sql.ERROR_RATE: Signal(0.1, 2.0, "ratio"),
    sql.START_LATENCY: Signal(5.0, 3.0, "s"),
    sql.DURATION: Signal(1.0, 3.0, "s"),
    sql.OLDEST_QUEUED: Signal(60.0, 3.0, "s"),
    sql.DEAD_LETTERS: Signal(3.0, 1.0, "count", zero_prior=True),
    sql.STALE_USERS: Signal(2.0, 1.0, "count", zero_prior=True),
    BREAKER_OPENINGS: Signal(2.0, 1.0, "count", zero_prior=True),
}


def policy(signal: Signal, settings: Settings) -> Policy:
    """The detector's policy for a signal under these settings."""
    return Policy(
        floor=signal.floor,
        ratio=signal.ratio,
        k=settings.alert_sensitivity,
        k_resolve=settings.alert_sensitivity / 2,
        min_samples=settings.alert_min_samples,
        fire_after=settings.alert_fire_after,
        resolve_after=settings.alert_resolve_after,
    )


def fresh(signal: Signal, settings: Settings) -> Series:
    """A series seen for the first time."""
    if not signal.zero_prior:
        return Series()
    n = settings.alert_min_samples
    return Series(n=n, level=0.0, recent=(0.0,) * n)


def read(rt: Runtime, now: datetime) -> dict[tuple[str, str], float]:
    """Every signal's value per subject at ``now`` (missing: no value in the window)."""
    s = rt.settings
    window = sql.Window(
        now=now,
        seconds=s.alert_window,
        min_volume=s.alert_min_volume,
        freshness_slo=s.freshness_slo,
    )
    values = sql.read_signals(rt.postgres, window)
    try:
        client = redis.Redis.from_url(rt.urls.broker, socket_timeout=5, socket_connect_timeout=5)
        try:
            found = openings(client, now.timestamp() - s.alert_window, now.timestamp())
        finally:
            client.close()
    except redis.RedisError as e:
        # The other signals are still worth judging; breakers are missing this time.
        log.warning("alerts.breakers_unreadable", error=str(e))
        found = {}
    values.update({(BREAKER_OPENINGS, name): float(n) for name, n in found.items()})
    return values
