"""SQL for admission: promoting backlog jobs to the broker, fairly (part of :class:`Store`).

A job not yet in the broker waits in PostgreSQL (``dispatched_at IS NULL``).
:meth:`AdmissionSql.promote` marks the next ones dispatched, in one
transaction, and returns them for the caller to publish once it committed:

1. urgent jobs first (priority >= 8, from any user, highest first), in up to
   three quarters of the slots (``urgent_cap``);
2. then the free slots are shared between the users with due jobs, by
   virtual time and weight (``fairness.py``), each user's jobs in priority
   order, then by due time (a user flooding urgent jobs takes its share of
   these too, and is charged for it);
3. slots nobody else wanted go to more urgent jobs.

A catch-up promotion (``behind``) serves only the users at or behind the
queue's virtual clock, one job each (its first, in its order): users that have just
started waiting join at the clock, while a user whose jobs fill the broker's
buffer is ahead of it. Start-time fair queuing serves their jobs before the
buffer's last ones, so the caller publishes them at the buffer's front.

Rows are taken with ``FOR UPDATE SKIP LOCKED`` (fair-share rows, then jobs), so
promoters on several nodes never hand out one job twice and never wait for
each other. Every query is driven by an index: the cost of a promotion
depends on the slots it fills, not on the backlog's length.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections import defaultdict
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import psycopg2
import sqlalchemy as sa

from jobsys.store.db import normalize_url
from jobsys.store.fairness import Waiting, one_each, share
from jobsys.store.fastpath import connect
from jobsys.store.prepared import PreparedSession, Run, Statement
from jobsys.store.queries import ADMIT_CHANNEL, URGENT_MARK, URGENT_PRIORITY

_COLUMNS = "j.id, j.user_id, j.kind, j.queue, j.priority, j.payload, j.trace, j.canvas"
_HOLDING = "(h.status = 'running' OR (h.status = 'queued' AND h.dispatched_at IS NOT NULL))"
# A keyed job may go while its key's holders (running, or published) are fewer than
# its concurrency (counted on jobs_key_holders_idx).
_ROOM = (
    "(j.concurrency_key IS NULL OR (SELECT count(*) FROM jobs h"
    f" WHERE h.concurrency_key = j.concurrency_key AND {_HOLDING}) < j.concurrency)"
)
_DUE = (
    "j.status = 'queued' AND j.dispatched_at IS NULL AND j.run_after <= now()"
    f" AND NOT j.cancel_requested AND {_ROOM}"
)
_KEYED = "j.concurrency_key, j.concurrency"
# The picked rows are marked through whichever index the plan probes: every column of
# the primary key and of jobs_user_created_idx is bound, so either reads one entry. A
# plan made on statistics from when the table looked empty chose the second, bound by
# its user alone: each row marked read all of its user's jobs (21,930 rows for 10).
_PICKED = "j.user_id = pick.user_id AND j.id = pick.id AND j.created_at = pick.created_at"
AGING = 60.0  # s a job waits before it goes ahead of its user's other jobs
# s until a user whose due jobs all wait for their keys is looked at again, should
# no holder's end wake it (a node killed while holding one)
KEY_RECHECK = 0.2


def urgent_cap(slots: int) -> int:
    """The slots of a promotion urgent jobs may take while other jobs are due: three
    quarters, rounded up, so that a flood of urgent jobs slows the rest and never
    stops it (all of a promotion of one or two slots)."""
    return -(-slots * 3 // 4)


# The picks are MATERIALIZED: a sub-select with LIMIT and SKIP LOCKED that the plan
# ran again (as a nested loop's inner side) would lock, and mark, other rows each time.
URGENT = Statement(
    "jobsys_urgent",
    f"""
WITH pick AS MATERIALIZED (
  SELECT user_id, id, created_at FROM jobs j WHERE j.queue = :queue AND {_DUE}
    AND j.priority >= {URGENT_PRIORITY}
  ORDER BY j.priority DESC, j.run_after LIMIT :limit FOR UPDATE SKIP LOCKED)
UPDATE jobs j SET dispatched_at = now()
FROM pick
WHERE {_PICKED}
RETURNING {_COLUMNS}, j.run_after, {_KEYED}
""",
    [("queue", "text"), ("limit", "integer")],
)

WAITING = Statement(
    "jobsys_waiting",
    """
