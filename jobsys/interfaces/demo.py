"""``jobsys demo``: the sync pipeline (or sample jobs) on embedded or configured servers."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from jobsys import embedded
from jobsys.config import Settings
from jobsys.engine import runtime
from jobsys.engine.runtime import Runtime
from jobsys.interfaces import render
from jobsys.store import Status

console = Console()
FAST = {
    "JOBSYS_RETRY_BASE": "0.2",
    "JOBSYS_RETRY_CAP": "2",
    "JOBSYS_WORKER_HEARTBEAT": "1",
    "JOBSYS_SWEEP_INTERVAL": "2",
}


@dataclasses.dataclass(frozen=True)
class DemoOptions:
    users: int = 20
    messages: int = 200
    events: int = 60
    fault_rate: float = 0.0
    nodes: int = 2
    sample: int = 0  # > 0: run that many sample jobs instead of the sync pipeline
    timeout: float = 900.0


def run_demo(options: DemoOptions) -> None:
    """Start servers if needed, then the sync pipeline (or the sample jobs), and summarise."""
    base = Settings.from_env()
    with _servers(base) as (db_url, broker_url):
        from jobsys.store.migrate import upgrade

        upgrade(db_url)
        env = {"JOBSYS_DATABASE_URL": db_url, "JOBSYS_BROKER_URL": broker_url, **FAST}
        home = base.home.resolve()
        if options.sample:
            _sample(options, home, env)
        else:
            _sync(options, home, env)


def _runtime(env: dict[str, str]) -> Runtime:
    """The demo's own runtime, on the settings its workers get (installed for this process)."""
    rt = Runtime(Settings.from_variables(env))
    runtime.install(rt)
    return rt


def _sample(options: DemoOptions, home: Path, env: dict[str, str]) -> None:
    rt = _runtime(env)
    workers_env = {**env, "JOBSYS_IMPORTS": "jobsys.interfaces.demo_kinds"}
    with _workers(options.nodes, home, workers_env, rt) as logs:
        console.print(f"[bold]workers[/] {options.nodes} (logs: {', '.join(logs)})")
        ids, started = _enqueue(rt, options.sample), time.monotonic()
        _follow(rt, ids, options.timeout)
        _summary(rt, ids, time.monotonic() - started)


def _sync(options: DemoOptions, home: Path, env: dict[str, str]) -> None:
    from jobsys.connectors.google.emulator import running
    from jobsys.interfaces import demo_sync
    from jobsys.store.tokens import TokenCipher, generate_key

    key = os.environ.get("APP_ENCRYPTION_KEY") or generate_key()
    config: dict[str, Any] = {
        "messages_per_user": options.messages,
        "events_per_user": options.events,
    }
    with running(users=options.users, seed=7, port=0, **config) as emulator:
        console.print(f"[bold]Google emulator[/] at {emulator.base_url}")
        env = {
            **env,
            "APP_ENCRYPTION_KEY": key,
            "JOBSYS_GOOGLE_API_ENDPOINT": emulator.base_url,
            "JOBSYS_GOOGLE_TOKEN_URI": emulator.token_uri,
            "JOBSYS_IMPORTS": "jobsys.tasks",
        }
        rt = _runtime(env)
        user_ids = demo_sync.provision(rt, emulator, TokenCipher(key))
        if options.fault_rate:
            emulator.set_faults(error_rate=options.fault_rate)
        with _workers(options.nodes, home, env, rt) as logs:
            console.print(f"[bold]workers[/] {options.nodes} (logs: {', '.join(logs)})")
            # Full: cursors left by an earlier demo belong to another emulator's history.
            first = demo_sync.sync_round(
                rt, "full sync", user_ids, emulator, options.timeout, full=True
            )
            rounds = [first]
            demo_sync.change_world(emulator, [u.email for u in emulator.users()])
            rounds.append(
                demo_sync.sync_round(rt, "incremental sync", user_ids, emulator, options.timeout)
            )
        demo_sync.summarise(rt, rounds, user_ids)


