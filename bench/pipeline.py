"""The sync pipeline end to end: N users x M messages against the Google emulator.

    .venv/bin/python bench/pipeline.py                      # 10 users x 300 messages, 1 run
    .venv/bin/python bench/pipeline.py --runs 3 --profile   # medians, and a normalize profile

Per run: a fresh database (migrated), a flushed Redis db, the users provisioned
on one in-process emulator whose Gmail quota is scaled down (``--quota`` units/s,
``--burst`` units per user) so that ingestion takes tens of seconds, ``--workers``
``celery worker -P prefork -c 2`` nodes, and one full sync round
(``demo_sync.sync_round``: one ``sync_user`` job per user). The workers' guards
get the emulator's per-user quota as their limits (``limiter_env``).

The mail is the emulator's generated mix (``emulator/mime.py``: encoded words,
8-bit headers, the MIME shapes and charsets of issue 13, invitations), dated up to today.

Printed per phase (ingest, normalize, extract, process): jobs, retries, dead,
wall time from the first start (of a job's first attempt) to the last finish of
that phase's jobs, and items (messages + events) per second over that time. The
phases of different users overlap, so the wall times do too. For normalization
also the busy rate: items / sum(finished_at - started_at) of its jobs, i.e. per
busy worker process, and x2 as the estimate for 2 cores.

Quota, per user (Gmail only; Calendar has its own bucket): the units the
emulator charged / the units the quota allowed over that user's ingestion
window (first start of its ``sync.ingest_gmail`` job's first attempt to the
job's finish). Two columns: ``rate`` = units / (rate x window), the issue's
definition; ``+burst`` = units / (burst + rate x window), the true ceiling since
the bucket starts full (the stats reset refills it). Also the share of Gmail
requests answered 429 (each part of a batch request counts as one request).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import cProfile
import io
import os
import pstats
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
EPOCH_KEY = "jobsys:broker-epoch"
PHASES = (
    ("ingest", ("sync.ingest_gmail", "sync.ingest_calendar")),
    ("normalize", ("sync.normalize",)),
    ("extract", ("sync.extract",)),
    ("process", ("sync.process",)),
)
# As the demo: quick heartbeats so workers register fast. Retry backoff settings do
# not change 429 handling: a QuotaError's Retry-After overrides the backoff.
FAST = {
    "JOBSYS_RETRY_BASE": "0.2",
    "JOBSYS_RETRY_CAP": "2",
    "JOBSYS_WORKER_HEARTBEAT": "1",
    "JOBSYS_SWEEP_INTERVAL": "2",
    # A run whose ingest job dies (8 attempts of 429s, before the rate limiter) stays
    # 'running' until the sweeper's repair fails it, 120 s after its creation by default.
    "JOBSYS_PIPELINE_REPAIR_AFTER": "20",
}
JOBS_SQL = """
SELECT kind, user_id, status, attempt, result, started_at, finished_at,
  COALESCE(CAST(errors -> 0 ->> 'started_at' AS timestamptz), started_at) AS first_start
FROM jobs WHERE payload ->> 'run_id' = ANY(:runs)
"""

_workers: list[subprocess.Popen[bytes]] = []


# --------------------------------------------------------------------------- servers


def admin_url(db_url: str) -> tuple[str, str]:
    base, _, name = db_url.rpartition("/")
    return base + "/postgres", name


def recreate_database(db_url: str, *, drop_only: bool = False) -> None:
    import psycopg2

    admin, name = admin_url(db_url)
    conn = psycopg2.connect(admin)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if not drop_only:
            cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()


def fresh_servers(args: argparse.Namespace) -> None:
    """New database and flushed Redis db; this process's jobsys handles rebuilt."""
    import redis

    from jobsys.engine import runtime

    runtime.reset()
    recreate_database(args.db_url)
    from jobsys.store.migrate import upgrade

    upgrade(args.db_url)
    r = redis.Redis.from_url(args.redis_url)
    r.flushdb()
    r.set(EPOCH_KEY, "bench")  # a broker that has been up all along (see throughput.py)
    r.close()
    runtime.reset()