SELECT f.user_id, f.vtime, COALESCE(l.weight, 1.0) AS weight,
  f.since < now() - make_interval(secs => :aging) AS may_have_aged,
  f.vtime <= COALESCE(c.vclock, 0) AS behind
FROM fair_users f LEFT JOIN user_limits l ON l.user_id = f.user_id
  LEFT JOIN fair_queues c ON c.queue = f.queue
WHERE f.queue = :queue AND f.next_due IS NOT NULL AND f.next_due <= now()
  AND (NOT :behind OR f.vtime <= COALESCE(c.vclock, 0))
ORDER BY f.vtime, f.user_id LIMIT :limit
FOR UPDATE OF f SKIP LOCKED
""",
    [("queue", "text"), ("limit", "integer"), ("aging", "float8"), ("behind", "boolean")],
)

PICK = Statement(
    "jobsys_pick",
    f"""
WITH pick AS MATERIALIZED (
  SELECT p.user_id, p.id, p.created_at
  FROM unnest(CAST(:users AS text[]), CAST(:counts AS integer[])) AS a(user_id, n)
  CROSS JOIN LATERAL (
    SELECT j.user_id, j.id, j.created_at FROM jobs j
    WHERE j.user_id = a.user_id AND j.queue = :queue AND {_DUE}
    ORDER BY j.priority DESC, j.run_after LIMIT a.n FOR UPDATE SKIP LOCKED) p
  -- The planner cannot size the lateral picks; the total tells it they are few,
  -- so it updates them by key instead of scanning every partition.
  LIMIT :total)
UPDATE jobs j SET dispatched_at = now()
FROM pick
WHERE {_PICKED}
RETURNING {_COLUMNS}, j.run_after, {_KEYED}
""",
    [("queue", "text"), ("users", "text[]"), ("counts", "integer[]"), ("total", "integer")],
)

# Aging: each user's oldest due job that has waited longer than :aging seconds, ahead
# of its user's other jobs whatever their priority (the oldest of each priority's
# first job, urgent ones aside: eight probes of jobs_backlog_idx per user).
AGED = Statement(
    "jobsys_aged",
    f"""
WITH pick AS MATERIALIZED (
  SELECT o.user_id, o.id, o.created_at
  FROM unnest(CAST(:users AS text[])) AS a(user_id)
  CROSS JOIN LATERAL (
    SELECT h.user_id, h.id, h.created_at
    FROM generate_series(0, {URGENT_PRIORITY - 1}) AS p(priority)
    CROSS JOIN LATERAL (
      SELECT j.user_id, j.id, j.created_at, j.run_after FROM jobs j
      WHERE j.user_id = a.user_id AND j.queue = :queue AND {_DUE} AND j.priority = p.priority
        AND j.run_after < now() - make_interval(secs => :aging)
      ORDER BY j.run_after LIMIT 1 FOR UPDATE SKIP LOCKED) h
    ORDER BY h.run_after LIMIT 1) o)
UPDATE jobs j SET dispatched_at = now()
FROM pick
WHERE {_PICKED}
RETURNING {_COLUMNS}, j.run_after, {_KEYED}
""",
    [("queue", "text"), ("users", "text[]"), ("aging", "float8")],
)

# A user's next due time: now, if any of its jobs is due (one index probe: the first
# due job in the user's order); else the earliest of each priority's first job (ten
# probes, for a user with only delayed jobs); NULL when nothing is left waiting.
_BACKLOG_OF_F = (
    "j.queue = f.queue AND j.user_id = f.user_id AND j.status = 'queued'"
    " AND j.dispatched_at IS NULL"
)
RESHARE = Statement(
    "jobsys_reshare",
    f"""
UPDATE fair_users f SET vtime = a.vtime, next_due = COALESCE(
  (SELECT j.run_after FROM jobs j WHERE {_BACKLOG_OF_F} AND j.run_after <= now() AND {_ROOM}
   ORDER BY j.priority DESC, j.run_after LIMIT 1),
  -- Due jobs whose keys are all at their limit: a holder's end wakes them
  -- (KEY_FREED); should none come, look again after :recheck seconds.
  (SELECT now() + make_interval(secs => :recheck) FROM jobs j
   WHERE {_BACKLOG_OF_F} AND j.run_after <= now() LIMIT 1),
  (SELECT min(h.run_after) FROM generate_series(0, 9) AS p(priority)
   CROSS JOIN LATERAL (
     SELECT j.run_after FROM jobs j WHERE {_BACKLOG_OF_F} AND j.priority = p.priority
     ORDER BY j.run_after LIMIT 1) h))
