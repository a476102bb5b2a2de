"""Named SQL statements; the gateway is the only module that runs them."""

from __future__ import annotations

import sqlalchemy as sa

from jobsys.store.status import MOVES

# PostgreSQL's LISTEN/NOTIFY channel on which new backlog wakes the promoters; the
# payload is the queue's name, after URGENT_MARK when an urgent job joined.
ADMIT_CHANNEL = "jobsys_admit"
URGENT_MARK = "!"
URGENT_PRIORITY = 8  # and above: promoted before any other job (jobs_urgent_idx)

# Each transition's SET and WHERE clauses come from the one table of legal moves.
_CLAIM, _SUCCEED, _REQUEUE = MOVES["claim"], MOVES["succeed"], MOVES["requeue"]
_POSTPONE, _BURY, _BURY_QUEUED = MOVES["postpone"], MOVES["bury"], MOVES["bury_queued"]
_CANCEL_RUNNING, _CANCEL_QUEUED = MOVES["cancel_running"], MOVES["cancel_queued"]
_REVIVE = MOVES["revive"]

JOB_COLUMNS = (
    "id, user_id, kind, queue, priority, payload, status, attempt, max_attempts, unique_key,"
    " run_after, lease_until, worker, worker_pid, cancel_requested, result, errors,"
    " created_at, started_at, finished_at, postponements, postponed_since, trace"
)

# A user starting to wait in a queue joins at the queue's virtual clock (see
# fairness.py); one already waiting keeps its place. A row comes back only where
# the user started waiting or its next job is due sooner: then promoters wake.
# ``since`` is no later than any waiting job's due time: while it is younger than
# the aging time, none of the user's jobs can have aged, and promotion skips the
# search for them.
FAIR_JOIN_TEMPLATE = """
INSERT INTO fair_users AS f (queue, user_id, vtime, next_due, since)
SELECT b.queue, b.user_id,
  COALESCE((SELECT c.vclock FROM fair_queues c WHERE c.queue = b.queue), 0), b.next_due,
  LEAST(now(), b.next_due)
FROM ({backlog}) b
ORDER BY b.queue, b.user_id
ON CONFLICT (queue, user_id) DO UPDATE SET
  vtime = CASE WHEN f.next_due IS NULL THEN GREATEST(f.vtime, EXCLUDED.vtime) ELSE f.vtime END,
  next_due = LEAST(f.next_due, EXCLUDED.next_due),
  since = CASE WHEN f.next_due IS NULL THEN EXCLUDED.since ELSE LEAST(f.since, EXCLUDED.since) END
WHERE f.next_due IS NULL OR EXCLUDED.next_due < f.next_due
RETURNING f.queue
"""

_BACKLOG_OF_INS = (
    "SELECT queue, user_id, run_after AS next_due FROM ins WHERE dispatched_at IS NULL"
)
_WOKE = (
    f"pg_notify('{ADMIT_CHANNEL}',"
    f" CASE WHEN priority >= {URGENT_PRIORITY} THEN '{URGENT_MARK}' ELSE '' END || queue)"
)
_INSERT = f"""
WITH ins AS (
  INSERT INTO jobs (id, user_id, kind, queue, priority, payload, max_attempts, unique_key,
    run_after, dispatched_at, concurrency_key, concurrency, coalesce, trace, canvas)
  SELECT :id, :user_id, :kind, :queue, :priority, CAST(:payload AS jsonb), :max_attempts,
    :unique_key, now() + make_interval(secs => :delay), CASE WHEN :admitted THEN now() END,
    :concurrency_key, :concurrency, :coalesce, CAST(:trace AS jsonb), CAST(:canvas AS jsonb)
  {{guard}}ON CONFLICT DO NOTHING
  RETURNING user_id, queue, priority, run_after, dispatched_at
), fair AS ({FAIR_JOIN_TEMPLATE.format(backlog=_BACKLOG_OF_INS)})
SELECT run_after,
  CASE WHEN dispatched_at IS NULL AND (priority >= {URGENT_PRIORITY} OR EXISTS (SELECT FROM fair))
  THEN {_WOKE} END AS woke
FROM ins
"""