def limiter_env(args: argparse.Namespace) -> dict[str, str]:
    """The guards' per-user rate limits set to the emulator's quota.

    Without them the guards pace a user at jobsys's defaults (Gmail 250 units/s, burst
    500), above the emulator's scaled-down quota, and the emulator answers 429.
    """
    return {
        "JOBSYS_GMAIL_USER_UNITS_PER_SECOND": str(args.quota),
        "JOBSYS_GMAIL_USER_BURST_UNITS": str(args.burst),
        "JOBSYS_CALENDAR_USER_REQUESTS_PER_SECOND": str(args.calendar_quota),
        "JOBSYS_CALENDAR_USER_BURST": str(args.calendar_burst),
    }


def emulator_config(args: argparse.Namespace) -> dict[str, Any]:
    """The emulator's sizes and per-user quota (the limiter settings mirror the quota)."""
    return {
        "messages_per_user": args.messages,
        "events_per_user": args.events,
        "gmail_units_per_second": args.quota,
        "gmail_burst_units": args.burst,
        "calendar_requests_per_second": args.calendar_quota,
        "calendar_burst": args.calendar_burst,
    }


def configure(args: argparse.Namespace) -> None:
    """Environment for this process and the workers, before jobsys reads its settings."""
    os.environ.update(
        JOBSYS_DATABASE_URL=args.db_url,
        JOBSYS_BROKER_URL=args.redis_url,
        JOBSYS_IMPORTS="jobsys.tasks",  # the sync pipeline, whatever the caller has set
        **FAST,
        **limiter_env(args),
    )
    pythonpath = os.environ.get("PYTHONPATH")
    tree = str(args.tree.resolve())
    os.environ["PYTHONPATH"] = os.pathsep.join([tree] + ([pythonpath] if pythonpath else []))
    sys.path.insert(0, tree)  # this process too: jobsys is not imported yet
    from jobsys.store.tokens import generate_key

    os.environ.setdefault("APP_ENCRYPTION_KEY", generate_key())


# --------------------------------------------------------------------------- workers


def start_workers(args: argparse.Namespace) -> None:
    from jobsys.engine import runtime

    for i in range(args.workers):
        cmd = [
            sys.executable, "-m", "celery", "-A", "jobsys", "worker", "-P", "prefork",
            "-c", str(args.concurrency), "-l", "warning", "-n", f"pipebench{i}@%h",
        ]  # fmt: skip
        with open(args.log, "ab") as out:
            _workers.append(
                subprocess.Popen(
                    cmd, cwd=args.tree, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
                )
            )
    deadline = time.monotonic() + args.start_timeout
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in _workers):
            raise RuntimeError(f"a worker exited at start; see {args.log}")
        alive = [w for w in runtime.current().postgres.list_workers() if w.status == "alive"]
        if len([w for w in alive if w.name.startswith("pipebench")]) >= args.workers:
            return
        time.sleep(0.3)
    raise RuntimeError(f"workers did not register within {args.start_timeout:.0f} s")


def stop_workers() -> None:
    for p in _workers:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGTERM)
    for p in list(_workers):
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pass
        with contextlib.suppress(ProcessLookupError):  # the pool children too
            os.killpg(p.pid, signal.SIGKILL)
        p.wait(timeout=5)
        _workers.remove(p)


@atexit.register
def _kill_all() -> None:
    for p in _workers:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGKILL)


# --------------------------------------------------------------------------- one run


