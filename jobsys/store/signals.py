"""Every statement the alert detector reads its signals with, over a rolling window.

This is the one module to re-point when a per-attempt history exists: today
the signals come from what the job rows keep (status, ``errors`` with each
failed attempt's ``failed_at``, ``run_after``/``started_at``/``finished_at``),
``dead_letters``, ``users`` and ``pipeline_runs``. The window is
``(now - window, now]`` with ``now`` given by the caller, so a test can evaluate
at any instant.

Limits of reading job rows: a job's row keeps only its latest claim's
``started_at``, so a failed attempt is counted when the job's latest claim
started within ``slack`` seconds before the window (the default hard time
limit, lease grace and dead-worker window: a kind with a longer limit can have a
failure missed); only the latest attempt of a retried job has a start latency;
and the scan of ``jobs`` by ``started_at`` has no index of its own (adding one
would cost every claim an index write).
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

import sqlalchemy as sa

from jobsys.store.gateway import Store

ERROR_RATE = "error_rate"
START_LATENCY = "start_latency_p95"
DURATION = "duration_p95"
OLDEST_QUEUED = "oldest_queued"
DEAD_LETTERS = "dead_letters"
STALE_USERS = "stale_users"
FLEET = "*"  # the subject of a fleet-wide signal

_FAILED_AT = "CAST(e ->> 'failed_at' AS timestamptz)"
_READ = sa.text(
    f"""
WITH recent AS (
  SELECT kind, queue, status, run_after, started_at, finished_at, errors FROM jobs
  WHERE started_at > CAST(:since AS timestamptz) - make_interval(secs => :slack)
    AND started_at <= :now
), failed AS (
  SELECT r.kind, count(*) AS n FROM recent r, jsonb_array_elements(r.errors) e
  WHERE r.errors <> CAST('[]' AS jsonb) AND {_FAILED_AT} > :since AND {_FAILED_AT} <= :now
  GROUP BY r.kind
), done AS (
  SELECT kind, count(*) AS n FROM recent
  WHERE status = 'succeeded' AND finished_at > :since AND finished_at <= :now GROUP BY kind
), rates AS (
  SELECT kind, COALESCE(failed.n, 0) AS failed, COALESCE(done.n, 0) AS ok
  FROM failed FULL JOIN done USING (kind)
)
SELECT '{ERROR_RATE}' AS signal, kind AS subject,
  CAST(failed AS float8) / (failed + ok) AS value
FROM rates WHERE failed + ok >= :min_volume
UNION ALL
SELECT '{START_LATENCY}', queue,
  percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM started_at - run_after))
FROM recent WHERE started_at > :since AND started_at >= run_after
GROUP BY queue HAVING count(*) >= :min_volume
UNION ALL
SELECT '{DURATION}', kind,
  percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - started_at))
FROM recent WHERE status = 'succeeded' AND finished_at > :since AND finished_at <= :now
GROUP BY kind HAVING count(*) >= :min_volume
UNION ALL
SELECT '{OLDEST_QUEUED}', queue, extract(epoch FROM CAST(:now AS timestamptz) - min(run_after))
FROM jobs WHERE status = 'queued' AND run_after <= :now GROUP BY queue
UNION ALL
SELECT '{DEAD_LETTERS}', '{FLEET}', count(*)
FROM dead_letters WHERE created_at > :since AND created_at <= :now
UNION ALL
SELECT '{STALE_USERS}', '{FLEET}', count(*) FROM users u
WHERE NOT u.paused AND u.created_at <= CAST(:now AS timestamptz) - make_interval(secs => :slo)
  AND NOT EXISTS (
    SELECT FROM pipeline_runs r WHERE r.user_id = u.id AND r.status = 'succeeded'
      AND r.finished_at > CAST(:now AS timestamptz) - make_interval(secs => :slo))
"""
)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Window:
    """Where and how the signals are read."""

    now: datetime
    seconds: float  # the window's length
    slack: float  # how long before the window an attempt that failed in it may have started
    min_volume: int  # attempts a kind or queue needs in the window to have a rate or p95
    freshness_slo: float  # a user not synced successfully for this long is stale


def read_signals(store: Store, window: Window) -> dict[tuple[str, str], float]:
    """Each ``(signal, subject)``'s value over the window, in one statement.

    A kind or queue without ``min_volume`` attempts in the window has no value
    (it is missing, not 0); the fleet-wide counts always have one.
    """
    params = {
        "now": window.now,
        "since": window.now - timedelta(seconds=window.seconds),
        "slack": window.slack,
        "min_volume": window.min_volume,
        "slo": window.freshness_slo,
    }
    with store.transaction() as conn:
        rows = conn.execute(_READ, params).all()
    return {(str(s), str(subject)): float(v) for s, subject, v in rows}
