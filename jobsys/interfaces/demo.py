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
from jobsys.config import Settings, get_settings
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
    base = Settings()
    with _servers(base) as (db_url, broker_url):
        _configure(db_url, broker_url)
        from jobsys.store.migrate import upgrade

        upgrade(db_url)
        home = base.home.resolve()
        if options.sample:
            _sample(options, home)
        else:
            _sync(options, home)


def _sample(options: DemoOptions, home: Path) -> None:
    with _workers(options.nodes, home, imports="jobsys.interfaces.demo_kinds") as logs:
        console.print(f"[bold]workers[/] {options.nodes} (logs: {', '.join(logs)})")
        ids, started = _enqueue(options.sample), time.monotonic()
        _follow(ids, options.timeout)
        _summary(ids, time.monotonic() - started)


def _sync(options: DemoOptions, home: Path) -> None:
    from jobsys.connectors.google.emulator import running
    from jobsys.interfaces import demo_sync
    from jobsys.store.tokens import TokenCipher, generate_key

    key = os.environ.setdefault("APP_ENCRYPTION_KEY", generate_key())
    config: dict[str, Any] = {
        "messages_per_user": options.messages,
        "events_per_user": options.events,
    }
    with running(users=options.users, seed=7, port=0, **config) as emulator:
        console.print(f"[bold]Google emulator[/] at {emulator.base_url}")
        os.environ.update(
            JOBSYS_GOOGLE_API_ENDPOINT=emulator.base_url,
            JOBSYS_GOOGLE_TOKEN_URI=emulator.token_uri,
        )
        get_settings.cache_clear()
        user_ids = demo_sync.provision(emulator, TokenCipher(key))
        if options.fault_rate:
            emulator.set_faults(error_rate=options.fault_rate)
        with _workers(options.nodes, home) as logs:
            console.print(f"[bold]workers[/] {options.nodes} (logs: {', '.join(logs)})")
            # Full: cursors left by an earlier demo belong to another emulator's history.
            first = demo_sync.sync_round(
                "full sync", user_ids, emulator, options.timeout, full=True
            )
            rounds = [first]
            demo_sync.change_world(emulator, [u.email for u in emulator.users()])
            rounds.append(
                demo_sync.sync_round("incremental sync", user_ids, emulator, options.timeout)
            )
        demo_sync.summarise(rounds, user_ids)


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


def _configure(db_url: str, broker_url: str) -> None:
    os.environ.update(JOBSYS_DATABASE_URL=db_url, JOBSYS_BROKER_URL=broker_url, **FAST)
    get_settings.cache_clear()
    from jobsys.engine import runtime

    runtime.reset()


@contextlib.contextmanager
def _workers(nodes: int, home: Path, imports: str = "") -> Iterator[list[str]]:
    env = {**os.environ, "JOBSYS_IMPORTS": imports}
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
                        cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
                    )
                )
        _wait_ready(nodes, procs)
        yield logs
    finally:
        _stop(procs)


def _wait_ready(nodes: int, procs: list[subprocess.Popen[bytes]]) -> None:
    from jobsys.engine import runtime

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            raise RuntimeError("a demo worker exited at start; see its log under .jobsys/")
        alive = [w for w in runtime.store().list_workers() if w.status == "alive"]
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


def _enqueue(count: int) -> list[uuid.UUID]:
    import jobsys.interfaces.demo_kinds  # noqa: F401  (registers demo.work)
    from jobsys.engine.enqueue import enqueue_many

    def fails(n: int) -> int:
        if n == count - 1:
            return 99  # never succeeds: dead-lettered after its 3 attempts
        return 2 if n % 25 == 0 else 1 if n % 10 == 0 else 0

    items = [(f"user-{n % 20}", {"n": n, "fail_times": fails(n)}) for n in range(count)]
    ids = enqueue_many("demo.work", items)
    console.print(f"[bold]enqueued[/] {len(ids)} jobs of demo.work for 20 users")
    return ids


def _follow(ids: list[uuid.UUID], timeout: float) -> None:
    from jobsys.engine import runtime

    store, deadline = runtime.store(), time.monotonic() + timeout
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


def _summary(ids: list[uuid.UUID], elapsed: float) -> None:
    from jobsys.engine import runtime

    store = runtime.store()
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
            f"dead letter {dl.id}: job {dl.job_id} after {len(dl.attempts)} attempts, "
            f"reason={dl.reason}: {dl.message} (see `jobsys dlq show {dl.id}`)"
        )