def one_run(args: argparse.Namespace, emulator: Any, n: int) -> dict[str, Any]:
    import sqlalchemy as sa

    from jobsys.engine import runtime
    from jobsys.interfaces import demo_sync
    from jobsys.store.tokens import TokenCipher

    fresh_servers(args)
    user_ids = demo_sync.provision(
        runtime.current(), emulator, TokenCipher(os.environ["APP_ENCRYPTION_KEY"])
    )
    emails = {uid: c.email for uid, c in zip(user_ids, emulator.users(), strict=True)}
    start_workers(args)
    try:
        r = demo_sync.sync_round(
            runtime.current(), f"run {n}: full sync", user_ids, emulator, args.timeout, full=True
        )
        with (
            runtime.current().postgres.transaction() as conn
        ):  # before normalize_alone adds jobs to the runs
            rows = conn.execute(sa.text(JOBS_SQL), {"runs": [str(x["id"]) for x in r.runs]})
            jobs = [dict(j) for j in rows.mappings()]
            stored = conn.execute(
                sa.text(
                    "SELECT (SELECT count(*) FROM raw_messages), (SELECT count(*) FROM raw_events)"
                )
            ).one()
        alone = normalize_alone(args, r.runs) if args.normalize_alone else None
    finally:
        stop_workers()
    failed = [s for s in r.runs if s["status"] != "succeeded"]
    if failed:
        print(f"  {len(failed)} run(s) did not succeed: {failed[0].get('error')}", flush=True)
    return {
        "elapsed": r.elapsed,
        "phases": phases(r.phases, jobs, (int(stored[0]), int(stored[1]))),
        "alone": alone,
        "quota": quota(args, jobs, r.quota, emails),
        "users": user_ids,
    }


def _span(jobs: list[dict[str, Any]]) -> float:
    starts = [j["first_start"] for j in jobs if j["first_start"]]
    ends = [j["finished_at"] for j in jobs if j["finished_at"]]
    return (max(ends) - min(starts)).total_seconds() if starts and ends else 0.0


def _busy(jobs: list[dict[str, Any]]) -> float:
    """Seconds between the last attempt's start and the finish, summed over jobs."""
    return sum(
        float((j["finished_at"] - j["started_at"]).total_seconds())
        for j in jobs
        if j["started_at"] and j["finished_at"]
    )


def _items(result: dict[str, Any] | None) -> tuple[int, int]:
    """(messages, events) a normalize job handled, from its result."""
    res = result or {}
    return int(res.get("messages", 0)), int(res.get("events", 0))


def phases(
    stats: list[dict[str, Any]], jobs: list[dict[str, Any]], stored: tuple[int, int]
) -> dict[str, dict[str, float]]:
    """Per phase; ingestion's items are the raw rows stored (a job result counts only the
    messages of its last attempt), the later phases' the items normalization returned."""
    normalized = [_items(j["result"]) for j in jobs if j["kind"] == "sync.normalize"]
    messages = sum(m for m, _ in normalized)
    events = sum(e for _, e in normalized)
    out: dict[str, dict[str, float]] = {}
    for phase, kinds in PHASES:
        mine = [j for j in jobs if j["kind"] in kinds]
        st = [s for s in stats if s["kind"] in kinds]
        if phase == "ingest":
            msgs, evts = stored
        else:  # extraction and processing read every normalized message and event
            msgs, evts = messages, events
        seconds = _span(mine)
        out[phase] = {
            "jobs": sum(int(s["jobs"]) for s in st),
            "retries": sum(int(s["retries"] or 0) for s in st),
            "dead": sum(int(s["dead"]) for s in st),
            "seconds": seconds,
            "messages": msgs,
            "items": msgs + evts,
            "msg_rate": msgs / seconds if seconds else 0.0,
            "rate": (msgs + evts) / seconds if seconds else 0.0,
            "busy": _busy(mine),
        }
    norm = out["normalize"]
    norm["busy_rate"] = norm["items"] / norm["busy"] if norm["busy"] else 0.0
    return out


def quota(
    args: argparse.Namespace,
    jobs: list[dict[str, Any]],
    stats: dict[str, Any],
    emails: dict[str, str],
) -> dict[str, dict[str, float]]:
    limits = stats["limits"]["gmail"]
    rate, burst = float(limits["rate"]), float(limits["burst"])
    out = {}
    for job in jobs:
        if job["kind"] != "sync.ingest_gmail":
            continue
        email = emails[job["user_id"]]
        methods = {k: v for k, v in stats["users"].get(email, {}).items() if k.startswith("gmail.")}
        units = sum(m["units"] for m in methods.values())
        requests = sum(m["requests"] for m in methods.values())
        throttled = sum(m["throttled"] for m in methods.values())
        window = _span([job])
        out[email] = {
            "window": window,
            "attempts": job["attempt"],
            "units": units,
            "util": units / (rate * window) if window else 0.0,
            "util_burst": units / (burst + rate * window) if window else 0.0,
            "requests": requests,
            "throttled": throttled,
            "share_429": throttled / requests if requests else 0.0,
        }
    return out


