"""Per-user quotas on enqueues: queued jobs held, and enqueues in the last hour.

A quota is checked and charged in the transaction that inserts the jobs, under
a per-user advisory lock, so concurrent enqueues of one user never pass a limit
together. Only users with a limit pay for it: an override in ``user_limits``,
or a default from the settings (:class:`Quota`).

Enqueues in the last hour are counted in per-minute buckets (``quota_usage``):
a bucket counts until an hour after its minute began, so a refused caller is
told the minute its enqueues age out. Usage is recorded only while a user has
an hourly limit: a limit set later starts from an empty hour.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from jobsys.errors import QuotaExceeded
from jobsys.store.fastpath import compiled

LIMITED = sa.text(
    "SELECT user_id, max_queued, max_per_hour FROM user_limits"
    " WHERE user_id = ANY(CAST(:users AS text[]))"
    " AND (max_queued IS NOT NULL OR max_per_hour IS NOT NULL)"
)
# Taken in user order, so two batches naming the same users never deadlock.
_LOCK = sa.text(
    "SELECT pg_advisory_xact_lock(hashtextextended('jobsys.quota:' || u, 0))"
    " FROM (SELECT u FROM unnest(CAST(:users AS text[])) u ORDER BY u) s"
)
_QUEUED = sa.text(
    "SELECT user_id, count(*) AS n FROM jobs"
    " WHERE user_id = ANY(CAST(:users AS text[])) AND status = 'queued' GROUP BY user_id"
)
_USAGE = sa.text(
    "SELECT user_id, minute, n FROM quota_usage WHERE user_id = ANY(CAST(:users AS text[]))"
    " AND minute > now() - interval '1 hour' ORDER BY user_id, minute"
)
_CHARGE = sa.text(
    """
WITH pruned AS (
  DELETE FROM quota_usage
  WHERE user_id = ANY(CAST(:users AS text[])) AND minute <= now() - interval '1 hour')
INSERT INTO quota_usage AS q (user_id, minute, n)
SELECT u, date_trunc('minute', now()), n
FROM unnest(CAST(:users AS text[]), CAST(:counts AS integer[])) AS a(u, n)
ON CONFLICT (user_id, minute) DO UPDATE SET n = q.n + EXCLUDED.n
"""
)
LIST_LIMITS = sa.text("SELECT user_id, weight, max_queued, max_per_hour FROM user_limits")
# What ``set_limits`` may change, and each one's value when set back to its default.
LIMIT_DEFAULTS: dict[str, Any] = {"weight": 1.0, "max_queued": None, "max_per_hour": None}

_SQL = {
    name: compiled(stmt)
    for name, stmt in {
        "limited": LIMITED,
        "lock": _LOCK,
        "queued": _QUEUED,
        "usage": _USAGE,
        "charge": _CHARGE,
    }.items()
}
_HOUR = timedelta(hours=1)


@dataclasses.dataclass(frozen=True)
class Quota:
    """Limits for users without an override (None: unlimited), from the settings."""

    max_queued: int | None = None
    max_per_hour: int | None = None

    @property
    def limits_everyone(self) -> bool:
        return self.max_queued is not None or self.max_per_hour is not None


class QuotaSql:
    """Users' weights and quotas; mixed into the gateway, :class:`Store`."""

    transaction: Callable[[], AbstractContextManager[sa.Connection]]

    def set_limits(self, user_id: str, changes: Mapping[str, Any]) -> None:
        """Override some of ``weight``, ``max_queued``, ``max_per_hour`` for a user
        (None: back to the default)."""
        names = names_of(changes)
        values = {n: LIMIT_DEFAULTS[n] if changes[n] is None else changes[n] for n in names}
        columns = ", ".join(names)
        sql = sa.text(
            f"INSERT INTO user_limits (user_id, {columns})"
            f" VALUES (:user_id, {', '.join(':' + n for n in names)})"
            " ON CONFLICT (user_id) DO UPDATE SET updated_at = now(), "
            + ", ".join(f"{n} = EXCLUDED.{n}" for n in names)
        )
        with self.transaction() as conn:
            conn.execute(sql, {"user_id": user_id, **values})

    def user_limits(self) -> dict[str, dict[str, Any]]:
        """Every override, by user id."""
        with self.transaction() as conn:
            return {r["user_id"]: dict(r) for r in conn.execute(LIST_LIMITS).mappings()}


