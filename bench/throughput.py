"""jobsys vs bare Celery, side by side on the same Redis and machine, in one run.

    .venv/bin/python bench/throughput.py                 # 20,000 jobs, 3 runs
    .venv/bin/python bench/throughput.py --jobs 2000 --runs 1

Per run and per variant (bare Celery, jobsys with task events, jobsys without;
``jobsys+metrics`` with /metrics served, ``jobsys+tracing`` with every process
tracing to an in-memory exporter, whose processing is printed beside plain
jobsys's):

1. ``.delay()`` rate: one client process, no worker running, ``--delay-calls`` calls.
2. Bulk enqueue of ``--jobs`` no-op jobs, no worker running: jobsys
   ``enqueue_many`` in calls of ``--batch`` jobs; bare Celery the same number
   of ``apply_async`` calls inside one kombu ``producer.batch()`` per call.
3. Processing: start one ``celery worker -P prefork -c 2`` on that backlog and
   poll (every ``--poll`` s) how many jobs are done until all are. Throughput is
   (done_last - done_first) / (t_last - t_first) over the polls, so the
   worker's start-up is excluded equally for both. "Done" for jobsys = rows
   with status 'succeeded' (Postgres); for bare Celery = messages acked =
   N - LLEN(queue) - HLEN(unacked) (Redis), which adds no work to the bare task.
4. Start latency at low load, same (now idle) worker: ``--samples`` single
   ``.delay()`` calls spaced ``--gap`` s apart; latency = the handler's
   ``time.time()`` (RPUSHed to Redis by both systems' stamp task) minus the
   client's ``time.time()`` just before ``.delay()``.

Between variants the bench Redis db is flushed and the jobs tables truncated.
For jobsys, the sweeper's broker-epoch key is set after each flush (a broker
that has been up all along); otherwise the worker's first sweep would take
the flush for a broker reset and re-publish the whole backlog.

Each client phase runs in its own subprocess (settings such as
JOBSYS_TASK_EVENTS are read once per process). Workers are started with
start_new_session=True and their whole process group is killed at the end.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
EPOCH_KEY = "jobsys:broker-epoch"
STAMPS_KEY = "bench:stamps"
VARIANTS = {
    # name: (system, task events)
    "bare": ("bare", False),
    "bare+events": ("bare", True),
    "jobsys": ("jobsys", False),
    "jobsys+events": ("jobsys", True),
    # jobsys from the tree given by --patched (a scratch copy with proposed changes)
    "patched": ("jobsys", False),
    "patched+events": ("jobsys", True),
    # jobsys with each worker node serving /metrics (multiprocess mode, jobs counted)
    "jobsys+metrics": ("jobsys", False),
    # jobsys with every process (client, node, pool children) tracing to memory
    "jobsys+tracing": ("jobsys", False),
}
METRICS_VARIANTS = {"jobsys+metrics"}
TRACING_VARIANTS = {"jobsys+tracing"}
# Processing of an observed variant against plain jobsys (tracing and metrics off):
# metrics may cost 5%, tracing to memory 15%.
OBSERVED_TARGETS = {"jobsys+metrics": 0.95, "jobsys+tracing": 0.85}
USERS = 100  # jobs are spread over this many user ids (hash partitions)


# --------------------------------------------------------------------------- environment


def variant_env(args: argparse.Namespace, variant: str) -> dict[str, str]:
    system, events = VARIANTS[variant]
    env = dict(os.environ)
    first = [args.patched] if variant.startswith("patched") else []
    env["PYTHONPATH"] = os.pathsep.join(
        first + [str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    )
    env["BENCH_REDIS_URL"] = args.redis_url
    if system == "bare":
        env["BENCH_BROKER_URL"] = args.redis_url
        env["BENCH_BARE_EVENTS"] = "1" if events else "0"
    else:
        env["JOBSYS_DATABASE_URL"] = args.db_url
        env["JOBSYS_BROKER_URL"] = args.redis_url
        env["JOBSYS_IMPORTS"] = "bench.kinds"
        env["JOBSYS_TASK_EVENTS"] = "true" if events else "false"
        env.pop("JOBSYS_METRICS_PORT", None)
        if variant in METRICS_VARIANTS:
            env["JOBSYS_METRICS_PORT"] = str(args.metrics_port)
        if variant in TRACING_VARIANTS:
            env["JOBSYS_IMPORTS"] = "bench.kinds,bench.traced"
        else:
            # Tracing off means no OTEL_* configuration at all (as jobsys checks it).
            for name in [n for n in env if n.startswith("OTEL_")] + ["JOBSYS_TRACE_FILE"]:
                env.pop(name, None)
    return env


def python() -> str:
    return sys.executable


def workdir(args: argparse.Namespace, variant: str) -> Path:
    """Where a variant's worker runs: ``python -m`` puts that folder first on sys.path,
    ahead of PYTHONPATH, so a patched worker must start in the patched tree."""
    return Path(args.patched) if variant.startswith("patched") else ROOT


# --------------------------------------------------------------------------- database / redis


def admin_url(db_url: str) -> tuple[str, str]:
    base, _, name = db_url.rpartition("/")
    return base + "/postgres", name


def create_database(args: argparse.Namespace) -> None:
    import psycopg2

    admin, name = admin_url(args.db_url)
    conn = psycopg2.connect(admin)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()
    # Alembic runs jobsys code that reads settings; give it the URLs first.
    env = variant_env(args, "jobsys")
    code = "import sys; from jobsys.store.migrate import upgrade; upgrade(sys.argv[1])"
    subprocess.run([python(), "-c", code, args.db_url], env=env, cwd=ROOT, check=True, timeout=120)


def drop_database(args: argparse.Namespace) -> None:
    import psycopg2

    admin, name = admin_url(args.db_url)
    conn = psycopg2.connect(admin)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    conn.close()


class Services:
    """The orchestrator's own handles: plain redis-py and psycopg2, no jobsys or Celery."""

    def __init__(self, args: argparse.Namespace) -> None:
        import psycopg2
        import redis

        self.redis = redis.Redis.from_url(args.redis_url)
        self.pg = psycopg2.connect(args.db_url)
        self.pg.autocommit = True

    def reset(self, variant: str) -> None:
        self.redis.flushdb()
        with self.pg.cursor() as cur:
            cur.execute("TRUNCATE jobs, fair_users, dead_letters, workers, audit_events")
            cur.execute("VACUUM ANALYZE jobs")
        if VARIANTS[variant][0] == "jobsys":
            self.redis.set(EPOCH_KEY, "bench")

    def done(self, variant: str, n: int) -> int:
        if VARIANTS[variant][0] == "jobsys":
            with self.pg.cursor() as cur:
                cur.execute("SELECT count(*) FROM jobs WHERE status = 'succeeded'")
                return int(cur.fetchone()[0])
        pipe = self.redis.pipeline()
        pipe.llen("celery")
        pipe.hlen("unacked")
        waiting, unacked = pipe.execute()
        return n - int(waiting) - int(unacked)

    def close(self) -> None:
        self.pg.close()
        self.redis.close()


