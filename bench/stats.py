"""``jobsys stats`` over a long history: the report's statements timed over 10M attempts.

    .venv/bin/python bench/stats.py                          # 10,000,000 attempts (minutes)
    .venv/bin/python bench/stats.py --attempts 200000        # a smoke run

On the machine's PostgreSQL (a database of its own, created fresh with the
migrations and dropped at the end unless ``--keep``). Seeds ``--users`` users,
``--attempts`` attempts and one pipeline run per ``--jobs-per-run`` attempts,
spread evenly over ``--days`` days ending now (appended in ``finished_at``
order, as workers write them), rolls up every whole hour that ended an hour ago
(``jobsys/store/rollup.py``, as the sweeper does, pass after pass; timed), then
times :meth:`StatsSql.read` (the statements of one report, in one transaction)
for several windows and filters, as the engine's role and as one user under
row-level security; the median of ``--repeat`` readings is printed with the
attempts in the window. ``--no-rollup`` leaves every attempt raw (the reports
as before roll-ups).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.fairness import _recreate  # noqa: E402  (after the path is set)

KINDS = 8
CHUNK = 1_000_000
DEADLINES = {f"bench.k{n}": 60.0 for n in range(0, KINDS, 2)}

_USERS = """
INSERT INTO users (id, email)
SELECT 'u' || lpad(i::text, 6, '0'), 'u' || i || '@example.com' FROM generate_series(0, :n - 1) i
"""
# Attempt i finished at start + i * step: 90% succeeded, 7% retried, 2% dead, 1% cancelled.
_ATTEMPTS = """
INSERT INTO attempts (job_id, user_id, kind, queue, attempt, outcome, reason, priority, created_at,
  due_at, started_at, finished_at, cpu_s, wall_s, google_requests, quota_units)
SELECT gen_random_uuid(), 'u' || lpad((i % :users)::text, 6, '0'), 'bench.k' || (i % 8), 'default',
  1 + (i % 3),
  CASE WHEN i % 100 < 90 THEN 'succeeded' WHEN i % 100 < 97 THEN 'retried'
       WHEN i % 100 < 99 THEN 'dead' ELSE 'cancelled' END,
  CASE WHEN i % 100 BETWEEN 90 AND 98 THEN (ARRAY['transient', 'quota', 'bug', 'auth'])[1 + i % 4]
  END,
  (i % 10)::smallint, f - make_interval(secs => 5 + i % 120), f - make_interval(secs => 2 + i % 4),
  f - make_interval(secs => 1), f, 0.01 * (i % 50), 0.02 * (i % 50), i % 7, 5 * (i % 7)
FROM generate_series(:lo, :hi) i,
  LATERAL (SELECT now() - make_interval(secs => :span) + make_interval(secs => i * :step)) t(f)
"""
_RUNS = """
INSERT INTO pipeline_runs (id, user_id, status, created_at, finished_at)
SELECT gen_random_uuid(), 'u' || lpad((i % :users)::text, 6, '0'),
  CASE WHEN i % 20 = 0 THEN 'failed' ELSE 'succeeded' END,
  f - make_interval(secs => 30 + i % 600), f
FROM generate_series(0, :n - 1) i,
  LATERAL (SELECT now() - make_interval(secs => :span) + make_interval(secs => i * :step)) t(f)