@contextlib.contextmanager
def _servers(base: Settings) -> Iterator[tuple[str, str]]:
    if base.database_url and base.broker_url:
        yield base.database_url, base.broker_url
        return
    console.print("[bold]starting embedded PostgreSQL and Valkey[/] in", str(base.home))
    with embedded.running(base.home) as found:
        console.print(f"  JOBSYS_DATABASE_URL={found.database_url}")
        console.print(f"  JOBSYS_BROKER_URL={found.broker_url}")
        yield base.database_url or found.database_url, base.broker_url or found.broker_url


@contextlib.contextmanager
def _workers(nodes: int, home: Path, env: dict[str, str], rt: Runtime) -> Iterator[list[str]]:
    environ = {**os.environ, **env}
    procs, logs = [], []
    try:
        for i in range(nodes):
            log = home / f"demo-worker-{i}.log"
            logs.append(str(log))
            cmd = [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "jobsys",
                "worker",
                "-P",
                "prefork",
                "-c",
                "2",
                "-n",
                f"demo{i}@%h",
                "-l",
                "warning",
            ]
            with open(log, "w") as out:
                procs.append(
                    subprocess.Popen(
                        cmd,
                        env=environ,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )
        _wait_ready(rt, nodes, procs)
        yield logs
    finally:
        _stop(procs)


def _wait_ready(rt: Runtime, nodes: int, procs: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            raise RuntimeError("a demo worker exited at start; see its log under .jobsys/")
        alive = [w for w in rt.store.list_workers() if w.status == "alive"]
        if len([w for w in alive if w.name.startswith("demo")]) >= nodes:
            return
        time.sleep(0.3)
    raise RuntimeError("demo workers did not become ready within 60 s")


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=5)


def _enqueue(rt: Runtime, count: int) -> list[uuid.UUID]:
    import jobsys.interfaces.demo_kinds  # noqa: F401  (registers demo.work)
    from jobsys.engine.enqueue import enqueue_many

    def fails(n: int) -> int:
        if n == count - 1:
            return 99  # never succeeds: dead-lettered after its 3 attempts
        return 2 if n % 25 == 0 else 1 if n % 10 == 0 else 0

    items = [(f"user-{n % 20}", {"n": n, "fail_times": fails(n)}) for n in range(count)]
    ids = [r.job_id for r in enqueue_many("demo.work", items, runtime=rt)]
    console.print(f"[bold]enqueued[/] {len(ids)} jobs of demo.work for 20 users")
    return ids


def _follow(rt: Runtime, ids: list[uuid.UUID], timeout: float) -> None:
    store, deadline = rt.store, time.monotonic() + timeout
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as bar:
        task = bar.add_task("jobs finished", total=len(ids))
        while time.monotonic() < deadline:
            counts = store.count_by_status(ids)
            done = counts.get(Status.SUCCEEDED, 0) + counts.get(Status.DEAD, 0)
            bar.update(task, completed=done)
            if done >= len(ids):
                return
            time.sleep(0.25)
    raise RuntimeError(f"demo jobs did not finish within {timeout:.0f} s")


def _summary(rt: Runtime, ids: list[uuid.UUID], elapsed: float) -> None:
    store = rt.store
    counts = store.count_by_status(ids)
    jobs = store.list_jobs(kind="demo.work", limit=len(ids))
    retries = sum(max(0, j.attempt - 1) for j in jobs if j.status is Status.SUCCEEDED)
    letters = store.list_dead_letters(kind="demo.work", limit=10)
    rows = [
        ("jobs", len(ids)),
        ("succeeded", counts.get(Status.SUCCEEDED, 0)),
        ("dead-lettered", counts.get(Status.DEAD, 0)),
        ("retries of jobs that then succeeded", retries),
        ("elapsed", f"{elapsed:.2f} s"),
        ("throughput", f"{len(ids) / elapsed:.0f} jobs/s"),
    ]
    render.table("demo summary", ["", "value"], rows)
    if letters:
        dl = letters[0]
        console.print(
            render.literal(
                f"dead letter {dl.id}: job {dl.job_id} after {len(dl.attempts)} attempts, "
                f"reason={dl.reason}: {dl.message} (see `jobsys dlq show {dl.id}`)"
            )
        )