def names_of(changes: Mapping[str, Any]) -> list[str]:
    unknown = sorted(set(changes) - set(LIMIT_DEFAULTS))
    if unknown:
        raise ValueError(f"unknown limits {unknown}: known are {sorted(LIMIT_DEFAULTS)}")
    return sorted(changes)


def asked(user_ids: Iterable[str]) -> dict[str, int]:
    """Jobs asked for per user."""
    return dict(Counter(user_ids))


def charge(cur: Any, wanted: Mapping[str, int], defaults: Quota) -> None:
    """Check and charge ``wanted`` jobs per user on ``cur``'s open transaction.

    Raises:
        QuotaExceeded: for the first user (in id order) over a limit; the
            caller rolls back, so nothing is stored or charged.
    """
    users = sorted(wanted)
    limits = _limits(cur, users, defaults)
    if not limits:
        return
    limited = sorted(limits)
    cur.execute(_SQL["lock"], {"users": limited})
    _check_queued(cur, wanted, {u: q for u, (q, _) in limits.items() if q is not None})
    hourly = {u: h for u, (_, h) in limits.items() if h is not None}
    if hourly:
        _check_hourly(cur, wanted, hourly)
        spent = sorted(hourly)
        cur.execute(_SQL["charge"], {"users": spent, "counts": [wanted[u] for u in spent]})


def _limits(
    cur: Any, users: list[str], defaults: Quota
) -> dict[str, tuple[int | None, int | None]]:
    cur.execute(_SQL["limited"], {"users": users})
    overrides = {row[0]: (row[1], row[2]) for row in cur.fetchall()}
    limits = {}
    for user in users:
        queued, hourly = overrides.get(user, (None, None))
        queued = defaults.max_queued if queued is None else queued
        hourly = defaults.max_per_hour if hourly is None else hourly
        if queued is not None or hourly is not None:
            limits[user] = (queued, hourly)
    return limits


def _check_queued(cur: Any, wanted: Mapping[str, int], limits: dict[str, int]) -> None:
    if not limits:
        return
    users = sorted(limits)
    cur.execute(_SQL["queued"], {"users": users})
    held = {row[0]: row[1] for row in cur.fetchall()}
    for user in users:
        used = held.get(user, 0)
        if used + wanted[user] > limits[user]:
            raise QuotaExceeded(user, "max_queued", limits[user], used=used, asked=wanted[user])


def _check_hourly(cur: Any, wanted: Mapping[str, int], limits: dict[str, int]) -> None:
    users = sorted(limits)
    cur.execute(_SQL["usage"], {"users": users})
    buckets: dict[str, list[tuple[datetime, int]]] = {u: [] for u in users}
    for user, minute, n in cur.fetchall():
        buckets[user].append((minute, n))
    for user in users:
        spent = sum(n for _, n in buckets[user])
        limit, want = limits[user], wanted[user]
        if spent + want > limit:
            frees = frees_at(buckets[user], spent + want - limit) if want <= limit else None
            raise QuotaExceeded(user, "max_per_hour", limit, used=spent, asked=want, frees_at=frees)


def frees_at(buckets: list[tuple[datetime, int]], excess: int) -> datetime | None:
    """When the oldest buckets holding ``excess`` enqueues have aged out of the hour."""
    gone = 0
    for minute, n in buckets:
        gone += n
        if gone >= excess:
            return minute + _HOUR
    return None