INSERT_JOB = sa.text(_INSERT.format(guard=""))

# A caller-chosen id is one job's: the key is (user_id, id), since jobs is partitioned
# by user, so only this looks at the other partitions (it costs a plan of all of them).
INSERT_CHOSEN_ID = sa.text(
    _INSERT.format(guard="WHERE NOT EXISTS (SELECT 1 FROM jobs WHERE id = :id)\n  ")
)

# Charged to a user's quota: inserts only while the user has no limit (quotas.py).
INSERT_UNLIMITED = sa.text(
    _INSERT.format(
        guard="WHERE NOT EXISTS (SELECT FROM user_limits l WHERE l.user_id = :user_id"
        " AND (l.max_queued IS NOT NULL OR l.max_per_hour IS NOT NULL))\n  "
    )
)

COPY_JOBS = (
    "COPY jobs (id, user_id, kind, queue, priority, payload, max_attempts, dispatched_at,"
    " concurrency_key, concurrency, trace)"
    " FROM STDIN WITH (FORMAT csv)"
)

# After a COPY of backlog jobs (all due now): their users wait, and the promoters wake.
FAIR_JOIN_MANY = sa.text(
    FAIR_JOIN_TEMPLATE.format(
        backlog="SELECT * FROM unnest(CAST(:queues AS text[]), CAST(:users AS text[]))"
        " AS u(queue, user_id), LATERAL (SELECT now() AS next_due) n"
    )
)

WAKE = sa.text(f"SELECT pg_notify('{ADMIT_CHANNEL}', q) FROM unnest(CAST(:wake AS text[])) q")

RUN_AFTER = sa.text("SELECT run_after FROM jobs WHERE user_id = :user_id AND id = :id")

# The user's job of a coalescing kind still in the backlog (jobs_coalesce_idx).
WAITING_TWIN = sa.text(
    "SELECT id, payload FROM jobs WHERE user_id = :user_id AND kind = :kind AND coalesce"
    " AND status = 'queued' AND dispatched_at IS NULL FOR UPDATE"
)
SET_PAYLOAD = sa.text(
    "UPDATE jobs SET payload = CAST(:payload AS jsonb) WHERE user_id = :user_id AND id = :id"
)

FIND_LIVE_UNIQUE = sa.text(
    """
SELECT id FROM jobs WHERE user_id = :user_id AND kind = :kind AND unique_key = :unique_key
  AND status IN ('queued', 'running')
"""
)

# Claim: the one transition a duplicate delivery must lose. A job waiting in the
# backlog has no message of its own yet: one delivered for it is a stale copy (an old
# attempt's, restored by the broker), and running it would pass over its user's share
# and its concurrency key; its promotion will publish it.
_CLAIMABLE = "run_after <= now() AND NOT cancel_requested AND dispatched_at IS NOT NULL"


def checked(predicate: str) -> str:
    """``predicate`` tested on the row its key found, and never used to find it.

    Given ``status = 'running'`` as well as the key, a plan may scan every running
    job of the partition: statistics taken while none ran make the status index
    look as good as the key, and a generic plan (the claim and the success run on
    one, ``fastpath.py``) is chosen before any value is known. A CASE is no index
    condition and proves no partial index's predicate: the key is the only way in.
    """
    return f"(CASE WHEN {predicate} THEN true END)"


CLAIM = sa.text(
    f"""
UPDATE jobs SET {_CLAIM.set()}, attempt = attempt + 1, started_at = now(),
  lease_until = now() + make_interval(secs => :lease), worker = :worker, worker_pid = :pid
WHERE id = :id AND {_CLAIM.where()} AND {_CLAIMABLE}
RETURNING {JOB_COLUMNS}
"""
)

