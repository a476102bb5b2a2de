"""Fair scheduling: what a light user sees while a heavy user floods the fleet, in one run.

    .venv/bin/python bench/fairness.py                       # the full run (long)
    .venv/bin/python bench/fairness.py --noop 0 --backlog 100000 --backlog-users 1000

On the machine's PostgreSQL and Redis (a database and a Redis db of its own,
created fresh and dropped at the end). One node, ``celery -A jobsys worker -P
prefork -c 2``, with admission on, then off (``JOBSYS_ADMISSION``); with
``--rounds N``, N such pairs, every other one off first, each pair's throughput
ratio printed and their median (the machine's speed drifts within a run):

1. unloaded: ``--samples`` light jobs, one every 0.2 s, on an idle node;
2. flood: a heavy user enqueues ``--heavy`` jobs of ``--seconds`` each with
   ``enqueue_many``; five light users enqueue one job every ``--light-every``
   seconds, round robin, until the flood has run; then the same with ``--noop``
   no-op jobs.

A light job's start latency is its handler's ``time.time()`` (recorded in Redis)
minus the client's just before ``enqueue``. The heavy user's throughput is its
jobs over the span of their start stamps. Then, in this process, the cost of one
promotion (``Store.promote`` of ``--slots`` jobs) on a backlog of ``--backlog``
jobs spread over ``--backlog-users`` users.
"""

from __future__ import annotations

import argparse
import atexit
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.stamps import STAMPS_KEY  # noqa: E402  (after the path is set)

LIGHT_USERS = 5
_workers: list[subprocess.Popen[bytes]] = []


def environ(args: argparse.Namespace, admission: bool) -> dict[str, str]:
    return {
        "JOBSYS_DATABASE_URL": args.db_url,
        "JOBSYS_BROKER_URL": args.redis_url,
        "JOBSYS_IMPORTS": "bench.kinds",
        "JOBSYS_ADMISSION": "true" if admission else "false",
        "BENCH_REDIS_URL": args.redis_url,
    }


def _recreate(args: argparse.Namespace, *, create: bool) -> None:
    """Drop the bench's database, and create it again when ``create``."""
    import psycopg2

    base, _, name = args.db_url.rpartition("/")
    admin = psycopg2.connect(base + "/postgres")
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if create:
            cur.execute(f'CREATE DATABASE "{name}"')
    admin.close()


def prepare(args: argparse.Namespace) -> None:
    """A fresh database with the migrations, and this process's jobsys pointed at it."""
    _recreate(args, create=True)
    os.environ.update(environ(args, True))
    from jobsys.store.migrate import upgrade

    upgrade(args.db_url)


def drop(args: argparse.Namespace) -> None:
    _recreate(args, create=False)


class Bench:
    """One variant (admission on or off): its runtime, its worker and the stamps."""

    def __init__(self, args: argparse.Namespace, admission: bool) -> None:
        import redis

        from jobsys.config import Settings
        from jobsys.engine.runtime import Runtime

        self.args, self.admission = args, admission
        self.rt = Runtime(Settings.from_variables(environ(args, admission)))
        self.redis = redis.Redis.from_url(args.redis_url)
        self.worker: subprocess.Popen[bytes] | None = None

    def reset(self) -> None:
        self.redis.flushdb()
        self.redis.set("jobsys:broker-epoch", "bench")  # a broker that has been up all along
        with self.rt.postgres.transaction() as conn:
            conn.exec_driver_sql("TRUNCATE jobs, fair_users, workers, dead_letters, audit_events")

    def start_worker(self) -> None:
        cmd = [sys.executable, "-m", "celery", "-A", "jobsys", "worker", "-P", "prefork"]
        cmd += ["-c", "2", "-l", "warning", "-n", f"fair-{self.admission}@%h"]
        env = {**os.environ, **environ(self.args, self.admission), "PYTHONPATH": str(ROOT)}
        log = open(self.args.log, "ab")
        self.worker = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        _workers.append(self.worker)
        deadline = time.monotonic() + 60
        while not any(w.status == "alive" for w in self.rt.store.list_workers()):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the worker did not register; see {self.args.log}")
            time.sleep(0.2)

    def stop_worker(self) -> None:
        if self.worker is not None:
            _kill(self.worker)
            self.worker = None

    def started(self) -> dict[str, float]:
        """Job id -> the time its handler started."""
        out = {}
        for line in self.redis.lrange(STAMPS_KEY, 0, -1):
            ident, at = line.decode().split()
            out[ident] = float(at)
        return out

    def _heavy_started(self, heavy: set[str]) -> int:
        started = self.started()
        return sum(1 for i in heavy if i in started)

    def light(self, user: str) -> tuple[str, float]:
        from jobsys import enqueue

        at = time.time()
        result = enqueue("bench.stamp", user_id=user, runtime=self.rt)
        return result.id, at

    def unloaded(self) -> list[float]:
        # A first job warms the pool up (its processes start after the node registers).
        self.latencies([self.light("warm-up")])
        sent = []
        for i in range(self.args.samples):
            sent.append(self.light(f"light-{i % LIGHT_USERS}"))
            time.sleep(0.2)
        return self.latencies(sent)

    def latencies(self, sent: list[tuple[str, float]], timeout: float = 120.0) -> list[float]:
        deadline = time.monotonic() + timeout
        while True:
            started = self.started()
            if all(ident in started for ident, _ in sent) or time.monotonic() > deadline:
                return [started[i] - at for i, at in sent if i in started]
            time.sleep(0.1)

    def flood(self, n: int, seconds: float) -> dict[str, Any]:
        """A heavy user's ``n`` jobs, light users' jobs every ``--light-every`` s meanwhile."""
        from jobsys import enqueue_many

        self.redis.delete(STAMPS_KEY)
        jobs = [("heavy", {"seconds": seconds}) for _ in range(n)]
        t0 = time.monotonic()
        heavy = {r.id for r in enqueue_many("bench.sleep", jobs, runtime=self.rt)}
        enqueue_s = time.monotonic() - t0
        sent: list[tuple[str, float]] = []
        deadline = time.monotonic() + self.args.flood_timeout
        while time.monotonic() < deadline:
            # Counted, not read: reading every stamp each turn cost this process 160 ms
            # of CPU by the end of a 50,000-job flood (a third of a core, the node's).
            if self.redis.llen(STAMPS_KEY) >= n and self._heavy_started(heavy) >= n:
                break
            sent.append(self.light(f"light-{len(sent) % LIGHT_USERS}"))
            time.sleep(self.args.light_every)
        stamps = sorted(at for i, at in self.started().items() if i in heavy)
        span = stamps[-1] - stamps[0] if len(stamps) > 1 else float("nan")
        return {
            "light": self.latencies(sent),
            "heavy_per_s": (len(stamps) - 1) / span if span else float("nan"),
            "heavy_done": len(stamps),
            "enqueue_s": enqueue_s,
        }


