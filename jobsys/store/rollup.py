"""Hourly roll-ups of ``attempts``: what a stats report reads for whole hours long past.

Why: a report over raw attempts costs time in proportion to the attempts in its
window (over 10 million attempts in 30 days, 0.9 s for 24 h, 21 s for 30 days).
Rolled hours cost a few rows per hour and kind whatever the traffic.

What is kept, per whole hour (by ``finished_at``) and kind, with no user
column (per-kind and fleet figures are nobody's; a user's report, and any
report read under row-level security, reads raw attempts through the user's
index, which is already fast):

- ``attempt_hours``, per outcome and reason: the attempts and the sums of
  their cost. Every per-kind figure and the dead-letter rates are ratios of
  such counts and sums (the cost per job is a sum over jobs, NULL costs
  counting 0), so they come out exactly as from raw rows;
- ``attempt_hour_buckets``: histograms over fixed buckets of the start
  latency (``started_at - due_at``, attempts that started) per priority band,
  and of the age of successes (``finished_at - created_at``, band ''), from
  which the start latency p95 and the SLA compliance against any deadline are
  estimated. Only buckets holding something are rows.

Buckets: ``[0, 10 ms)``, then geometric with ratio 2^(1/4) from 10 ms up to
about 13 days (``BOUNDS``), then one open bucket; a negative value falls in
bucket 0 (read as 0). Estimates, in a window that reads roll-ups (its raw rows
are bucketed alike for the p95; their successes within a deadline are counted
exactly):

- p95: each order statistic is placed evenly inside its bucket and
  interpolated as ``percentile_cont`` does, so the estimate is off by less than
  the width of the bucket(s) holding the two ranks it interpolates between:
  19% of the value above 10 ms, 10 ms below (values past ``BOUNDS[-1]`` read
  as ``BOUNDS[-1]``);
- SLA compliance: the successes in the bucket holding the deadline are
  counted in proportion to the part of the bucket below it, so the count of
  successes within the deadline is off by less than that bucket's successes.

Which rows a report reads: a window no wider than ``RAW_HORIZON_S`` (a day,
the default ``--since 24h``) reads raw attempts only and stays exact. A wider
window reads raw rows for its first partial hour and for everything not yet
rolled (the last hour or two), and the roll-ups for the whole hours between; so
its cost is a few hours of raw rows plus a few rows per hour and kind. Why not
keep the last day raw in wide windows too: it would cost a day's raw rows (0.8 s
at 330,000 attempts a day) for an exactness the p95 of a week does not need.

The watermark: ``attempt_rollup.rolled_until``; every attempt that ended before
it is rolled, none after. :func:`roll_up` rolls whole hours from it up to the
hour that ended ``SETTLE_S`` (an hour) ago and moves it, in one transaction
under an advisory lock, so rolling twice or from two processes never counts an
hour twice (the primary keys would refuse it besides). Why wait an hour: an
attempt's ``finished_at`` is its recording transaction's ``now()`` (its start),
so a row can commit a little after its hour ended; an hour is far longer than
any such transaction. A report never rolls anything (reports are read-only):
whatever is not rolled yet it reads raw.
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Iterable
from datetime import datetime, timedelta

import sqlalchemy as sa

from jobsys.store.gateway import Store
from jobsys.store.queries import KIND_AGGREGATES, URGENT_PRIORITY

# Windows up to a day read raw attempts only; hours are rolled once they ended an hour ago.
RAW_HORIZON_S = 86_400.0
SETTLE_S = 3600.0
# Hours rolled per call at most: a first roll-up over a long history is split into
# passes of bounded length (a sweeper pass must stay short).
MAX_HOURS = 24
_LOCK_KEY = 0x726F6C6C  # "roll"
_RATIO = 2.0**0.25
# Upper bounds of buckets 1..N (bucket i holds [BOUNDS[i-1], BOUNDS[i]), 0 below 0).
BOUNDS: tuple[float, ...] = (0.0, *(0.01 * _RATIO**i for i in range(108)))

BAND = (
    f"CASE WHEN priority >= {URGENT_PRIORITY} THEN 'urgent'"
    " WHEN priority > 0 THEN 'raised' ELSE 'normal' END"
)
_LATENCY = "CAST(extract(epoch FROM started_at - due_at) AS float8)"
_AGE = "CAST(extract(epoch FROM finished_at - created_at) AS float8)"
_BUCKET = "width_bucket({}, CAST(:bounds AS float8[]))"
_HOURS = "finished_at >= :lo AND finished_at < :hi"

ROLLUP_LOCK = sa.text("SELECT pg_try_advisory_xact_lock(:key)")
# From the watermark (or the first attempt's hour) to the horizon's whole hour.
ROLLUP_RANGE = sa.text(
    """