CLAIM_BY_USER = sa.text(
    f"""
UPDATE jobs SET {_CLAIM.set()}, attempt = attempt + 1, started_at = now(),
  lease_until = now() + make_interval(secs => :lease), worker = :worker, worker_pid = :pid
WHERE user_id = :user_id AND id = :id AND {checked(f"{_CLAIM.where()} AND {_CLAIMABLE}")}
RETURNING {JOB_COLUMNS}
"""
)

# Every statement that records an attempt's outcome also writes its row of ``attempts``
# (what it cost, for the stats): one round trip, as before. ``source`` is the CTE of
# the job as moved; the caller's parameters carry what the UPDATE changed.
_ATTEMPT_ROW = (
    "job_id, user_id, kind, queue, attempt, outcome, reason, priority, created_at, due_at,"
    " started_at, finished_at, cpu_s, wall_s, google_requests, quota_units"
)
_COST = (
    "CAST(:cpu_s AS float8), CAST(:wall_s AS float8), CAST(:google_requests AS integer),"
    " CAST(:quota_units AS integer)"
)


def _record_attempt(
    source: str,
    outcome: str,
    *,
    reason: str = "NULL",
    attempt: str = "attempt",
    due: str = "run_after",
) -> str:
    return f"""recorded AS (
  INSERT INTO attempts ({_ATTEMPT_ROW})
  SELECT id, user_id, kind, queue, {attempt}, '{outcome}', {reason}, priority, created_at, {due},
    started_at, now(), {_COST}
  FROM {source}
)"""


_MOVED_COLUMNS = "id, user_id, kind, queue, attempt, priority, created_at, run_after, started_at"

SUCCEED = sa.text(
    f"""
WITH done AS (
  UPDATE jobs SET {_SUCCEED.set()}, result = CAST(:result AS jsonb), finished_at = now(),
    lease_until = NULL
  WHERE user_id = :user_id AND id = :id
    AND {checked(f"{_SUCCEED.where()} AND attempt = :attempt")}
  RETURNING {_MOVED_COLUMNS}
), {_record_attempt("done", "succeeded")}
SELECT id FROM done
"""
)

# Tracing: the span context of the attempt that just failed, for the next one to link to.
SET_TRACE = sa.text(
    "UPDATE jobs SET trace = CAST(:trace AS jsonb)"
    " WHERE user_id = :user_id AND id = :id AND attempt = :attempt"
)

# Back in the queue: with :backlog, into admission's backlog (its message is
# published when due and its user's share allows); else the caller publishes it
# with a countdown (an unkeyed canvas member, whose place in its chord the row does
# not hold). A keyed canvas member goes to the backlog with its place (:canvas).
_BACK = """
WITH moved AS (
  UPDATE jobs SET {set}, run_after = now() + make_interval(secs => :delay),
    lease_until = NULL, worker = NULL, worker_pid = NULL,
    dispatched_at = CASE WHEN :backlog THEN NULL ELSE dispatched_at END,
    canvas = COALESCE(CAST(:canvas AS jsonb), canvas){extra}
  WHERE user_id = :user_id AND id = :id AND {where}
  RETURNING dispatched_at, {moved_columns}
), fair AS ({fair}), {recorded}
SELECT run_after FROM moved
"""


def _back_where(status: str) -> str:
    # A job asked to stop is not put back: the caller cancels it instead.
    return checked(f"{status} AND attempt = :attempt AND NOT cancel_requested")


_BACKLOG_OF_MOVED = (
    "SELECT queue, user_id, run_after AS next_due FROM moved WHERE dispatched_at IS NULL"
)
REQUEUE = sa.text(
    _BACK.format(
        set=_REQUEUE.set(),
        where=_back_where(_REQUEUE.where()),
        extra=",\n    errors = errors || CAST(:error AS jsonb)",
        fair=FAIR_JOIN_TEMPLATE.format(backlog=_BACKLOG_OF_MOVED),
        moved_columns=_MOVED_COLUMNS,
        # run_after is the next try's now: the attempt was due at :due.
        recorded=_record_attempt(
            "moved", "retried", reason="CAST(:error AS jsonb) -> 0 ->> 'reason'", due=":due"
        ),
    )
)