"""


def seed(args: argparse.Namespace) -> float:
    import sqlalchemy as sa

    from jobsys.store import Store

    store, span = Store(args.db_url), args.days * 86_400.0
    began = time.perf_counter()
    with store.transaction() as conn:
        conn.execute(sa.text(_USERS), {"n": args.users})
        runs = args.attempts // args.jobs_per_run
        params = {"users": args.users, "n": runs, "span": span, "step": span / max(runs, 1)}
        conn.execute(sa.text(_RUNS), params)
    step = span / args.attempts
    for lo in range(0, args.attempts, CHUNK):
        hi = min(lo + CHUNK, args.attempts) - 1
        params = {"users": args.users, "lo": lo, "hi": hi, "span": span, "step": step}
        with store.transaction() as conn:
            conn.execute(sa.text(_ATTEMPTS), params)
        print(f"  seeded {hi + 1:,} attempts", flush=True)
    with store.durable.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("VACUUM ANALYZE")
    store.dispose()
    return time.perf_counter() - began


def roll_up(args: argparse.Namespace) -> None:
    from jobsys.store import Store, rollup

    store = Store(args.db_url)
    began = time.perf_counter()
    hours = rollup.roll_up_all(store)
    took = time.perf_counter() - began
    with store.durable.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("VACUUM ANALYZE")
    store.dispose()
    print(f"rolled up {hours} hours in {took:.1f} s ({took / max(hours, 1) * 1000:.0f} ms/hour)")


def cases(args: argparse.Namespace) -> list[tuple[str, dict[str, object]]]:
    user = "u" + "0".rjust(6, "0")
    return [
        ("--since 1h", {"window": 3600.0}),
        ("--since 24h", {"window": 86_400.0}),
        ("--since 7d", {"window": 7 * 86_400.0}),
        (f"--since {args.days}d (everything)", {"window": args.days * 86_400.0}),
        ("--since 24h --kind bench.k3", {"window": 86_400.0, "kind": "bench.k3"}),
        ("--since 7d --kind bench.k3", {"window": 7 * 86_400.0, "kind": "bench.k3"}),
        (f"--since 24h --user {user}", {"window": 86_400.0, "user_id": user}),
        (f"--since 7d --user {user}", {"window": 7 * 86_400.0, "user_id": user}),
        (f"--since 24h as {user} (row security)", {"window": 86_400.0, "scope": user}),
        (
            f"--since 24h --user {user} as {user} (the API's)",
            {"window": 86_400.0, "scope": user, "user_id": user},
        ),
    ]


def measure(args: argparse.Namespace) -> None:
    import sqlalchemy as sa

    from jobsys.store import Store, roles
    from jobsys.store.stats import StatsQuery, StatsSql

    store = Store(args.db_url)
    roles.create(store)
    print(f"{'report':52} {'attempts in window':>18} {'median':>9} {'max':>9}")
    for name, case in cases(args):
        scope = case.pop("scope", None)
        query = StatsQuery(freshness_slo=900.0, deadlines=DEADLINES, **case)  # type: ignore[arg-type]
        reader = StatsSql(store, scope=scope)  # type: ignore[arg-type]
        times = []
        for _ in range(args.repeat):
            began = time.perf_counter()
            found = reader.read(query)
            times.append(time.perf_counter() - began)
        attempts = sum(k.attempts for k in found.kinds)
        print(f"{name:52} {attempts:>18,} {statistics.median(times) * 1000:>7.0f}ms"
              f" {max(times) * 1000:>7.0f}ms", flush=True)  # fmt: skip
    with store.transaction() as conn:
        for table in ("attempts", "attempt_hours", "attempt_hour_buckets"):
            size = conn.execute(
                sa.text(
                    "SELECT pg_size_pretty(pg_total_relation_size(:t)), count(*) FROM " + table
                ),
                {"t": table},
            ).one()
            print(f"{table} with its indexes: {size[0]} ({size[1]:,} rows)")
    store.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default_db = "postgresql://postgres@127.0.0.1:5432/jobsys_bench_stats"
    parser.add_argument("--db-url", default=os.environ.get("BENCH_DATABASE_URL", default_db))
    parser.add_argument("--attempts", type=int, default=10_000_000)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--jobs-per-run", type=int, default=10)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--no-rollup", action="store_true", help="report from raw attempts only")
    args = parser.parse_args()
    _recreate(args, create=True)
    from jobsys.store.migrate import upgrade

    upgrade(args.db_url)
    try:
        print(f"seeding {args.attempts:,} attempts over {args.days} days, {args.users:,} users")
        print(f"seeded in {seed(args):.0f} s")
        if not args.no_rollup:
            roll_up(args)
        measure(args)
    finally:
        if not args.keep:
            _recreate(args, create=False)


if __name__ == "__main__":
    main()