FROM unnest(CAST(:users AS text[]), CAST(:vtimes AS float8[])) AS a(user_id, vtime)
WHERE f.queue = :queue AND f.user_id = a.user_id
""",
    [("queue", "text"), ("users", "text[]"), ("vtimes", "float8[]"), ("recheck", "float8")],
)

# Promoters holding jobs of one key take turns, and each counts the key's holders
# afresh (a new statement sees the others' committed promotions).
KEY_LOCK = Statement(
    "jobsys_key_lock",
    "SELECT pg_advisory_xact_lock(hashtextextended('jobsys.key:' || :key, 0))",
    [("key", "text")],
)
KEY_HELD = Statement(
    "jobsys_key_held",
    f"SELECT count(*) AS n FROM jobs h WHERE h.concurrency_key = :key AND {_HOLDING}",
    [("key", "text")],
)
UNMARK = Statement(
    "jobsys_unmark",
    """
UPDATE jobs SET dispatched_at = NULL
WHERE user_id = ANY(CAST(:users AS text[])) AND id = ANY(CAST(:ids AS uuid[]))
""",
    [("users", "text[]"), ("ids", "uuid[]")],
)

# The queue's virtual clock moves to where service is (the last slot's virtual start).
TICK = Statement(
    "jobsys_tick",
    """
INSERT INTO fair_queues AS c (queue, vclock) VALUES (:queue, :vclock)
ON CONFLICT (queue) DO UPDATE SET vclock = GREATEST(c.vclock, EXCLUDED.vclock)
""",
    [("queue", "text"), ("vclock", "float8")],
)

# Jobs promoted whose messages could not be published go back to the backlog.
RELEASE = sa.text(
    """
UPDATE jobs SET dispatched_at = NULL
WHERE user_id = ANY(CAST(:users AS text[])) AND id = ANY(CAST(:ids AS uuid[]))
  AND status = 'queued'
"""
)

_REJOIN = sa.text(
    """
UPDATE fair_users SET next_due = LEAST(next_due, now()), since = '-infinity'
WHERE queue = :queue AND user_id = ANY(CAST(:users AS text[]))
"""
)

NEXT_DUE = sa.text(
    "SELECT min(next_due) FROM fair_users WHERE queue = :queue AND next_due IS NOT NULL"
)

DISPATCHED = sa.text("SELECT dispatched_at IS NOT NULL FROM jobs WHERE id = :id")

# A keyed job left its key's holders: the users with jobs waiting for that key are
# due now, and the promoters of their queues wake (at commit). Past KEY_WAKE_MAX
# users, the others notice at their recheck.
KEY_WAKE_MAX = 100
_WAITING_FOR_KEY = "j.status = 'queued' AND j.dispatched_at IS NULL"
KEY_FREED = sa.text(
    f"""
WITH RECURSIVE k AS (
  SELECT concurrency_key FROM jobs
  WHERE user_id = :user_id AND id = :id AND concurrency_key IS NOT NULL),