# Postponed: back in the queue with the attempt handed back, since nothing was tried;
# counted, and refused once the first postponement is :limit seconds old or more.
POSTPONE = sa.text(
    _BACK.format(
        set=_POSTPONE.set(),
        where=_back_where(
            _POSTPONE.where()
            + " AND (postponed_since IS NULL OR CAST(:limit AS float8) IS NULL"
            + " OR postponed_since > now() - make_interval(secs => CAST(:limit AS float8)))"
        ),
        extra=",\n    attempt = attempt - 1, postponements = postponements + 1,"
        "\n    postponed_since = COALESCE(postponed_since, now())",
        fair=FAIR_JOIN_TEMPLATE.format(backlog=_BACKLOG_OF_MOVED),
        moved_columns=_MOVED_COLUMNS,
        # The attempt was handed back, so the row names the one that was postponed.
        recorded=_record_attempt("moved", "postponed", attempt=":attempt", due=":due"),
    )
)

CANCEL_RUNNING = sa.text(
    f"""
WITH done AS (
  UPDATE jobs SET {_CANCEL_RUNNING.set()}, finished_at = now(), lease_until = NULL
  WHERE user_id = :user_id AND id = :id
    AND {checked(f"{_CANCEL_RUNNING.where()} AND attempt = :attempt")}
  RETURNING {_MOVED_COLUMNS}
), {_record_attempt("done", "cancelled")}
SELECT id FROM done
"""
)


def _bury(move_where: str, attempt: str) -> str:
    # Dead: the job's final state, its dead letter and the audit event in one statement.
    return f"""
WITH dead AS (
  UPDATE jobs SET {_BURY.set()}, finished_at = now(), lease_until = NULL,
    errors = errors || CAST(:error AS jsonb)
  WHERE user_id = :user_id AND id = :id AND {move_where} {attempt}
  RETURNING payload, errors, worker, {_MOVED_COLUMNS}
), {_record_attempt("dead", "dead", reason="CAST(:reason AS text)")}, letter AS (
  INSERT INTO dead_letters (job_id, user_id, kind, queue, payload, exc_type, message, traceback,
    reason, retryable, attempts, worker, first_attempt_at)
  SELECT id, user_id, kind, queue, payload, :exc_type, :message, :traceback, :reason,
    :retryable, errors, COALESCE(worker, :actor), CAST(errors -> 0 ->> 'started_at' AS timestamptz)
  FROM dead
  RETURNING id, job_id, user_id
)
INSERT INTO audit_events (actor, action, job_id, user_id, detail)
SELECT :actor, 'job.dead', job_id, user_id,
  jsonb_build_object('dead_letter', id, 'reason', CAST(:reason AS text))
FROM letter
RETURNING (detail ->> 'dead_letter')::bigint
"""


BURY = sa.text(_bury(_BURY.where(), "AND attempt = :attempt"))

# A queued job no worker could run (its kind unknown where it was delivered).
BURY_QUEUED = sa.text(_bury(_BURY_QUEUED.where(), ""))

# One more delivery of a job to a worker that does not know its kind.
NOTE_UNKNOWN_KIND = sa.text(
    f"""
UPDATE jobs SET errors = errors || CAST(:error AS jsonb)
WHERE id = :id AND {_BURY_QUEUED.where()}
RETURNING user_id, (SELECT count(*) FROM jsonb_array_elements(errors) e
                    WHERE e ->> 'reason' = 'unknown_kind') AS deliveries
"""
)

