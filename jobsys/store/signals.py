"""Every statement the alert detector reads its signals with, over a rolling window.

Rates and percentiles come from ``attempts`` (one row per recorded attempt,
written with its outcome), read through ``attempts_finished_idx`` over the
window only, so an evaluation's cost follows the attempts of the last few
minutes, not the size of ``jobs``. The rest: the due queued jobs
(``jobs_due_idx``), ``dead_letters``, ``users`` and ``pipeline_runs``. The
window is ``(now - window, now]`` with ``now`` given by the caller, so a test
can evaluate at any instant.
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

_FAILED = "outcome IN ('retried', 'dead')"
_READ = sa.text(
    f"""
WITH recent AS (
  SELECT kind, queue, outcome, due_at, started_at, finished_at FROM attempts
  WHERE finished_at > :since AND finished_at <= :now
    AND outcome IN ('succeeded', 'retried', 'dead')
)
SELECT '{ERROR_RATE}' AS signal, kind AS subject,
  CAST(count(*) FILTER (WHERE {_FAILED}) AS float8) / count(*) AS value
FROM recent GROUP BY kind HAVING count(*) >= :min_volume
UNION ALL
SELECT '{START_LATENCY}', queue,
  percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM started_at - due_at))
FROM recent WHERE started_at >= due_at
GROUP BY queue HAVING count(*) >= :min_volume
UNION ALL
SELECT '{DURATION}', kind,
  percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - started_at))
FROM recent WHERE outcome = 'succeeded' AND started_at IS NOT NULL
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
        "min_volume": window.min_volume,
        "slo": window.freshness_slo,
    }
    with store.transaction() as conn:
        rows = conn.execute(_READ, params).all()
    return {(str(s), str(subject)): float(v) for s, subject, v in rows}
