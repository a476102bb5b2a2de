"""Quotas and weights for the in-memory store: the same rules as ``quotas.py``."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from jobsys.errors import QuotaExceeded
from jobsys.store.quotas import LIMIT_DEFAULTS, Quota, frees_at, names_of
from jobsys.store.records import Job
from jobsys.store.status import Status

_HOUR = timedelta(hours=1)


class MemoryQuotas:
    """Per-user overrides and per-minute usage; mixed into ``MemoryStore``."""

    jobs: dict[uuid.UUID, Job]
    clock: Callable[[], datetime]
    _lock: threading.RLock

    def _init_quotas(self) -> None:
        self.limits: dict[str, dict[str, Any]] = {}
        self.usage: dict[str, dict[datetime, int]] = {}

    def set_limits(self, user_id: str, changes: Mapping[str, Any]) -> None:
        names = names_of(changes)
        with self._lock:
            row = self.limits.setdefault(user_id, {"user_id": user_id, **LIMIT_DEFAULTS})
            for name in names:
                row[name] = LIMIT_DEFAULTS[name] if changes[name] is None else changes[name]

    def user_limits(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {u: dict(row) for u, row in self.limits.items()}

    def _weight(self, user_id: str) -> float:
        return float(self.limits.get(user_id, {}).get("weight", 1.0))

    def _charge(self, wanted: Mapping[str, int], defaults: Quota) -> None:
        """Check, then charge, under the store's lock (the caller holds it)."""
        now = self.clock()
        hourly: dict[str, int] = {}
        for user in sorted(wanted):
            row = self.limits.get(user, {})
            queued = row.get("max_queued") or defaults.max_queued
            per_hour = row.get("max_per_hour") or defaults.max_per_hour
            if queued is not None:
                self._check_queued(user, queued, wanted[user])
            if per_hour is not None:
                self._check_hourly(user, per_hour, wanted[user], now)
                hourly[user] = wanted[user]
        minute = now.replace(second=0, microsecond=0)
        for user, n in hourly.items():
            spent = self.usage.setdefault(user, {})
            spent[minute] = spent.get(minute, 0) + n

    def _check_queued(self, user: str, limit: int, want: int) -> None:
        used = sum(1 for j in self.jobs.values() if j.user_id == user and j.status is Status.QUEUED)
        if used + want > limit:
            raise QuotaExceeded(user, "max_queued", limit, used=used, asked=want)

    def _check_hourly(self, user: str, limit: int, want: int, now: datetime) -> None:
        spent = self.usage.setdefault(user, {})
        for minute in [m for m in spent if m <= now - _HOUR]:
            del spent[minute]
        buckets = sorted(spent.items())
        used = sum(n for _, n in buckets)
        if used + want > limit:
            frees = frees_at(buckets, used + want - limit) if want <= limit else None
            raise QuotaExceeded(user, "max_per_hour", limit, used=used, asked=want, frees_at=frees)