GET_JOB = sa.text(f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = :id")

LIST_JOBS = f"SELECT {JOB_COLUMNS} FROM jobs"

JOB_STATE = sa.text("SELECT status, run_after, kind, queue FROM jobs WHERE id = :id")

# A queued job is cancelled at once; a running one is asked to stop at its next heartbeat.
REQUEST_CANCEL = sa.text(
    f"""
UPDATE jobs SET cancel_requested = true,
  status = CASE WHEN {_CANCEL_QUEUED.where()} THEN '{_CANCEL_QUEUED.dst.value}'::job_status
           ELSE status END,
  finished_at = CASE WHEN {_CANCEL_QUEUED.where()} THEN now() ELSE finished_at END
WHERE id = :id AND status IN ('queued', 'running')
RETURNING {JOB_COLUMNS}
"""
)

HEARTBEAT_JOB = sa.text(
    f"""
UPDATE jobs SET lease_until = now() + make_interval(secs => :lease)
WHERE user_id = :user_id AND id = :id AND {checked("status = 'running' AND attempt = :attempt")}
RETURNING cancel_requested
"""
)

# Worker lost in the main process: the child that held the job is gone.
_LOST_HERE = (
    "status = 'running' AND worker = :worker"
    " AND (CAST(:pid AS integer) IS NULL OR worker_pid = :pid)"
)
FAIL_LOST = sa.text(
    f"""
SELECT {JOB_COLUMNS} FROM jobs
WHERE id = :id AND {checked(_LOST_HERE)}
"""
)

EXPIRED = sa.text(
    f"""
SELECT {JOB_COLUMNS} FROM jobs
WHERE status = 'running' AND (
  lease_until < now()
  -- Read again here: a node that registered since the names were read is alive.
  OR (worker = ANY(:dead_workers) AND worker IN (SELECT name FROM workers WHERE status <> 'alive'))
)
ORDER BY lease_until LIMIT :limit
"""
)

DUE_QUEUED = sa.text(
    """
SELECT id, user_id, kind, queue, priority, payload, trace, canvas,
  GREATEST(0, EXTRACT(EPOCH FROM run_after - now()))::float AS countdown
FROM jobs WHERE status = 'queued' AND NOT cancel_requested
  -- The backlog is admission's: only a published job's message can be lost, counted
  -- from when it was published or fell due, whichever is later.
  AND dispatched_at IS NOT NULL
  AND (:everything
       OR GREATEST(run_after, dispatched_at) < now() - make_interval(secs => :lost_after))
  AND (CAST(:queues AS text[]) IS NULL OR queue = ANY(CAST(:queues AS text[])))
ORDER BY priority DESC, run_after LIMIT :limit
"""
)

UPSERT_WORKER = sa.text(
    """
INSERT INTO workers (name, hostname, pid, queues, concurrency, status, started_at, heartbeat_at)
VALUES (:name, :hostname, :pid, CAST(:queues AS jsonb), :concurrency, 'alive', now(), now())
ON CONFLICT (name) DO UPDATE SET hostname = EXCLUDED.hostname, pid = EXCLUDED.pid,
  queues = EXCLUDED.queues, concurrency = EXCLUDED.concurrency, status = 'alive',
  started_at = EXCLUDED.started_at, heartbeat_at = now()
"""
)

HEARTBEAT_WORKER = sa.text(
    """
UPDATE workers SET heartbeat_at = now(), status = 'alive' WHERE name = :name AND pid = :pid
RETURNING name
"""
)

STOP_WORKER = sa.text("UPDATE workers SET status = 'stopped' WHERE name = :name AND pid = :pid")

MARK_DEAD_WORKERS = sa.text(
    """
UPDATE workers SET status = 'dead'
WHERE status = 'alive' AND heartbeat_at < now() - make_interval(secs => :dead_after)
RETURNING name
"""
)

RETIRE_WORKER = sa.text(
    """
UPDATE workers SET status = 'dead' WHERE name = :name AND pid = :pid AND status = 'alive'
RETURNING name
"""
)

DEAD_WORKER_NAMES = sa.text("SELECT name FROM workers WHERE status <> 'alive'")

LIST_WORKERS = sa.text("SELECT * FROM workers ORDER BY name")

AUDIT = sa.text(
    """
INSERT INTO audit_events (actor, action, job_id, user_id, detail)
VALUES (:actor, :action, :job_id, :user_id, CAST(:detail AS jsonb))
"""
)

GET_DEAD_LETTER = sa.text("SELECT * FROM dead_letters WHERE id = :id")

LIST_DEAD_LETTERS = sa.text(
    """
SELECT * FROM dead_letters
WHERE (CAST(:kind AS text) IS NULL OR kind = :kind)
  AND (CAST(:user_id AS text) IS NULL OR user_id = :user_id)
ORDER BY id DESC LIMIT :limit
"""
)

# Retry from the DLQ: a fresh budget of attempts, the old history kept in the letter.
# Out of its old chord (a canvas member's old chord counted its death already). With
# :backlog (admission on) it joins the backlog and the promoters wake, so a bulk retry
# takes its user's fair share like an enqueue; so does a keyed job always, to wait for
# its key. Otherwise the caller publishes it (so marked dispatched, or its claim
# would refuse it).
REVIVE = sa.text(
    f"""
WITH moved AS (
  UPDATE jobs SET {_REVIVE.set()}, attempt = 0, run_after = now(), finished_at = NULL,
    errors = '[]'::jsonb, cancel_requested = false, worker = NULL, worker_pid = NULL,
    postponements = 0, postponed_since = NULL, canvas = NULL,
    dispatched_at = CASE WHEN concurrency_key IS NULL AND NOT :backlog THEN now() END
  WHERE id = :id AND {_REVIVE.where()}
  RETURNING {JOB_COLUMNS}, dispatched_at
), fair AS ({FAIR_JOIN_TEMPLATE.format(backlog=_BACKLOG_OF_MOVED)})
SELECT moved.*, CASE WHEN dispatched_at IS NULL THEN {_WOKE} END AS woke FROM moved
"""
)

DEAD_LETTER_OF_JOB = sa.text(
    "SELECT * FROM dead_letters WHERE job_id = :job_id ORDER BY id DESC LIMIT 1"
)

MARK_LETTER_RETRIED = sa.text("UPDATE dead_letters SET retried_at = now() WHERE id = :id")

PURGE_LETTERS = sa.text(
    """
DELETE FROM dead_letters WHERE created_at < now() - make_interval(secs => :older_than)
RETURNING id
"""
)

SWEEP_LOCK = sa.text("SELECT pg_try_advisory_xact_lock(:key)")

# What a metrics scrape reads, in one statement: jobs queued (in the backlog, not due
# yet, or published) and running per queue, the age of each queue's oldest due job,
# unretried dead letters per kind, worker nodes per state. The jobs parts walk
# jobs_due_idx (status, run_after) over live jobs only, never finished ones.
FLEET_GAUGES = sa.text(
    """
SELECT 'depth' AS metric, queue AS a,
       CASE WHEN status = 'running' THEN 'running'
            WHEN dispatched_at IS NOT NULL THEN 'published'
            WHEN run_after > now() THEN 'delayed'
            ELSE 'backlog' END AS b,
       count(*)::float8 AS value
FROM jobs WHERE status IN ('queued', 'running') GROUP BY 2, 3
UNION ALL
SELECT 'oldest', queue, '', extract(epoch FROM now() - min(run_after))::float8
FROM jobs WHERE status = 'queued' AND run_after <= now() GROUP BY 2
UNION ALL
SELECT 'dead_letters', kind, '', count(*)::float8
FROM dead_letters WHERE retried_at IS NULL GROUP BY 2
UNION ALL
SELECT 'workers', status, '', count(*)::float8 FROM workers GROUP BY 2
"""
)

# A run's jobs: their payload names it. Served by ``jobs_run_idx`` in the user's partition.
JOBS_OF_RUN = sa.text(
    "SELECT id, kind, status, attempt, created_at, started_at, finished_at,"
    " errors -> -1 ->> 'reason' AS reason FROM jobs"
    " WHERE user_id = :u AND payload ->> 'run_id' = :r AND payload ? 'run_id'"
)

# -- stats (``stats.py``): each reads one window, ``now() - :window`` seconds to now,
# through attempts_finished_idx / pipeline_runs_finished_idx (or the user's index).
_IN_WINDOW = "finished_at >= now() - make_interval(secs => :window)"
_OF_USER = "(CAST(:user_id AS text) IS NULL OR user_id = :user_id)"
_OF_KIND = "(CAST(:kind AS text) IS NULL OR kind = :kind)"

# The stats' statements are estimated dear (a subquery per user) and run briefly: JIT
# compiling them cost 0.5 s measured, ten times their run.
STATS_NO_JIT = sa.text("SET LOCAL jit = off")

# Per user: runs finished in the window, and the last successful run ever (freshness).
STATS_USERS = sa.text(
    f"""
WITH runs AS (
  SELECT user_id, count(*) AS runs, count(*) FILTER (WHERE status = 'succeeded') AS succeeded,
    percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - created_at))
      AS p95_duration
  FROM pipeline_runs
  WHERE {_IN_WINDOW} AND status <> 'running' AND {_OF_USER}
  GROUP BY user_id
), who AS (
  SELECT id AS user_id FROM users WHERE (CAST(:user_id AS text) IS NULL OR id = :user_id)
  UNION SELECT user_id FROM runs
)
SELECT w.user_id, COALESCE(r.runs, 0) AS runs, COALESCE(r.succeeded, 0) AS succeeded,
  r.p95_duration, extract(epoch FROM now() - (
    SELECT max(p.finished_at) FROM pipeline_runs p
    WHERE p.user_id = w.user_id AND p.status = 'succeeded')) AS freshness
FROM who w LEFT JOIN runs r USING (user_id)
ORDER BY w.user_id
"""
)

# Per kind, outcome and reason: attempts, their cost, and the successes within the kind's
# deadline (:kinds, :deadlines). Jobs are the attempts with a final outcome; the fleet's
# outcomes by reason come from the same rows, so the window is scanned once for both.
# Shared with the raw part of a partly rolled window (rollup.py): ``{where}`` picks the rows.
KIND_AGGREGATES = """
SELECT a.kind, outcome, COALESCE(reason, '') AS reason, count(*) AS attempts,
  COALESCE(sum(cpu_s), 0) AS cpu_s, COALESCE(sum(wall_s), 0) AS wall_s,
  COALESCE(sum(google_requests), 0) AS google_requests,
  COALESCE(sum(quota_units), 0) AS quota_units,
  count(*) FILTER (WHERE outcome = 'succeeded'
    AND finished_at - created_at <= make_interval(secs => d.deadline)) AS within_deadline
FROM attempts a
LEFT JOIN unnest(CAST(:kinds AS text[]), CAST(:deadlines AS float8[]))
  AS d(deadline_kind, deadline) ON d.deadline_kind = a.kind
WHERE {where}
GROUP BY 1, 2, 3"""
STATS_KINDS = sa.text(KIND_AGGREGATES.format(where=f"{_IN_WINDOW} AND {_OF_USER} AND {_OF_KIND}"))

# The fleet: start latency (due -> claimed) by priority band.
STATS_LATENCY = sa.text(
    f"""
SELECT CASE WHEN priority >= {URGENT_PRIORITY} THEN 'urgent'
            WHEN priority > 0 THEN 'raised' ELSE 'normal' END AS band,
  count(*) AS attempts,
  percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM started_at - due_at)) AS p95
FROM attempts
WHERE {_IN_WINDOW} AND started_at IS NOT NULL AND {_OF_USER} AND {_OF_KIND}
GROUP BY 1 ORDER BY 1
"""
)