SELECT COALESCE(r.rolled_until,
    date_trunc('hour', (SELECT min(finished_at) FROM attempts), 'UTC')) AS lo,
  date_trunc('hour', now() - make_interval(secs => :horizon), 'UTC') AS hi
FROM attempt_rollup r
"""
)
ROLLUP_HOURS = sa.text(
    f"""
INSERT INTO attempt_hours (hour, kind, outcome, reason, attempts, cpu_s, wall_s,
  google_requests, quota_units)
SELECT date_trunc('hour', finished_at, 'UTC'), kind, outcome, COALESCE(reason, ''), count(*),
  COALESCE(sum(cpu_s), 0), COALESCE(sum(wall_s), 0), COALESCE(sum(google_requests), 0),
  COALESCE(sum(quota_units), 0)
FROM attempts WHERE {_HOURS}
GROUP BY 1, 2, 3, 4
"""
)
ROLLUP_BUCKETS = sa.text(
    f"""
INSERT INTO attempt_hour_buckets (hour, kind, band, bucket, started, succeeded)
SELECT hour, kind, band, bucket, sum(started), sum(succeeded) FROM (
  SELECT date_trunc('hour', finished_at, 'UTC') AS hour, kind, {BAND} AS band,
    {_BUCKET.format(_LATENCY)} AS bucket, 1 AS started, 0 AS succeeded
  FROM attempts WHERE {_HOURS} AND started_at IS NOT NULL
  UNION ALL
  SELECT date_trunc('hour', finished_at, 'UTC'), kind, '', {_BUCKET.format(_AGE)}, 0, 1
  FROM attempts WHERE {_HOURS} AND outcome = 'succeeded'
) b
GROUP BY 1, 2, 3, 4
"""
)
ROLLUP_MARK = sa.text("UPDATE attempt_rollup SET rolled_until = :hi")


# -- reading a window partly rolled (``stats.py``). The window is split at :edge, the
# first whole hour in it, and :rolled_until: raw rows before :edge and from
# :rolled_until on (a BitmapOr of two ranges of attempts_finished_idx), roll-ups between.
ROLLED_UNTIL = sa.text(
    "SELECT now() - make_interval(secs => :window) AS start, rolled_until FROM attempt_rollup"
)
_RAW = "(finished_at >= :start AND finished_at < :edge OR finished_at >= :rolled_until)"
_ROLLED = "hour >= :edge AND hour < :rolled_until"
_OF_KIND = "(CAST(:kind AS text) IS NULL OR kind = :kind)"
# As STATS_KINDS; a rolled hour adds no successes within a deadline here (they are
# estimated from ROLLED_AGES).
ROLLED_KINDS = sa.text(
    f"""
SELECT kind, outcome, reason, sum(attempts) AS attempts, sum(cpu_s) AS cpu_s,
  sum(wall_s) AS wall_s, sum(google_requests) AS google_requests,
  sum(quota_units) AS quota_units, sum(within_deadline) AS within_deadline
FROM ({KIND_AGGREGATES.format(where=f"{_RAW} AND {_OF_KIND}")}
  UNION ALL
  SELECT kind, outcome, reason, attempts, cpu_s, wall_s, google_requests, quota_units, 0
  FROM attempt_hours WHERE {_ROLLED} AND {_OF_KIND}
) t
GROUP BY 1, 2, 3
"""
)
# Start latency by band and bucket: raw attempts bucketed as roll_up does, plus rolled hours.
ROLLED_LATENCY = sa.text(
    f"""