def normalize_alone(args: argparse.Namespace, runs: list[dict[str, Any]]) -> dict[str, float]:
    """Every stored raw row normalized again, all batches enqueued at once on idle workers.

    In the pipeline, normalization of one user overlaps ingestion of the others, so its
    wall time measures the staggering of ingestion more than normalization.
    """
    import sqlalchemy as sa

    from jobsys.engine import runtime
    from jobsys.engine.enqueue import enqueue_many
    from jobsys.pipeline import canvas
    from jobsys.store import Status
    from jobsys.store.sync import SyncStore

    sync, store = SyncStore(runtime.current().postgres), runtime.current().postgres
    items = []
    for run in runs:
        for m, e in canvas.batches(*_all_ids(sync, run["user_id"])):
            payload = {"run_id": str(run["id"]), "message_ids": m, "event_ids": e}
            items.append((run["user_id"], payload))
    ids = [r.job_id for r in enqueue_many("sync.normalize", items)]
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        counts = store.count_by_status(ids)
        if counts.get(Status.SUCCEEDED, 0) + counts.get(Status.DEAD, 0) >= len(ids):
            break
        time.sleep(0.1)
    else:
        raise RuntimeError("the normalize-alone jobs did not finish in time")
    with store.transaction() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT result, started_at, finished_at, started_at AS first_start"
                " FROM jobs WHERE id = ANY(:ids)"
            ),
            {"ids": ids},
        )
        jobs = [dict(j) for j in rows.mappings()]
    done = [_items(j["result"]) for j in jobs]
    n = sum(m + e for m, e in done)
    messages = sum(m for m, _ in done)
    seconds, busy = _span(jobs), _busy(jobs)
    return {
        "jobs": len(jobs),
        "items": n,
        "seconds": seconds,
        "rate": n / seconds if seconds else 0.0,
        # Messages over the whole wall time, events included in it: the conservative figure.
        "msg_rate": messages / seconds if seconds else 0.0,
        "busy": busy,
        "busy_rate": n / busy if busy else 0.0,
    }


# --------------------------------------------------------------------------- report


def print_quota_table(users: dict[str, dict[str, Any]], *, sync: bool = False) -> None:
    """Per-user quota rows, then median/min/max; ``sync`` adds each user's sync time and run."""
    head = (
        f"{'user':<22}{'window s':>9}{'attempts':>9}{'units':>7}{'rate%':>7}{'+burst%':>8}"
        f"{'requests':>9}{'429s':>6}{'429%':>7}" + (f"{'sync s':>8}  run" if sync else "")
    )
    print(head)
    print("-" * len(head))
    for email, q in sorted(users.items()):
        print(
            f"{email:<22}{q['window']:>9.2f}{q['attempts']:>9}{q['units']:>7}"
            f"{100 * q['util']:>7.1f}{100 * q['util_burst']:>8.1f}"
            f"{q['requests']:>9}{q['throttled']:>6}{100 * q['share_429']:>7.2f}"
            + (f"{q['sync']:>8.2f}  {q['status']}" if sync else "")
        )
    qs = list(users.values())
    for label, pick in (("median", statistics.median), ("min", min), ("max", max)):
        print(
            f"{label:<22}{pick(q['window'] for q in qs):>9.2f}{'':>9}{'':>7}"
            f"{100 * pick(q['util'] for q in qs):>7.1f}"
            f"{100 * pick(q['util_burst'] for q in qs):>8.1f}{'':>9}{'':>6}"
            f"{100 * pick(q['share_429'] for q in qs):>7.2f}"
            + (f"{pick(q['sync'] for q in qs):>8.2f}" if sync else "")
        )


