"""Where a job's CPU goes, process by process, with admission on and off, in one run.

    .venv/bin/python bench/cpu.py                    # 30,000 no-op jobs of 100 users, 2 rounds
    .venv/bin/python bench/cpu.py --users 1 --rounds 3

Throughput on this 2-core machine moves by several percent from run to run;
CPU time per job does not, so this is the instrument for what admission costs.
For each side (``JOBSYS_ADMISSION`` true, then false; every other round the
other way round), on the machine's PostgreSQL and Redis (a database and a
Redis db of its own, as ``bench/fairness.py``):

1. ``--jobs`` no-op jobs of ``--users`` users are enqueued with
   ``enqueue_many`` (admission off publishes them all at once);
2. one node, ``celery -A jobsys worker -P prefork -c 2``, starts on them;
3. once ``--warm`` jobs are done, the CPU time (user + system, from
   ``/proc``) of every process that serves jobs is read, again ``--window``
   seconds later, and divided by the jobs done in between.

Processes are grouped: the node's main process (its consumer thread, and its
other threads: the promoter, heartbeat, revocations), its pool processes,
the PostgreSQL backends by who they serve (the promoter's sessions, the pool
processes', the rest; matched by their client port with ``ss``), PostgreSQL's
own processes, and Redis. ``machine`` is the whole machine's CPU over the
window (``/proc/stat``), so anything else running shows there.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import fairness  # noqa: E402  (after the path is set)

TICKS = os.sysconf("SC_CLK_TCK")
MACHINE, RATE = "machine", "jobs/s"
REDIS_NAMES = ("redis-server", "valkey-server")


def cpu_seconds(stat_path: str) -> float:
    """User + system CPU of a process or thread (0 once it is gone)."""
    try:
        with open(stat_path) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


def machine_seconds() -> float:
    with open("/proc/stat") as f:
        ticks = [int(v) for v in f.readline().split()[1:]]
    return (sum(ticks) - ticks[3] - ticks[4]) / TICKS  # all but idle and iowait


def process_group(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[2])
    except (FileNotFoundError, ProcessLookupError):
        return -1


def node_processes(node: int) -> dict[str, str]:
    """The node's threads and pool processes: /proc stat path -> group."""
    found = {}
    for tid in os.listdir(f"/proc/{node}/task"):
        label = "node consumer thread" if int(tid) == node else "node other threads"
        found[f"/proc/{node}/task/{tid}/stat"] = label
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) != node and process_group(int(name)) == node:
            found[f"/proc/{name}/stat"] = "pool processes"
    return found


def client_ports() -> dict[int, int]:
    """Local port -> pid, for this machine's TCP connections to PostgreSQL."""
    out = subprocess.run(
        ["ss", "-tnpH", "dst", ":5432"], capture_output=True, text=True, check=True
    ).stdout
    found = {}
    for line in out.splitlines():
        owner = re.search(r"pid=(\d+)", line)
        if owner:
            found[int(line.split()[3].rsplit(":", 1)[1])] = int(owner.group(1))
    return found


def postgres_processes(bench: fairness.Bench, pool: set[int]) -> dict[str, str]:
    """PostgreSQL's processes: /proc stat path -> group."""
    ports = client_ports()
    with bench.rt.postgres.transaction() as conn:
        rows = conn.exec_driver_sql(
            "SELECT pid, application_name, client_port, backend_type FROM pg_stat_activity"
        ).all()
    found = {}
    for pid, app, port, kind in rows:
        if kind != "client backend":
            label = "postgres own processes"
        elif app == "jobsys-admission":
            label = "postgres for the promoter"
        elif ports.get(port) in pool:
            label = "postgres for pool processes"
        else:
            label = "postgres, other sessions"
        found[f"/proc/{pid}/stat"] = label
    return found


def redis_processes() -> dict[str, str]:
    out = subprocess.run(["pidof", *REDIS_NAMES], capture_output=True, text=True).stdout
    return {f"/proc/{pid}/stat": "redis" for pid in out.split()}


def succeeded(bench: fairness.Bench) -> int:
    with bench.rt.postgres.transaction() as conn:
        n = conn.exec_driver_sql("SELECT count(*) FROM jobs WHERE status = 'succeeded'").scalar()
    return int(n or 0)