SELECT band, bucket, sum(n) AS n FROM (
  SELECT {BAND} AS band, {_BUCKET.format(_LATENCY)} AS bucket, count(*) AS n
  FROM attempts WHERE {_RAW} AND started_at IS NOT NULL AND {_OF_KIND}
  GROUP BY 1, 2
  UNION ALL
  SELECT band, bucket, started FROM attempt_hour_buckets
  WHERE {_ROLLED} AND started > 0 AND {_OF_KIND}
) t
GROUP BY 1, 2
"""
)
# The rolled hours' successes by kind and age bucket (the raw part's are counted exactly).
ROLLED_AGES = sa.text(
    f"""
SELECT kind, bucket, sum(succeeded) AS n FROM attempt_hour_buckets
WHERE {_ROLLED} AND succeeded > 0 AND {_OF_KIND}
GROUP BY 1, 2
"""
)


def roll_up(store: Store, *, horizon: float = SETTLE_S, max_hours: int = MAX_HOURS) -> int | None:
    """Roll up to ``max_hours`` whole hours that ended ``horizon`` seconds ago or earlier.

    Returns:
        the hours rolled (0: none were due), or None when another roller held the lock.
    """
    with store.transaction() as conn:
        if not conn.execute(ROLLUP_LOCK, {"key": _LOCK_KEY}).scalar():
            return None
        row = conn.execute(ROLLUP_RANGE, {"horizon": horizon}).one()
        lo: datetime | None = row.lo
        if lo is None or lo >= row.hi:
            return 0
        hi: datetime = min(row.hi, lo + timedelta(hours=max_hours))
        params = {"lo": lo, "hi": hi, "bounds": list(BOUNDS)}
        conn.execute(ROLLUP_HOURS, params)
        conn.execute(ROLLUP_BUCKETS, params)
        conn.execute(ROLLUP_MARK, {"hi": hi})
    return round((hi - lo) / timedelta(hours=1))


def roll_up_all(store: Store, *, horizon: float = SETTLE_S) -> int:
    """Roll every due hour, pass after pass; waits out another roller. Returns the hours."""
    total = 0
    while (done := roll_up(store, horizon=horizon)) != 0:
        if done is None:
            time.sleep(0.1)  # another roller's pass is short: try again after it
        total += done or 0
    return total


def _lower(bucket: int) -> float:
    return BOUNDS[bucket - 1] if bucket >= 1 else 0.0


def _upper(bucket: int) -> float:
    return BOUNDS[bucket] if bucket < len(BOUNDS) else math.inf


def bucket_of(value: float) -> int:
    """The bucket ``width_bucket`` puts ``value`` in."""
    return bisect.bisect_right(BOUNDS, value)


def bucket_width(value: float) -> float:
    """The width of ``value``'s bucket: the error bound of the estimates."""
    bucket = bucket_of(value)
    return _upper(bucket) - _lower(bucket)


def percentile(hist: Iterable[tuple[int, int]], fraction: float) -> float | None:
    """``percentile_cont(fraction)`` estimated from (bucket, count) pairs; None: no values."""
    counts = sorted((b, n) for b, n in hist if n > 0)
    total = sum(n for _, n in counts)
    if not total:
        return None
    rank = fraction * (total - 1)
    below = math.floor(rank)
    low, high = _order_stat(counts, below), _order_stat(counts, min(below + 1, total - 1))
    return low + (rank - below) * (high - low)


def _order_stat(counts: list[tuple[int, int]], index: int) -> float:
    """The ``index``-th smallest value (from 0), placed evenly inside its bucket."""
    seen = 0
    for bucket, n in counts:
        if index < seen + n:
            lo, hi = _lower(bucket), _upper(bucket)
            if math.isinf(hi):
                return lo
            return lo + (hi - lo) * (index - seen + 0.5) / n
        seen += n
    raise ValueError(f"rank {index} beyond {seen} values")


def count_within(hist: Iterable[tuple[int, int]], limit: float) -> float:
    """How many values are at most ``limit``, estimated from (bucket, count) pairs."""
    within = 0.0
    for bucket, n in hist:
        lo, hi = _lower(bucket), _upper(bucket)
        if bucket == 0 or hi <= limit:
            within += n
        elif lo <= limit and not math.isinf(hi):
            within += n * (limit - lo) / (hi - lo)
    return within