def print_run(n: int, res: dict[str, Any]) -> None:
    print(f"\nrun {n}: {res['elapsed']:.1f} s from the first sync_user.delay() to the last run end")
    head = (
        f"{'phase':<10}{'jobs':>6}{'retries':>8}{'dead':>6}{'wall s':>9}"
        f"{'messages':>10}{'msg/s':>9}{'items':>8}{'items/s':>9}"
    )
    print(head)
    print("-" * len(head))
    for phase, _ in PHASES:
        p = res["phases"][phase]
        print(
            f"{phase:<10}{p['jobs']:>6.0f}{p['retries']:>8.0f}{p['dead']:>6.0f}{p['seconds']:>9.2f}"
            f"{p['messages']:>10.0f}{p['msg_rate']:>9,.0f}{p['items']:>8.0f}{p['rate']:>9,.0f}"
        )
    norm = res["phases"]["normalize"]
    print(
        f"normalize busy: {norm['busy']:.2f} s summed over {norm['jobs']:.0f} jobs -> "
        f"{norm['busy_rate']:,.0f} items per busy process-second (x2 cores: "
        f"{2 * norm['busy_rate']:,.0f}/s)"
    )
    alone = res["alone"]
    if alone:
        print(
            f"normalize alone (all {alone['jobs']:.0f} batches enqueued at once, idle workers): "
            f"{alone['items']:.0f} items in {alone['seconds']:.2f} s -> {alone['rate']:,.0f} "
            f"items/s ({alone['msg_rate']:,.0f} messages/s); busy {alone['busy']:.2f} s -> "
            f"{alone['busy_rate']:,.0f} per busy process-second"
        )
    print()
    print_quota_table(res["quota"])


def summary(args: argparse.Namespace, results: list[dict[str, Any]]) -> None:
    def med(get: Any, phase: str | None = None) -> float:
        """Median over the runs (in which ``phase`` ran: ingestion may die before it)."""
        ran = [r for r in results if phase is None or r["phases"][phase]["jobs"]]
        return float(statistics.median(get(r) for r in ran)) if ran else 0.0

    print(
        f"\nmedians of {len(results)} run(s): {args.users} users x {args.messages} messages + "
        f"{args.events} events, Gmail quota {args.quota:g} units/s burst {args.burst:g} per user, "
        f"{args.workers} x prefork -c {args.concurrency}"
    )
    for phase, _ in PHASES:
        ran = sum(1 for r in results if r["phases"][phase]["jobs"])
        print(
            f"  {phase:<10} {med(lambda r, p=phase: r['phases'][p]['seconds'], phase):>7.2f} s"
            f"  {med(lambda r, p=phase: r['phases'][p]['msg_rate'], phase):>8,.0f} msg/s"
            f"  {med(lambda r, p=phase: r['phases'][p]['rate'], phase):>8,.0f} items/s"
            f"  (ran in {ran} of {len(results)} runs)"
        )
    busy = med(lambda r: r["phases"]["normalize"]["busy_rate"], "normalize")
    norm = med(lambda r: r["phases"]["normalize"]["rate"], "normalize")
    util = med(lambda r: statistics.median(q["util"] for q in r["quota"].values()))
    util_min = med(lambda r: min(q["util"] for q in r["quota"].values()))
    ub = med(lambda r: statistics.median(q["util_burst"] for q in r["quota"].values()))
    ub_min = med(lambda r: min(q["util_burst"] for q in r["quota"].values()))
    share = med(lambda r: max(q["share_429"] for q in r["quota"].values()))
    share_all = med(
        lambda r: (
            sum(q["throttled"] for q in r["quota"].values())
            / max(1, sum(q["requests"] for q in r["quota"].values()))
        )
    )
    alone = [r["alone"] for r in results if r["alone"]]
    if alone:
        rate = statistics.median(a["rate"] for a in alone)
        msg_rate = statistics.median(a["msg_rate"] for a in alone)
        print(f"  normalize alone {statistics.median(a['seconds'] for a in alone):>7.2f} s", end="")
        print(f"  {msg_rate:>8,.0f} msg/s  {rate:>8,.0f} items/s")
    dead = [r["phases"]["ingest"]["dead"] for r in results]
    print(f"  dead ingest jobs per run: {', '.join(f'{d:.0f}' for d in dead)} (of {args.users})")
    print("\ntargets:")
    checks = [
        ("quota utilisation >= 85% (median user, rate x window)", f"{util:.0%}", util >= 0.85),
        ("quota utilisation >= 85% (min user, rate x window)", f"{util_min:.0%}", util_min >= 0.85),
        ("quota utilisation >= 85% (median user, + burst)", f"{ub:.0%}", ub >= 0.85),
        ("quota utilisation >= 85% (min user, + burst)", f"{ub_min:.0%}", ub_min >= 0.85),
        ("429s <= 1% of Gmail requests (all users)", f"{share_all:.1%}", share_all <= 0.01),
        ("429s <= 1% of Gmail requests (worst user)", f"{share:.1%}", share <= 0.01),
        ("normalization >= 1,000 items/s (phase wall time)", f"{norm:,.0f}/s", norm >= 1000),
        ("normalization >= 1,000 items/s (busy rate x 2)", f"{2 * busy:,.0f}/s", 2 * busy >= 1000),
    ]
    if alone:
        rate = statistics.median(a["rate"] for a in alone)
        msg_rate = statistics.median(a["msg_rate"] for a in alone)
        checks.append(
            ("normalization >= 1,000 items/s (alone, wall)", f"{rate:,.0f}/s", rate >= 1000)
        )
        checks.append(
            (
                "normalization >= 1,000 messages/s (alone, wall)",
                f"{msg_rate:,.0f}/s",
                msg_rate >= 1000,
            )
        )
    for what, value, ok in checks:
        print(f"  {what:<52}{value:>10}  {'MET' if ok else 'MISSED'}")