# --------------------------------------------------------------------------- workers

_workers: list[subprocess.Popen[bytes]] = []


def start_worker(args: argparse.Namespace, variant: str, log: Path) -> subprocess.Popen[bytes]:
    system = VARIANTS[variant][0]
    target = "bench.bare_app" if system == "bare" else "jobsys"
    cmd = [
        python(),
        "-m",
        "celery",
        "-A",
        target,
        "worker",
        "-P",
        "prefork",
        "-c",
        str(args.concurrency),
        "-l",
        "warning",
        "-n",
        f"bench-{variant}@%h",
    ]
    out = log.open("ab")
    proc = subprocess.Popen(
        cmd,
        env=variant_env(args, variant),
        cwd=workdir(args, variant),
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    out.close()
    _workers.append(proc)
    return proc


def stop_worker(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        except ProcessLookupError:
            pass
    try:  # the pool children too, whatever state the main process left them in
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(5)
    if proc in _workers:
        _workers.remove(proc)


@atexit.register
def _kill_all() -> None:
    for proc in list(_workers):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


# --------------------------------------------------------------------------- client side


def run_client(args: argparse.Namespace, variant: str, phase: str, **params: Any) -> dict[str, Any]:
    """Run one client phase in a fresh process; it prints one JSON line."""
    spec = json.dumps({"variant": variant, "phase": phase, **params})
    cmd = [python(), str(Path(__file__).resolve()), "--client", spec]
    done = subprocess.run(
        cmd,
        env=variant_env(args, variant),
        cwd=ROOT,
        capture_output=True,
        timeout=args.phase_timeout,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{variant} {phase} client failed:\n{done.stderr.decode()[-3000:]}")
    return json.loads(done.stdout.decode().strip().splitlines()[-1])  # type: ignore[no-any-return]


def client_main(spec: dict[str, Any]) -> dict[str, Any]:
    system = VARIANTS[spec["variant"]][0]
    if system == "bare":
        from bench import bare_app as mod

        app, noop, stamp = mod.app, mod.noop, mod.stamp
    else:
        import jobsys
        from bench import kinds as mod

        app, noop, stamp = jobsys.app, mod.noop, mod.stamp
        if spec["variant"] in TRACING_VARIANTS:
            from bench import traced
            from jobsys.engine import runtime

            traced.jobsys_hooks(runtime.current())
    phase = spec["phase"]
    if phase == "delay":
        return client_delay(noop, spec["calls"], spec.get("profile"))
    if phase == "bulk":
        return client_bulk(system, app, noop, spec["jobs"], spec["batch"], spec.get("profile"))
    if phase == "latency":
        return client_latency(stamp, spec["samples"], spec["gap"])
    raise ValueError(phase)


def _profiled(profile: str | None, fn: Any) -> Any:
    if not profile:
        return fn()
    import cProfile

    prof = cProfile.Profile()
    try:
        return prof.runcall(fn)
    finally:
        prof.dump_stats(profile)


def client_delay(noop: Any, calls: int, profile: str | None) -> dict[str, Any]:
    for i in range(min(50, calls)):  # warm-up: connections, pools, first-call imports
        noop.delay(f"u{i % USERS}")
    users = [f"u{i % USERS}" for i in range(calls)]

    def loop() -> float:
        t0 = time.perf_counter()
        for u in users:
            noop.delay(u)
        return time.perf_counter() - t0

    elapsed = _profiled(profile, loop)
    return {"rate": calls / elapsed, "ms_per_call": 1000 * elapsed / calls}


def client_bulk(
    system: str, app: Any, noop: Any, jobs: int, batch: int, profile: str | None
) -> dict[str, Any]:
    batch = batch or jobs
    chunks = [
        [f"u{i % USERS}" for i in range(s, min(s + batch, jobs))] for s in range(0, jobs, batch)
    ]
    if system == "jobsys":
        import jobsys

        jobsys.enqueue_many(noop.name, [])  # nothing; imports and registry only
        from jobsys.engine import runtime

        # Build the engines before the clock starts (first use, not per call); a tree
        # from before the explicit runtime (--patched) has runtime.store() instead.
        current = getattr(runtime, "current", None)
        _ = current().store if current else runtime.store()  # type: ignore[attr-defined]

        def loop() -> float:
            t0 = time.perf_counter()
            for chunk in chunks:
                jobsys.enqueue_many(noop.name, [(u, None) for u in chunk])
            return time.perf_counter() - t0
    else:

        def loop() -> float:
            t0 = time.perf_counter()
            for chunk in chunks:
                with app.producer_or_acquire() as producer, producer.batch(max_size=1000):
                    for u in chunk:
                        noop.apply_async((u,), producer=producer)
            return time.perf_counter() - t0

    if system == "bare":
        with app.connection_for_write() as conn:  # connect before the clock starts
            conn.ensure_connection()
    elapsed = _profiled(profile, loop)
    return {"rate": jobs / elapsed, "seconds": elapsed}


def client_latency(stamp: Any, samples: int, gap: float) -> dict[str, Any]:
    import redis

    r = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"])
    r.delete(STAMPS_KEY)
    lat: list[float] = []
    warmup = 5
    for i in range(samples + warmup):
        t0 = time.time()
        res = stamp.delay(f"u{i % USERS}")
        got = r.blpop([STAMPS_KEY], timeout=10)
        if got is None:
            raise RuntimeError(f"no stamp for {res.id} within 10 s")
        job_id, started = got[1].decode().split()
        if job_id != str(res.id):
            raise RuntimeError(f"stamp for {job_id}, expected {res.id}")
        if i >= warmup:
            lat.append((float(started) - t0) * 1000)
        time.sleep(gap)
    lat.sort()
    return {"p50": pct(lat, 50), "p99": pct(lat, 99), "max": lat[-1]}


def pct(sorted_values: list[float], p: float) -> float:
    k = (len(sorted_values) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


# --------------------------------------------------------------------------- one variant


def process(
    svc: Services, variant: str, n: int, proc: subprocess.Popen[bytes], args: argparse.Namespace
) -> dict[str, Any]:
    deadline = time.monotonic() + args.start_timeout + n / 50
    first: tuple[float, int] | None = None
    last: tuple[float, int] = (time.perf_counter(), 0)
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{variant} worker exited with {proc.returncode}; see {args.log}")
        now, done = time.perf_counter(), svc.done(variant, n)
        if done > 0 and first is None:
            first = (now, done)
        last = (now, done)
        if done >= n:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"{variant}: only {done}/{n} jobs done before the timeout")
        time.sleep(args.poll)
    assert first is not None
    if last[0] == first[0]:
        raise RuntimeError("all jobs finished between two polls; use more --jobs")
    return {"rate": (last[1] - first[1]) / (last[0] - first[0])}


def run_variant(svc: Services, variant: str, args: argparse.Namespace) -> dict[str, float]:
    out: dict[str, float] = {}
    svc.reset(variant)
    d = run_client(
        args,
        variant,
        "delay",
        calls=args.delay_calls,
        profile=args.profile_delay and f"{args.profile_delay}.{variant}",
    )
    out["delay"] = d["rate"]
    out["delay_ms"] = d["ms_per_call"]
    svc.reset(variant)
    b = run_client(
        args,
        variant,
        "bulk",
        jobs=args.jobs,
        batch=args.batch,
        profile=args.profile_bulk and f"{args.profile_bulk}.{variant}",
    )
    out["bulk"] = b["rate"]
    proc = start_worker(args, variant, args.log)
    try:
        out["process"] = process(svc, variant, args.jobs, proc, args)["rate"]
        time.sleep(0.5)  # let the worker go idle
        lat = run_client(args, variant, "latency", samples=args.samples, gap=args.gap)
        out["p50"], out["p99"] = lat["p50"], lat["p99"]
    finally:
        stop_worker(proc)
    svc.reset(variant)
    return out


# --------------------------------------------------------------------------- report

METRICS = [
    # key, label, unit, higher is better
    ("process", "processing", "jobs/s", True),
    ("delay", ".delay()", "calls/s", True),
    ("bulk", "bulk enqueue", "jobs/s", True),
    ("p50", "start latency p50", "ms", False),
    ("p99", "start latency p99", "ms", False),
]


def report(results: dict[str, list[dict[str, float]]], args: argparse.Namespace) -> None:
    med = {v: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for v, rs in results.items()}
    names = list(results)
    base = "bare" if "bare" in med else names[0]
    print()
    print(
        f"medians of {args.runs} run(s), {args.jobs} jobs, {args.delay_calls} .delay() calls, "
        f"{args.samples} latency samples, prefork -c {args.concurrency}"
    )
    head = f"{'metric':<22}{'unit':<9}" + "".join(f"{n:>17}" for n in names)
    head += "".join(f"{n + '/' + base:>24}" for n in names if n != base)
    print(head)
    print("-" * len(head))
    for key, label, unit, _ in METRICS:
        line = f"{label:<22}{unit:<9}" + "".join(f"{med[n][key]:>17,.1f}" for n in names)
        line += "".join(f"{med[n][key] / med[base][key]:>23.2f}x" for n in names if n != base)
        print(line)
    print()
    print("per-run values:")
    for n, rs in results.items():
        for key, label, _, _ in METRICS:
            print(f"  {n:<17}{label:<20}" + "  ".join(f"{r[key]:,.1f}" for r in rs))
    print()
    print("targets (jobsys variants vs bare):")
    for n in names:
        if VARIANTS[n][0] != "jobsys" or base not in med:
            continue
        m, b = med[n], med[base]
        checks = [
            (
                "processing >= 0.70x bare",
                m["process"] / b["process"],
                m["process"] >= 0.7 * b["process"],
            ),
            (".delay() >= 0.70x bare", m["delay"] / b["delay"], m["delay"] >= 0.7 * b["delay"]),
            ("enqueue_many >= 10,000/s", m["bulk"], m["bulk"] >= 10_000),
            ("latency p50 <= 2x bare", m["p50"] / b["p50"], m["p50"] <= 2 * b["p50"]),
            ("latency p99 <= 25 ms", m["p99"], m["p99"] <= 25),
        ]
        for what, value, ok in checks:
            print(f"  {n:<17}{what:<28}{value:>10.2f}  {'MET' if ok else 'MISSED'}")
    observed(med)


def observed(med: dict[str, dict[str, float]]) -> None:
    """Each observed variant's processing beside plain jobsys's, run in the same bench."""
    found = [n for n in med if n in METRICS_VARIANTS | TRACING_VARIANTS]
    if not found or "jobsys" not in med:
        return
    print()
    print("observability cost (processing vs plain jobsys):")
    plain = med["jobsys"]["process"]
    print(f"  {'jobsys':<17}{plain:>10,.1f}/s")
    for n in found:
        ratio, target = med[n]["process"] / plain, OBSERVED_TARGETS[n]
        verdict = "MET" if ratio >= target else "MISSED"
        rate = med[n]["process"]
        print(f"  {n:<17}{rate:>10,.1f}/s  {ratio:>5.2f}x  >= {target:.2f}x  {verdict}")


# --------------------------------------------------------------------------- main


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--jobs", type=int, default=20_000, help="jobs per processing/bulk run")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--delay-calls", type=int, default=5_000, help=".delay() calls per run")
    p.add_argument("--batch", type=int, default=1_000, help="jobs per enqueue_many call (0: all)")
    p.add_argument("--samples", type=int, default=200, help="latency samples")
    p.add_argument("--gap", type=float, default=0.02, help="seconds between latency samples")
    p.add_argument("--concurrency", type=int, default=2)
    p.add_argument("--poll", type=float, default=0.1, help="seconds between progress polls")
    p.add_argument(
        "--metrics-port", type=int, default=9808, help="/metrics port of jobsys+metrics's node"
    )
    p.add_argument(
        "--variants",
        default="bare,jobsys",
        help=f"comma-separated, from {', '.join(VARIANTS)}; the first bare one is the baseline",
    )
    p.add_argument(
        "--db-url",
        default=os.environ.get(
            "BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/jobsys_bench"
        ),
        help="database to (re)create for the run (dropped at the end unless --keep-db)",
    )
    p.add_argument(
        "--redis-url",
        default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/11"),
        help="a Redis db of its own: it is flushed between runs",
    )
    p.add_argument(
        "--patched",
        default="",
        help="a jobsys tree (put first on PYTHONPATH) for the patched* variants",
    )
    p.add_argument("--keep-db", action="store_true")
    p.add_argument("--log", type=Path, default=Path("/tmp/jobsys-bench-workers.log"))
    p.add_argument("--phase-timeout", type=float, default=600.0)
    p.add_argument("--start-timeout", type=float, default=60.0)
    p.add_argument(
        "--profile-delay", default="", help="cProfile the .delay() loop into PREFIX.<variant>"
    )
    p.add_argument(
        "--profile-bulk", default="", help="cProfile the bulk loop into PREFIX.<variant>"
    )
    p.add_argument("--client", help=argparse.SUPPRESS)
    return p.parse_args()


def main() -> None:
    args = parse()
    if args.client:
        print(json.dumps(client_main(json.loads(args.client))))
        return
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    for v in variants:
        if v not in VARIANTS:
            sys.exit(f"unknown variant {v!r}; choose from {', '.join(VARIANTS)}")
        if v.startswith("patched") and not args.patched:
            sys.exit(f"variant {v} needs --patched PATH")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    print(f"database {args.db_url}, redis {args.redis_url}, worker log {args.log}", flush=True)
    create_database(args)
    svc = Services(args)
    results: dict[str, list[dict[str, float]]] = {v: [] for v in variants}
    try:
        for run in range(args.runs):
            order = variants[run % len(variants) :] + variants[: run % len(variants)]
            for v in order:
                t0 = time.monotonic()
                r = run_variant(svc, v, args)
                results[v].append(r)
                print(
                    f"run {run + 1} {v:<16} process {r['process']:8.1f}/s"
                    f"  delay {r['delay']:8.1f}/s"
                    f"  bulk {r['bulk']:9.1f}/s  p50 {r['p50']:6.2f} ms  p99 {r['p99']:6.2f} ms"
                    f"  ({time.monotonic() - t0:.0f} s)",
                    flush=True,
                )
        report(results, args)
    finally:
        _kill_all()
        svc.close()
        if not args.keep_db:
            drop_database(args)


if __name__ == "__main__":
    main()