def _kill(proc: subprocess.Popen[bytes]) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
            proc.wait(10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
    if proc in _workers:
        _workers.remove(proc)


@atexit.register
def _kill_all() -> None:
    for proc in list(_workers):
        _kill(proc)


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def shown(values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    return (
        f"p50 {pct(ms, 50):8.1f} ms  p95 {pct(ms, 95):8.1f} ms  max {max(ms, default=0):8.1f} ms"
        f"  (n={len(ms)})"
    )


def run_variant(args: argparse.Namespace, admission: bool) -> dict[str, Any]:
    bench = Bench(args, admission)
    bench.reset()
    bench.start_worker()
    try:
        out: dict[str, Any] = {"unloaded": bench.unloaded()}
        out["flood"] = bench.flood(args.heavy, args.seconds)
        if args.noop:
            bench.reset()
            bench.stop_worker()
            bench.start_worker()
            # As before the first flood: a node registers before its pool processes
            # have run a job, and the first light job would wait for them (~1 s).
            bench.latencies([bench.light("warm-up")])
            out["noop"] = bench.flood(args.noop, 0.0)
    finally:
        bench.stop_worker()
    return out


def promotion_cost(args: argparse.Namespace) -> dict[str, float]:
    """Seconds per promotion of ``--slots`` jobs, on a backlog of ``--backlog`` jobs."""
    from jobsys.store import NewJob

    bench = Bench(args, True)
    bench.reset()
    store = bench.rt.postgres
    t0 = time.monotonic()
    chunk = 50_000
    for start in range(0, args.backlog, chunk):
        store.insert_many(
            [
                NewJob(
                    id=uuid.uuid4(),
                    user_id=f"user-{i % args.backlog_users}",
                    kind="bench.noop",
                    queue="default",
                    payload={},
                    max_attempts=5,
                    admitted=False,
                )
                for i in range(start, min(args.backlog, start + chunk))
            ]
        )
    loaded = time.monotonic() - t0
    times = []
    for _ in range(args.promotions):
        t = time.perf_counter()
        promoted = store.promote("default", args.slots)
        times.append(time.perf_counter() - t)
        assert len(promoted.rows) == args.slots, "the backlog ran dry"
    median = statistics.median(times)
    return {"load_s": loaded, "promotion_s": median, "per_job_s": median / args.slots}


def tick_cost(args: argparse.Namespace) -> dict[str, float]:
    """One periodic-sync tick with ``--tick-users`` users due (``jobsys schedule tick``)."""
    import jobsys.tasks  # noqa: F401  (registers sync.user, the kind a tick enqueues)
    from jobsys.pipeline.schedule import tick

    bench = Bench(args, True)
    bench.reset()
    with bench.rt.postgres.transaction() as conn:
        conn.exec_driver_sql("TRUNCATE users CASCADE")
        conn.exec_driver_sql(
            "INSERT INTO users (id, email) SELECT 'tick-' || g, 'tick-' || g || '@example.com'"
            f" FROM generate_series(1, {args.tick_users}) g"
        )
    done = tick(bench.rt)
    again = tick(bench.rt)
    assert len(done.enqueued) == args.tick_users and again.due == 0, "a tick missed users"
    return {"tick_s": done.seconds, "batches": done.batches, "idle_tick_s": again.seconds}


def report(args: argparse.Namespace, pairs: list[tuple[dict[str, Any], dict[str, Any]]]) -> None:
    """Latencies pooled over the rounds; throughput per round, and the median ratio."""
    print(f"\nlight users' start latency (one node, -c 2; {args.heavy} heavy jobs of "
          f"{args.seconds * 1000:.0f} ms, light jobs every {args.light_every} s;"
          f" {len(pairs)} round(s) pooled)")  # fmt: skip
    for name, side in (("admission on ", 0), ("admission off", 1)):
        for label, key in (("unloaded ", "unloaded"), ("flooded  ", "flood"), ("no-op", "noop")):
            if key not in pairs[0][side]:
                continue
            values = [v for pair in pairs for v in _light(pair[side], key)]
            label = f"no-op x{args.noop}" if key == "noop" else label
            print(f"  {name}  {label} {shown(values)}")
    print("\nheavy user's throughput (jobs started per second over the flood)")
    for scenario in ("flood", "noop"):
        if scenario not in pairs[0][0]:
            continue
        ratios = []
        for i, (on, off) in enumerate(pairs, 1):
            a, b = on[scenario]["heavy_per_s"], off[scenario]["heavy_per_s"]
            ratios.append(a / b)
            first = "on" if i % 2 else "off"
            print(
                f"  {scenario:5}  on {a:7.1f}/s   off {b:7.1f}/s   on/off {a / b:5.2f}x"
                f"   (round {i}, {first} first)"
            )
        if len(ratios) > 1:
            print(f"  {scenario:5}  median on/off over {len(ratios)} rounds: "
                  f"{statistics.median(ratios):.2f}x")  # fmt: skip


def _light(result: dict[str, Any], key: str) -> list[float]:
    return list(result["unloaded"] if key == "unloaded" else result[key]["light"])


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--db-url", default="postgresql://postgres@127.0.0.1:5432/jobsys_bench_fair")
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/13")
    p.add_argument("--heavy", type=int, default=4000, help="heavy user's jobs")
    p.add_argument("--seconds", type=float, default=0.02, help="each heavy job's work, s")
    p.add_argument("--noop", type=int, default=50_000, help="no-op flood (0: skip)")
    p.add_argument("--light-every", type=float, default=0.5, help="s between light jobs")
    p.add_argument("--samples", type=int, default=20, help="unloaded light jobs")
    p.add_argument(
        "--rounds", type=int, default=1, help="on/off pairs, alternating which runs first"
    )
    p.add_argument("--flood-timeout", type=float, default=600.0)
    p.add_argument("--backlog", type=int, default=1_000_000, help="jobs for the promotion cost")
    p.add_argument("--backlog-users", type=int, default=10_000)
    p.add_argument("--slots", type=int, default=100, help="jobs per timed promotion")
    p.add_argument("--promotions", type=int, default=20)
    p.add_argument("--tick-users", type=int, default=100_000, help="users due at one tick")
    p.add_argument(
        "--parts", default="latency,promotion,tick", help="which measures to run, comma-separated"
    )
    p.add_argument("--log", default="/tmp/jobsys-bench-fairness.log")
    args = p.parse_args()
    parts = (
        "heavy",
        "samples",
        "rounds",
        "backlog",
        "backlog_users",
        "slots",
        "promotions",
        "tick_users",
    )
    for name in parts:
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.noop < 0 or args.seconds < 0 or args.light_every <= 0:
        p.error("--noop and --seconds must not be negative, --light-every must be positive")
    args.parts = {p.strip() for p in args.parts.split(",")}
    if not args.parts <= {"latency", "promotion", "tick"}:
        p.error("--parts names latency, promotion or tick")
    return args


def main() -> None:
    args = parse()
    prepare(args)
    try:
        if "latency" in args.parts:
            pairs = []
            for i in range(args.rounds):
                # Alternating which side goes first, so a machine that drifts faster or
                # slower during the run favours neither.
                order = (True, False) if i % 2 == 0 else (False, True)
                got = {admission: run_variant(args, admission) for admission in order}
                pairs.append((got[True], got[False]))
            report(args, pairs)
        if "promotion" in args.parts:
            cost = promotion_cost(args)
            print(
                f"\npromotion of {args.slots} jobs on a backlog of {args.backlog:,} jobs over "
                f"{args.backlog_users:,} users (loaded in {cost['load_s']:.0f} s): "
                f"{cost['promotion_s'] * 1000:.1f} ms, {cost['per_job_s'] * 1e6:.0f} us a job"
            )
        if "tick" in args.parts:
            ticked = tick_cost(args)
            print(
                f"\nperiodic-sync tick, {args.tick_users:,} users due: {ticked['tick_s']:.2f} s"
                f" ({ticked['batches']:.0f} batches); the next tick, nobody due:"
                f" {ticked['idle_tick_s'] * 1000:.1f} ms"
            )
    finally:
        drop(args)


if __name__ == "__main__":
    main()