# --------------------------------------------------------------------------- profile


def profile_normalize(args: argparse.Namespace, user_id: str) -> None:
    """cProfile ``normalize_batch`` in this process on one user's stored raw rows."""
    from jobsys.engine import runtime
    from jobsys.pipeline import canvas, transform
    from jobsys.store.sync import SyncStore

    sync = SyncStore(runtime.current().postgres)
    message_ids, event_ids = _all_ids(sync, user_id)
    parts = canvas.batches(message_ids, event_ids)
    items = len(message_ids) + len(event_ids)
    transform.normalize_batch(sync, user_id, *parts[0])  # warm-up (imports, pool)

    split = _split(sync, user_id, parts)
    print(
        f"\nnormalize profile, in-process, {items} items of one user in {len(parts)} batches "
        f"of {canvas.BATCH}:"
    )
    total = sum(split.values())
    for k, v in split.items():
        print(f"  {k:<28}{v * 1000:>9.1f} ms  {v / total:>5.0%}")
    print(f"  {'total':<28}{total * 1000:>9.1f} ms  -> {items / total:,.0f} items/s, one process")

    prof = cProfile.Profile()
    prof.enable()
    for m, e in parts:
        transform.normalize_batch(sync, user_id, m, e)
    prof.disable()
    if args.profile_out:
        prof.dump_stats(args.profile_out)
    for key in ("tottime", "cumulative"):
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).strip_dirs().sort_stats(key).print_stats(args.profile_top)
        print(f"\ntop {args.profile_top} by {key}:")
        lines = buf.getvalue().splitlines()
        start = next(i for i, line in enumerate(lines) if "ncalls" in line)
        print("\n".join(line for line in lines[start:] if line.strip()))


def _all_ids(sync: Any, user_id: str) -> tuple[list[str], list[str]]:
    import sqlalchemy as sa

    with sync._tx() as conn:
        m = conn.execute(
            sa.text("SELECT gmail_id FROM raw_messages WHERE user_id = :u ORDER BY gmail_id"),
            {"u": user_id},
        )
        e = conn.execute(
            sa.text("SELECT event_id FROM raw_events WHERE user_id = :u ORDER BY event_id"),
            {"u": user_id},
        )
        return [r[0] for r in m], [r[0] for r in e]


