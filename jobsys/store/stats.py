"""Business metrics read from PostgreSQL: per user, per kind and for the fleet.

Where the figures come from:

- per user, ``pipeline_runs``: runs finished in the window, their success
  rate and p95 duration (created -> finished), and the time since the user's
  last successful run (freshness), which no window bounds;
- per kind and for the fleet, ``attempts``: one row per recorded attempt,
  written by the very statement that records the attempt's outcome (a CTE of
  ``SUCCEED``, ``REQUEUE``, ``POSTPONE``, ``BURY``, ``CANCEL_RUNNING``), so
  recording a cost costs no extra round trip.

Why roll-ups beside raw rows: rows are appended in ``finished_at`` order and
every statement reads a bounded window through a btree on ``finished_at`` (or
``(user_id, finished_at)`` for a user's view), so a window costs time in
proportion to its attempts: fine for a day, 20 s for 30 days of 10 million
attempts. Whole hours that ended an hour ago are summed per hour and kind by
``rollup.py`` (run by the sweeper). A window wider than a day reads the
roll-ups for its whole hours and raw rows for its first partial hour and for
what is not rolled yet: counts, sums, success and dead-letter rates are exact
either way; its start latency p95 and SLA compliance are estimated from
histograms (bounds and error in ``rollup.py``). A window of a day or less, a
user's report and a report under row-level security read raw rows only,
exactly as before. ``bench/stats.py``
measures the statements over 10 million attempts. Old attempts can be deleted
by ``finished_at`` without touching anything else.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from jobsys.store import queries as q
from jobsys.store import roles, rollup
from jobsys.store.gateway import Store

BANDS = ("normal", "raised", "urgent")  # priority 0, 1-7, 8-9
# The outcomes that end a job: each such attempt is one job of its kind.
FINAL = ("succeeded", "dead", "cancelled")


@dataclasses.dataclass(frozen=True, kw_only=True)
class UserStats:
    user_id: str
    runs: int
    success_rate: float | None
    p95_duration_s: float | None
    # Seconds since the last successful run; None: never.
    freshness_s: float | None
    # Fresh: a successful run no older than the freshness SLO.
    fresh: bool


@dataclasses.dataclass(frozen=True, kw_only=True)
class KindStats:
    kind: str
    jobs: int
    attempts: int
    success_rate: float | None
    cpu_s_per_job: float | None
    wall_s_per_job: float | None
    requests_per_job: float | None
    units_per_job: float | None
    deadline_s: float | None
    # Share of the jobs that succeeded within the deadline; None: no deadline.
    sla_compliance: float | None


@dataclasses.dataclass(frozen=True, kw_only=True)
class FleetStats:
    jobs: int
    jobs_per_second: float
    start_latency_p95_s: dict[str, float | None]
    # Dead jobs over jobs that ended in the window, by the dead letter's reason.
    dead_letter_rate: dict[str, float]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Stats:
    window_s: float
    freshness_slo_s: float
    users: list[UserStats]
    kinds: list[KindStats]
    fleet: FleetStats

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True, kw_only=True)
class StatsQuery:
    """What to report: the last ``window`` seconds, optionally of one user or kind."""

    window: float
    freshness_slo: float
    user_id: str | None = None
    kind: str | None = None
    # Each kind's deadline in seconds (kinds without one are left out).
    deadlines: Mapping[str, float] = dataclasses.field(default_factory=dict)

    def params(self) -> dict[str, Any]:
        names = sorted(self.deadlines)
        return {
            "window": self.window,
            "user_id": self.user_id,
            "kind": self.kind,
            "kinds": names,
            "deadlines": [float(self.deadlines[k]) for k in names],
        }


class StatsSql:
    """Reads :class:`Stats`; with ``scope``, as ``jobsys_api`` for that user (row security)."""

    def __init__(self, store: Store, *, scope: str | None = None) -> None:
        self._store, self._scope = store, scope

    def _tx(self) -> AbstractContextManager[sa.Connection]:
        if self._scope is None:
            return self._store.transaction()
        return roles.scoped(self._store, self._scope)

    def read(self, query: StatsQuery) -> Stats:
        params = query.params()
        with self._tx() as conn:
            conn.execute(q.STATS_NO_JIT)
            users = conn.execute(q.STATS_USERS, params).mappings().all()
            split = self._split(conn, query)
            if split is None:
                found = _exact(conn, params)
            else:
                found = _rolled(conn, {**params, **split}, query.deadlines)
        kinds = _by_kind(found.groups)
        return Stats(
            window_s=query.window,
            freshness_slo_s=query.freshness_slo,
            users=[_user(r, query.freshness_slo) for r in users],
            kinds=[
                _kind(k, rows, query.deadlines.get(k), found.within.get(k, 0.0))
                for k, rows in sorted(kinds.items())
            ],
            fleet=_fleet(query.window, found.latency, found.groups),
        )

    def _split(self, conn: sa.Connection, query: StatsQuery) -> dict[str, datetime] | None:
        """Where the window's rolled hours start and end; None: read raw rows only."""
        # The roll-ups are nobody's rows: a user's figures, or a user's reading, stay raw.
        if self._scope is not None or query.user_id is not None:
            return None
        if query.window <= rollup.RAW_HORIZON_S:
            return None
        row = conn.execute(rollup.ROLLED_UNTIL, {"window": query.window}).one()
        if row.rolled_until is None:
            return None
        edge = _next_hour(row.start)
        if row.rolled_until <= edge:
            return None
        return {"start": row.start, "edge": edge, "rolled_until": row.rolled_until}