-- The (queue, user) pairs waiting for the key, one index probe each (a loose scan
-- of jobs_key_waiters_idx: a user's thousand waiting jobs are not read one by one).
w AS (
  (SELECT j.queue, j.user_id, 1 AS n FROM k JOIN jobs j ON j.concurrency_key = k.concurrency_key
   WHERE {_WAITING_FOR_KEY} ORDER BY j.queue, j.user_id LIMIT 1)
  UNION ALL
  SELECT nx.queue, nx.user_id, w.n + 1 FROM w CROSS JOIN LATERAL (
    SELECT j.queue, j.user_id FROM k JOIN jobs j ON j.concurrency_key = k.concurrency_key
    WHERE {_WAITING_FOR_KEY} AND (j.queue, j.user_id) > (w.queue, w.user_id)
    ORDER BY j.queue, j.user_id LIMIT 1) nx
  WHERE w.n < {KEY_WAKE_MAX}),
-- Locked in one order, as every statement that locks several users' rows does.
locked AS (
  SELECT f.queue, f.user_id FROM fair_users f JOIN w ON f.queue = w.queue AND f.user_id = w.user_id
  WHERE f.next_due > now() ORDER BY f.queue, f.user_id FOR UPDATE OF f),
woke AS (
  UPDATE fair_users f SET next_due = now() FROM locked l
  WHERE f.queue = l.queue AND f.user_id = l.user_id
  RETURNING f.queue)
SELECT pg_notify('{ADMIT_CHANNEL}', q) FROM (SELECT DISTINCT queue AS q FROM woke) s
"""
)


@dataclasses.dataclass(frozen=True)
class Promotion:
    """Jobs marked dispatched, in the order to publish them."""

    rows: list[dict[str, Any]]
    # Every slot was filled: more due jobs may be waiting.
    full: bool
    # The jobs to publish at the front of the buffer: the first of each user that
    # was behind the queue's virtual clock.
    ahead: frozenset[uuid.UUID] = frozenset()


class Listener:
    """A connection of its own that LISTENs on the admission channel."""

    def __init__(self, url: str) -> None:
        dsn = sa.engine.make_url(normalize_url(url)).set(drivername="postgresql")
        self.conn = connect(dsn, application_name="jobsys-admission")
        self.conn.autocommit = True
        with self.conn.cursor() as cur:
            cur.execute(f"LISTEN {ADMIT_CHANNEL}")

    def fileno(self) -> int:
        return int(self.conn.fileno())

    def drain(self) -> dict[str, bool]:
        """The queues named by the notifications received so far: whether urgent work joined."""
        self.conn.poll()
        queues: dict[str, bool] = {}
        for note in self.conn.notifies:
            name = note.payload.removeprefix(URGENT_MARK)
            queues[name] = queues.get(name, False) or name != note.payload
        self.conn.notifies.clear()
        return queues

    def close(self) -> None:
        try:
            self.conn.close()
        except psycopg2.Error:
            pass


class AdmissionSql:
    """Promotion and per-user shares; mixed into the gateway, :class:`Store`."""

    url: str
    transaction: Callable[[], AbstractContextManager[sa.Connection]]

    def listener(self) -> Listener | None:
        """A listener for new backlog (None where the store cannot notify)."""
        return Listener(self.url)

    def promote(
        self,
        queue: str,
        slots: int,
        *,
        aging: float = AGING,
        recheck: float = KEY_RECHECK,
        behind: bool = False,
    ) -> Promotion:
        """Mark up to ``slots`` due backlog jobs of ``queue`` dispatched, fairly.

        With ``behind``, a catch-up: one job for each user at or behind the
        queue's virtual clock (see the module's docstring).

        A job that has waited longer than ``aging`` seconds goes ahead of its
        user's other jobs, whatever their priority (one per user and promotion).
        A user whose due jobs all wait for their concurrency keys is looked at
        again when a holder of one ends (:meth:`key_freed`), or after ``recheck``
        seconds.
        Runs on prepared statements with ``synchronous_commit`` off: a promotion
        lost in a crash only publishes its jobs again later.
        """
        if slots <= 0:
            return Promotion([], False)
        with self._promotions().transaction() as run:
            if behind:
                fair, ahead = _share(run, queue, slots, aging, recheck, behind=True)
                return Promotion(fair, len(fair) >= slots, ahead)
            cap = urgent_cap(slots)
            picked = run(URGENT, {"queue": queue, "limit": cap})
            urgent = hold_keys(run, picked)
            fair, ahead = _share(run, queue, slots - len(urgent), aging, recheck)
            if len(picked) == cap and len(urgent) + len(fair) < slots:
                # Nothing else is due: the urgent ones may have the rest too.
                more = {"queue": queue, "limit": slots - len(urgent) - len(fair)}
                urgent += hold_keys(run, run(URGENT, more))
        rows = _by_priority(urgent) + fair
        return Promotion(rows, len(rows) >= slots, ahead)

    def _promotions(self) -> PreparedSession:
        found = self.__dict__.get("_prepared")
        if found is None:
            found = self.__dict__["_prepared"] = PreparedSession(self.url)
        return found

    def release(self, rows: list[dict[str, Any]]) -> None:
        """Put promoted jobs back into the backlog (their publish failed)."""
        params = {"users": sorted({r["user_id"] for r in rows}), "ids": [r["id"] for r in rows]}
        with self.transaction() as conn:
            conn.execute(RELEASE, params)
            for queue in sorted({r["queue"] for r in rows}):
                conn.execute(_REJOIN, {"queue": queue, "users": params["users"]})

    def next_due(self, queue: str) -> Any:
        """When the earliest job waiting in ``queue``'s backlog is due (None: no backlog)."""
        with self.transaction() as conn:
            return conn.execute(NEXT_DUE, {"queue": queue}).scalar()

    def dispatched(self, job_id: uuid.UUID) -> bool:
        """Whether the job's message was published (False while it waits in the backlog)."""
        with self.transaction() as conn:
            return bool(conn.execute(DISPATCHED, {"id": job_id}).scalar())

    def key_freed(self, user_id: str, job_id: uuid.UUID) -> None:
        """The job left its concurrency key's holders (it ended, or went back to the
        backlog): the jobs waiting for that key are due at once, not at the recheck."""
        with self.transaction() as conn:
            conn.execute(KEY_FREED, {"user_id": user_id, "id": job_id})