def measure(args: argparse.Namespace, bench: fairness.Bench) -> dict[str, float]:
    """CPU ms per job by group over the window, once ``--warm`` jobs are done."""
    assert bench.worker is not None
    while succeeded(bench) < args.warm:
        time.sleep(0.2)
    groups = node_processes(bench.worker.pid)
    pool = {int(p.split("/")[2]) for p, g in groups.items() if g == "pool processes"}
    groups |= postgres_processes(bench, pool) | redis_processes()
    before = {p: cpu_seconds(p) for p in groups}
    done0, t0, m0 = succeeded(bench), time.monotonic(), machine_seconds()
    time.sleep(args.window)
    after = {p: cpu_seconds(p) for p in groups}
    done1, t1, m1 = succeeded(bench), time.monotonic(), machine_seconds()
    if done1 >= args.jobs:
        print("  the jobs ran out within the window: idle time counts; raise --jobs")
    jobs = max(1, done1 - done0)
    per_job: dict[str, float] = defaultdict(float)
    for path, group in groups.items():
        per_job[group] += max(0.0, after[path] - before[path]) * 1000 / jobs
    per_job[MACHINE] = (m1 - m0) * 1000 / jobs
    per_job[RATE] = (done1 - done0) / (t1 - t0)
    return dict(per_job)


def one_side(args: argparse.Namespace, admission: bool) -> dict[str, float]:
    from jobsys import enqueue_many

    bench = fairness.Bench(args, admission)
    bench.reset()
    for start in range(0, args.jobs, 1000):
        batch = [(f"user-{i % args.users}", {}) for i in range(start, min(args.jobs, start + 1000))]
        enqueue_many("bench.noop", batch, runtime=bench.rt)
    bench.start_worker()
    try:
        return measure(args, bench)
    finally:
        bench.stop_worker()


def report(sides: dict[bool, list[dict[str, float]]]) -> None:
    groups = sorted({g for runs in sides.values() for run in runs for g in run} - {MACHINE, RATE})
    print(f"\n{'CPU ms per job (per round)':30} {'admission on':>26} {'admission off':>26}")
    for group in [*groups, MACHINE, RATE]:
        cells = [
            " ".join(f"{run.get(group, 0.0):7.3f}" for run in sides[on]) for on in (True, False)
        ]
        print(f"{group:30} {cells[0]:>26} {cells[1]:>26}")
    on, off = (
        {g: statistics.median(r[g] for r in sides[s]) for g in (MACHINE, RATE)}
        for s in (True, False)
    )
    print(
        f"\nmedians: throughput on/off {on[RATE] / off[RATE]:.3f}x; machine CPU per job"
        f" off/on {off[MACHINE] / on[MACHINE]:.3f}x (admission adds"
        f" {on[MACHINE] - off[MACHINE]:.3f} ms a job)"
    )


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--db-url", default="postgresql://postgres@127.0.0.1:5432/jobsys_bench_cpu")
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/12")
    p.add_argument("--jobs", type=int, default=30_000, help="no-op jobs per side")
    p.add_argument("--users", type=int, default=100, help="users the jobs are spread over")
    p.add_argument("--warm", type=int, default=2_000, help="jobs done before the window opens")
    p.add_argument("--window", type=float, default=15.0, help="s of measuring")
    p.add_argument("--rounds", type=int, default=2, help="on/off pairs")
    p.add_argument("--log", default="/tmp/jobsys-bench-cpu.log")
    args = p.parse_args()
    for name in ("jobs", "users", "rounds"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be at least 1")
    if args.warm < 0 or args.warm >= args.jobs or args.window <= 0:
        p.error("--warm must be under --jobs, and --window positive")
    return args


def main() -> None:
    args = parse()
    fairness.prepare(args)
    sides: dict[bool, list[dict[str, Any]]] = {True: [], False: []}
    try:
        for i in range(args.rounds):
            for admission in (True, False) if i % 2 == 0 else (False, True):
                run = one_side(args, admission)
                sides[admission].append(run)
                print(
                    f"round {i + 1}, admission {'on' if admission else 'off'}:"
                    f" {run[RATE]:.1f} jobs/s",
                    flush=True,
                )
        report(sides)
    finally:
        fairness.drop(args)


if __name__ == "__main__":
    main()
