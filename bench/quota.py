"""Gmail quota use with the guards on and off, side by side in one run.

    .venv/bin/python bench/quota.py                          # 10 users x 300 messages
    .venv/bin/python bench/quota.py --users 3 --messages 100 # quicker

The same full sync round (``demo_sync.sync_round``: one ``sync_user`` job per
user) runs once per mode, each on a fresh database, a flushed Redis db and a
fresh in-process emulator (same seed, so the same mailboxes) whose per-user
quota is scaled down (``--quota`` units/s, ``--burst`` units) so that a user's
Gmail ingestion takes tens of seconds; ``--workers`` ``celery worker -P prefork
-c 2`` nodes per mode.

Modes: ``on`` = ``JOBSYS_GUARDS=true`` with the per-user limiter set to the
emulator's quota (``JOBSYS_GMAIL_USER_UNITS_PER_SECOND`` = ``--quota``,
``JOBSYS_GMAIL_USER_BURST_UNITS`` = ``--burst``, Calendar likewise); ``off`` =
``JOBSYS_GUARDS=false`` (no limiter, fixed batches of 50, 429s waited out in
the ingest job).

Per user (Gmail only): units the emulator charged / units its quota allowed
over the user's window, the ``sync.ingest_gmail`` job's first attempt's start to
its finish (as bench/pipeline.py); ``rate`` = units / (rate x window) and
``+burst`` = units / (burst + rate x window), the true ceiling since the bucket
starts full. The share of Gmail requests answered 429 (each part of a batch
request is one request), and the user's whole sync (pipeline run created to
finished). Per mode: medians, total 429 share, wall time, retries, dead jobs,
whether every pipeline run succeeded, and the targets (utilisation >= 90%,
429s <= 1%).
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import pipeline  # bench/ is sys.path[0] when this file runs as a script

ROOT = Path(__file__).resolve().parents[1]
MODES = {"on": "true", "off": "false"}  # mode -> JOBSYS_GUARDS
UTIL_TARGET, SHARE_TARGET = 0.9, 0.01
RUNS_SQL = """
SELECT id, user_id, status, error, created_at, finished_at FROM pipeline_runs
WHERE id = ANY(CAST(:runs AS uuid[]))
"""
# Lines the workers log (structlog prints every level) that explain lost quota time.
LOG_EVENTS = ("job.postponed", "ratelimit.feedback", "gmail.quota_wait")


# --------------------------------------------------------------------------- one mode


def one_mode(args: argparse.Namespace, mode: str, n: int) -> dict[str, Any]:
    """One full sync round with the guards ``mode``; workers stopped on the way out."""
    from jobsys.connectors.google.emulator import running

    os.environ["JOBSYS_GUARDS"] = MODES[mode]
    config = pipeline.emulator_config(args)
    with running(users=args.users, seed=args.seed, port=0, **config) as emu:
        os.environ.update(
            JOBSYS_GOOGLE_API_ENDPOINT=emu.base_url, JOBSYS_GOOGLE_TOKEN_URI=emu.token_uri
        )
        log_from = args.log.stat().st_size if args.log.exists() else 0
        return _sync(args, emu, f"run {n}, guards {mode}: full sync", log_from)


def _sync(args: argparse.Namespace, emu: Any, name: str, log_from: int) -> dict[str, Any]:
    import sqlalchemy as sa

    from jobsys.engine import runtime
    from jobsys.interfaces import demo_sync
    from jobsys.store.tokens import TokenCipher

    pipeline.fresh_servers(args)
    user_ids = demo_sync.provision(
        runtime.current(), emu, TokenCipher(os.environ["APP_ENCRYPTION_KEY"])
    )
    emails = {uid: c.email for uid, c in zip(user_ids, emu.users(), strict=True)}
    pipeline.start_workers(args)
    try:
        r = demo_sync.sync_round(runtime.current(), name, user_ids, emu, args.timeout, full=True)
        ids = [str(x["id"]) for x in r.runs]
        with runtime.current().postgres.transaction() as conn:
            jobs = [
                dict(j) for j in conn.execute(sa.text(pipeline.JOBS_SQL), {"runs": ids}).mappings()
            ]
            runs = [dict(x) for x in conn.execute(sa.text(RUNS_SQL), {"runs": ids}).mappings()]
    finally:
        pipeline.stop_workers()
    users: dict[str, dict[str, Any]] = {
        email: {**q, "status": "no run", "error": None, "sync": float("nan")}
        for email, q in pipeline.quota(args, jobs, r.quota, emails).items()
    }
    for run in runs:
        q = users.setdefault(emails[run["user_id"]], _no_gmail_job())
        q["status"] = run["status"]
        q["error"] = run["error"]
        end = run["finished_at"]
        q["sync"] = (end - run["created_at"]).total_seconds() if end else float("nan")
    return {
        "elapsed": r.elapsed,
        "users": users,
        "runs": len(runs),
        "expected": len(user_ids),
        "succeeded": sum(1 for x in runs if x["status"] == "succeeded"),
        "retries": sum(int(s["retries"] or 0) for s in r.phases),
        "dead": sum(int(s["dead"]) for s in r.phases),
        "log": _log_counts(args.log, log_from),
    }


def _no_gmail_job() -> dict[str, Any]:
    """A user whose run has no ``sync.ingest_gmail`` job (it failed before ingesting)."""
    return dict.fromkeys(
        ("window", "attempts", "units", "util", "util_burst", "requests", "throttled", "share_429"),
        0,
    )


def _log_counts(log: Path, start: int) -> dict[str, int]:
    """How often each of ``LOG_EVENTS`` appears in the worker log written since ``start``."""
    with open(log, "rb") as f:
        f.seek(start)
        text = f.read().decode(errors="replace")
    return {event: text.count(event) for event in LOG_EVENTS}


# --------------------------------------------------------------------------- report


def print_mode(mode: str, n: int, res: dict[str, Any]) -> None:
    print(
        f"\nrun {n}, guards {mode}: {res['elapsed']:.1f} s from the first sync_user.delay() "
        f"to the last run end"
    )
    pipeline.print_quota_table(res["users"], sync=True)
    failed = [
        (e, q["error"]) for e, q in sorted(res["users"].items()) if q["status"] != "succeeded"
    ]
    for email, error in failed:
        print(f"  {email}: run {error or 'not succeeded'}")
    logged = ", ".join(f"{k} {v}" for k, v in res["log"].items())
    print(f"worker log lines: {logged}")


def mode_figures(res: dict[str, Any]) -> dict[str, float]:
    qs = list(res["users"].values())
    requests = sum(q["requests"] for q in qs)
    return {
        "util": statistics.median(q["util"] for q in qs),
        "util_min": min(q["util"] for q in qs),
        "util_burst": statistics.median(q["util_burst"] for q in qs),
        "util_burst_min": min(q["util_burst"] for q in qs),
        "share": sum(q["throttled"] for q in qs) / requests if requests else 0.0,
        "share_max": max(q["share_429"] for q in qs),
        "elapsed": res["elapsed"],
        "retries": res["retries"],
        "dead": res["dead"],
    }


def summary(args: argparse.Namespace, results: dict[str, list[dict[str, Any]]]) -> None:
    runs = max(len(v) for v in results.values())
    print(
        f"\nsummary ({'median of ' + str(runs) + ' runs' if runs > 1 else '1 run'} per mode): "
        f"{args.users} users x {args.messages} messages + {args.events} events, Gmail quota "
        f"{args.quota:g} units/s burst {args.burst:g}, Calendar {args.calendar_quota:g}/s burst "
        f"{args.calendar_burst:g} per user, {args.workers} x prefork -c {args.concurrency}"
    )
    print(
        "utilisation = Gmail units charged / units allowed over the user's window (its "
        "ingest_gmail job, first attempt's start to finish); rate = rate x window, "
        "+burst = burst + rate x window"
    )
    head = (
        f"{'guards':<7}{'rate% med':>10}{'min':>8}{'+burst% med':>12}{'min':>8}{'429% all':>9}"
        f"{'worst':>7}{'wall s':>8}{'retries':>8}{'dead':>6}  runs succeeded"
    )
    print(head)
    print("-" * len(head))
    verdicts = []
    for mode, mode_results in results.items():
        figs = [mode_figures(r) for r in mode_results]

        def med(key: str, figs: list[dict[str, float]] = figs) -> float:
            return float(statistics.median(f[key] for f in figs))

        ok = sum(r["succeeded"] for r in mode_results)
        expected = sum(r["expected"] for r in mode_results)
        print(
            f"{mode:<7}{100 * med('util'):>10.1f}{100 * med('util_min'):>8.1f}"
            f"{100 * med('util_burst'):>12.1f}{100 * med('util_burst_min'):>8.1f}"
            f"{100 * med('share'):>9.2f}{100 * med('share_max'):>7.2f}"
            f"{med('elapsed'):>8.1f}{med('retries'):>8.0f}{med('dead'):>6.0f}"
            f"  {ok}/{expected}{'' if ok == expected else '  NOT ALL'}"
        )
        verdicts.append((mode, med("util"), med("util_burst"), med("share"), ok == expected))
    print(f"\ntargets (median user utilisation >= {UTIL_TARGET:.0%}, 429s <= {SHARE_TARGET:.0%}):")
    for mode, util, util_burst, share, complete in verdicts:
        checks = (
            ("utilisation, rate x window", f"{util:.1%}", util >= UTIL_TARGET),
            ("utilisation, burst + rate x window", f"{util_burst:.1%}", util_burst >= UTIL_TARGET),
            ("429s of all Gmail requests", f"{share:.2%}", share <= SHARE_TARGET),
            ("every pipeline run succeeded", "yes" if complete else "no", complete),
        )
        for what, value, ok in checks:
            print(f"  guards {mode:<4}{what:<38}{value:>8}  {'MET' if ok else 'MISSED'}")


# --------------------------------------------------------------------------- main


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    pipeline.add_common_args(p, name="quota", redis_db=14)
    p.add_argument("--modes", default="on,off", help="guards modes in run order: on, off")
    p.add_argument("--log", type=Path, default=Path("/tmp/jobsys-quota-bench-workers.log"))
    args = p.parse_args()
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in args.modes if m not in MODES]
    if unknown or not args.modes:
        p.error(f"--modes takes {', '.join(MODES)}; got {unknown or 'none'}")
    return args


def main() -> None:
    args = parse()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    pipeline.configure(args)  # FAST heartbeats and the limiter = the emulator's quota
    print(f"database {args.db_url}, redis {args.redis_url}, worker log {args.log}", flush=True)
    results: dict[str, list[dict[str, Any]]] = {m: [] for m in args.modes}
    try:
        for n in range(1, args.runs + 1):
            k = (n - 1) % len(args.modes)
            for mode in args.modes[k:] + args.modes[:k]:
                started = time.monotonic()
                res = one_mode(args, mode, n)
                results[mode].append(res)
                print_mode(mode, n, res)
                print(f"(mode done in {time.monotonic() - started:.1f} s)", flush=True)
        summary(args, results)
    finally:
        pipeline.stop_workers()
        if not args.keep_db:
            from jobsys.engine import runtime

            runtime.reset()
            pipeline.recreate_database(args.db_url, drop_only=True)


if __name__ == "__main__":
    main()