def _share(
    run: Run, queue: str, slots: int, aging: float, recheck: float, *, behind: bool = False
) -> tuple[list[dict[str, Any]], frozenset[uuid.UUID]]:
    """The fair part of a promotion: slots shared among waiting users by virtual time
    (a catch-up: one for each user behind the clock), and the jobs to publish ahead."""
    if slots <= 0:
        return [], frozenset()
    found = run(WAITING, {"queue": queue, "limit": slots, "aging": aging, "behind": behind})
    waiting = [Waiting(r["user_id"], r["vtime"], r["weight"]) for r in found]
    # Only users waiting longer than the aging time can have aged jobs to look for.
    old = {r["user_id"] for r in found if r["may_have_aged"]}
    if not waiting:
        return [], frozenset()
    rounds = 0

    def pick(counts: dict[str, int], total: int) -> dict[str, list[dict[str, Any]]]:
        nonlocal rounds
        rounds += 1
        picked: dict[str, list[dict[str, Any]]] = defaultdict(list)
        aging_users = [u for u in counts if u in old] if rounds == 1 else []
        if aging_users:  # each granted user's aged job first, once per promotion
            aged = run(AGED, {"queue": queue, "users": aging_users, "aging": aging})
            for row in hold_keys(run, aged):
                picked[row["user_id"]].append(row)
        left = {u: n - len(picked[u]) for u, n in counts.items() if n > len(picked[u])}
        if left:
            users = list(left)
            params = {"queue": queue, "users": users, "counts": [left[u] for u in users]}
            total -= sum(len(rows) for rows in picked.values())
            for row in hold_keys(run, _by_priority(run(PICK, {**params, "total": total}))):
                picked[row["user_id"]].append(row)
        return picked

    done = one_each(waiting, pick) if behind else share(waiting, slots, pick)
    vtimes = done.vtimes
    users, times = list(vtimes), list(vtimes.values())
    run(RESHARE, {"queue": queue, "users": users, "vtimes": times, "recheck": recheck})
    if done.frontier is not None:
        run(TICK, {"queue": queue, "vclock": done.frontier})
    ahead = done.firsts({r["user_id"] for r in found if r["behind"]})
    return done.jobs, frozenset(r["id"] for r in ahead)


def hold_keys(run: Run, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The promoted rows whose keys have room for them, in their order; the others
    (the last of each key past its limit) go back to the backlog."""
    keyed: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        if row["concurrency_key"] is not None:
            keyed[row["concurrency_key"]].append(row)
    back: list[dict[str, Any]] = []
    for key in sorted(keyed):  # in one order on every promoter: no deadlock
        run(KEY_LOCK, {"key": key})
        (held,) = run(KEY_HELD, {"key": key})
        excess = held["n"] - keyed[key][0]["concurrency"]
        if excess > 0:
            back += keyed[key][-excess:]
    if not back:
        return rows
    users = sorted({r["user_id"] for r in back})
    run(UNMARK, {"users": users, "ids": [r["id"] for r in back]})
    gone = {r["id"] for r in back}
    return [r for r in rows if r["id"] not in gone]


def _by_priority(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(rows, key=lambda r: (-r["priority"], r["run_after"]))