@dataclasses.dataclass(frozen=True)
class _Found:
    # Per kind, outcome and reason: attempts, cost sums and (raw) successes within deadline.
    groups: list[dict[str, Any]]
    latency: dict[str, float | None]
    # Per kind: successes within its deadline estimated for rolled hours.
    within: dict[str, float]


def _exact(conn: sa.Connection, params: dict[str, Any]) -> _Found:
    groups = [dict(row) for row in conn.execute(q.STATS_KINDS, params).mappings()]
    bands = conn.execute(q.STATS_LATENCY, params).mappings()
    return _Found(groups, {row["band"]: _float(row["p95"]) for row in bands}, {})


def _rolled(conn: sa.Connection, params: dict[str, Any], deadlines: Mapping[str, float]) -> _Found:
    params = {**params, "bounds": list(rollup.BOUNDS)}
    groups = [dict(row) for row in conn.execute(rollup.ROLLED_KINDS, params).mappings()]
    latency: dict[str, list[tuple[int, int]]] = {}
    for row in conn.execute(rollup.ROLLED_LATENCY, params):
        latency.setdefault(row.band, []).append((int(row.bucket), int(row.n)))
    ages: dict[str, list[tuple[int, int]]] = {}
    for row in conn.execute(rollup.ROLLED_AGES, params):
        ages.setdefault(row.kind, []).append((int(row.bucket), int(row.n)))
    return _Found(
        groups,
        {band: rollup.percentile(hist, 0.95) for band, hist in latency.items()},
        {k: rollup.count_within(hist, deadlines[k]) for k, hist in ages.items() if k in deadlines},
    )


def _next_hour(moment: datetime) -> datetime:
    """The first whole hour (UTC) at or after ``moment``."""
    utc = moment.astimezone(UTC)
    hour = utc.replace(minute=0, second=0, microsecond=0)
    return hour if hour == utc else hour + timedelta(hours=1)


def _user(row: Mapping[Any, Any], slo: float) -> UserStats:
    freshness = _float(row["freshness"])
    return UserStats(
        user_id=row["user_id"],
        runs=int(row["runs"]),
        success_rate=_share(row["succeeded"], row["runs"]),
        p95_duration_s=_float(row["p95_duration"]),
        freshness_s=freshness,
        fresh=freshness is not None and freshness <= slo,
    )


def _by_kind(groups: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    kinds: dict[str, list[dict[str, Any]]] = {}
    for row in groups:
        kinds.setdefault(row["kind"], []).append(row)
    return kinds


def _kind(
    kind: str, rows: list[dict[str, Any]], deadline: float | None, rolled_within: float
) -> KindStats:
    def total(column: str, outcomes: tuple[str, ...] | None = None) -> float:
        return sum(float(r[column]) for r in rows if outcomes is None or r["outcome"] in outcomes)

    jobs = int(total("attempts", FINAL))
    return KindStats(
        kind=kind,
        jobs=jobs,
        attempts=int(total("attempts")),
        success_rate=_share(total("attempts", ("succeeded",)), jobs),
        cpu_s_per_job=_share(total("cpu_s"), jobs),
        wall_s_per_job=_share(total("wall_s"), jobs),
        requests_per_job=_share(total("google_requests"), jobs),
        units_per_job=_share(total("quota_units"), jobs),
        deadline_s=deadline,
        sla_compliance=(
            _share(total("within_deadline") + rolled_within, jobs) if deadline is not None else None
        ),
    )


def _fleet(
    window: float, p95s: dict[str, float | None], groups: list[dict[str, Any]]
) -> FleetStats:
    jobs = sum(int(r["attempts"]) for r in groups if r["outcome"] in FINAL)
    dead: dict[str, int] = {}
    for r in groups:
        if r["outcome"] == "dead":
            dead[r["reason"]] = dead.get(r["reason"], 0) + int(r["attempts"])
    latency: dict[str, float | None] = dict.fromkeys(BANDS)
    latency.update(p95s)
    return FleetStats(
        jobs=jobs,
        jobs_per_second=jobs / window,
        start_latency_p95_s=latency,
        dead_letter_rate={reason: n / jobs for reason, n in sorted(dead.items())},
    )


def _share(part: Any, whole: Any) -> float | None:
    return float(part) / float(whole) if whole else None


def _float(value: Any) -> float | None:
    return float(value) if value is not None else None