def _split(sync: Any, user_id: str, parts: list[tuple[list[str], list[str]]]) -> dict[str, float]:
    """Where ``normalize_batch``'s time goes, step by step, summed over the batches."""
    from jobsys.pipeline import transform

    t = dict.fromkeys(
        ("read raw rows", "parse messages", "parse events", "save (upsert+mark)"), 0.0
    )
    for m_ids, e_ids in parts:
        t0 = time.perf_counter()
        raw_m, raw_e = sync.raw_messages(user_id, m_ids), sync.raw_events(user_id, e_ids)
        t1 = time.perf_counter()
        messages = [transform._message_row(r) for r in raw_m]
        t2 = time.perf_counter()
        events = [transform._event_row(b) for b in raw_e]
        t3 = time.perf_counter()
        sync.save_normalized(
            user_id, messages=messages, events=events, message_ids=m_ids, event_ids=e_ids
        )
        t4 = time.perf_counter()
        for k, d in zip(t, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            t[k] += d
    return t


# --------------------------------------------------------------------------- main


def add_common_args(p: argparse.ArgumentParser, *, name: str, redis_db: int) -> None:
    """The load, quota, worker and server options this bench shares with bench/quota.py."""
    p.add_argument("--users", type=int, default=10)
    p.add_argument("--messages", type=int, default=300, help="messages per user")
    p.add_argument("--events", type=int, default=50, help="calendar events per user")
    p.add_argument("--quota", type=float, default=100.0, help="Gmail units/s per user")
    p.add_argument("--burst", type=float, default=500.0, help="Gmail bucket size per user")
    p.add_argument(
        "--calendar-quota", type=float, default=10.0, help="Calendar requests/s per user"
    )
    p.add_argument(
        "--calendar-burst", type=float, default=100.0, help="Calendar bucket size per user"
    )
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--workers", type=int, default=2, help="worker nodes")
    p.add_argument("--concurrency", type=int, default=2, help="prefork processes per node")
    p.add_argument("--timeout", type=float, default=600.0, help="per sync round, s")
    p.add_argument("--start-timeout", type=float, default=60.0)
    p.add_argument(
        "--db-url",
        default=os.environ.get(
            "BENCH_DATABASE_URL", f"postgresql://postgres@127.0.0.1:5432/jobsys_{name}_bench"
        ),
        help="database (re)created per run and dropped at the end unless --keep-db",
    )
    p.add_argument(
        "--redis-url",
        default=os.environ.get("BENCH_REDIS_URL", f"redis://127.0.0.1:6379/{redis_db}"),
        help="a Redis db of its own: flushed before every run",
    )
    p.add_argument("--keep-db", action="store_true")
    p.add_argument(
        "--tree",
        type=Path,
        default=ROOT,
        help="the jobsys tree to run (a scratch copy with a proposed change), here and in workers",
    )


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_args(p, name="pipeline", redis_db=13)
    p.add_argument(
        "--no-normalize-alone",
        dest="normalize_alone",
        action="store_false",
        help="skip the second normalization pass on idle workers",
    )
    p.add_argument("--log", type=Path, default=Path("/tmp/jobsys-pipeline-bench-workers.log"))
    p.add_argument("--profile", action="store_true", help="cProfile normalize_batch at the end")
    p.add_argument("--profile-out", default="", help="also dump the cProfile stats here")
    p.add_argument("--profile-top", type=int, default=25)
    return p.parse_args()


def main() -> None:
    args = parse()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    configure(args)
    from jobsys.connectors.google.emulator import running

    emu_config = emulator_config(args)
    print(f"database {args.db_url}, redis {args.redis_url}, worker log {args.log}", flush=True)
    results = []
    try:
        with running(users=args.users, seed=args.seed, port=0, **emu_config) as emu:
            os.environ.update(
                JOBSYS_GOOGLE_API_ENDPOINT=emu.base_url, JOBSYS_GOOGLE_TOKEN_URI=emu.token_uri
            )
            for n in range(1, args.runs + 1):
                results.append(one_run(args, emu, n))
                print_run(n, results[-1])
            summary(args, results)
            if args.profile:
                profile_normalize(args, results[-1]["users"][0])
    finally:
        _kill_all()
        if not args.keep_db:
            from jobsys.engine import runtime

            runtime.reset()
            recreate_database(args.db_url, drop_only=True)


if __name__ == "__main__":
    main()
