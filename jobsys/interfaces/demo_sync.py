"""``jobsys demo``: users' Gmail and Calendar synced through all four phases.

A full round, then the world changes (new mail, cancelled meetings) and an
incremental round; per phase: jobs, time, throughput; Google quota and 429s;
retries; dead letters; and one user's top contacts.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from jobsys.engine.runtime import Runtime
from jobsys.errors import DuplicateUserError
from jobsys.interfaces import render
from jobsys.store import Status
from jobsys.store.sync import SyncStore, phase_stats, run_states
from jobsys.store.tokens import TokenCipher
from jobsys.store.users import UserStore

console = Console()
PHASES = (
    ("ingestion", ("sync.ingest_gmail", "sync.ingest_calendar")),
    ("normalization", ("sync.normalize",)),
    ("extraction", ("sync.extract",)),
    ("processing", ("sync.process",)),
)


@dataclasses.dataclass
class Round:
    name: str
    elapsed: float
    phases: list[dict[str, Any]]
    quota: dict[str, Any]
    runs: list[dict[str, Any]]
    items: dict[str, int]


def provision(rt: Runtime, emulator: Any, cipher: TokenCipher) -> list[str]:
    """Users for every emulator mailbox, with encrypted tokens; returns their ids."""
    users = UserStore(rt.postgres)
    ids = []
    for creds in emulator.users():
        try:
            user = users.add(creds.email)
        except DuplicateUserError:
            user = users.get(creds.email)
        users.save_credential(
            user.id,
            "google",
            token=cipher.encrypt(creds.access_token),
            refresh_token=cipher.encrypt(creds.refresh_token),
        )
        ids.append(user.id)
    return ids


def sync_round(
    rt: Runtime,
    name: str,
    user_ids: list[str],
    emulator: Any,
    timeout: float,
    *,
    full: bool = False,
) -> Round:
    from jobsys.tasks import sync_user

    emulator.reset_stats()
    started = time.monotonic()
    jobs = [uuid.UUID(sync_user.delay(uid, full=full).id) for uid in user_ids]
    runs = _run_ids(rt, jobs, timeout)
    _follow(rt, name, runs, len(user_ids), timeout)
    elapsed = time.monotonic() - started
    store = rt.postgres
    states = run_states(store, runs)
    return Round(name, elapsed, phase_stats(store, runs), emulator.stats(), states, _items(states))


def _run_ids(rt: Runtime, jobs: list[uuid.UUID], timeout: float) -> list[uuid.UUID]:
    store, deadline = rt.store, time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [store.get_job(j) for j in jobs]
        if all(j.status is Status.SUCCEEDED for j in found):
            return [uuid.UUID(j.result["run_id"]) for j in found if j.result["run_id"]]
        if any(j.status is Status.DEAD for j in found):
            raise RuntimeError("a sync.user job died; see `jobsys dlq list`")
        time.sleep(0.2)
    raise RuntimeError("sync jobs did not start in time")


def _follow(rt: Runtime, name: str, runs: list[uuid.UUID], users: int, timeout: float) -> None:
    store, deadline = rt.postgres, time.monotonic() + timeout
    columns = (
        TextColumn("{task.description:<14}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    console.print(f"[bold]{name}[/] of {users} users")
    with Progress(*columns, console=console) as bars:
        tasks = {p: bars.add_task(p, total=None) for p, _ in PHASES}
        while time.monotonic() < deadline:
            stats = {s["kind"]: s for s in phase_stats(store, runs)}
            states = run_states(store, runs)
            totals = {
                "ingestion": 2 * users,
                "extraction": users,
                "processing": users,
                "normalization": _batches(states),
            }
            for phase, kinds in PHASES:
                done = sum(int(stats.get(k, {}).get("succeeded", 0)) for k in kinds)
                bars.update(tasks[phase], completed=done, total=totals[phase])
            if all(s["status"] != "running" for s in states):
                return
            time.sleep(0.3)
    raise RuntimeError(f"{name} did not finish within {timeout:.0f} s")


def _batches(states: list[dict[str, Any]]) -> int | None:
    known = [s["steps"].get("normalize", {}).get("batches") for s in states]
    return None if any(k is None for k in known) else sum(known)


def _items(states: list[dict[str, Any]]) -> dict[str, int]:
    out = {"fetched": 0, "events": 0, "contacts": 0}
    for s in states:
        steps = s["steps"]
        gmail = steps.get("ingest_gmail", {})
        out["fetched"] += int(gmail.get("fetched", gmail.get("added", 0)))
        cal = steps.get("ingest_calendar", {})
        out["events"] += int(cal.get("listed", cal.get("changed", 0)))
        out["contacts"] += int(steps.get("process", {}).get("contacts_ranked", 0))
    return out


def change_world(emulator: Any, emails: list[str], *, per_user: int = 3) -> None:
    """New mail for every user, and one cancelled meeting each."""
    for n, email in enumerate(emails):
        for k in range(per_user):
            emulator.add_message(email, _mail(email, n, k))
        events = [e for e in emulator.truth_events(email) if e["status"] != "cancelled"]
        if events:
            emulator.cancel_event(email, events[0]["id"])


def _mail(to: str, n: int, k: int) -> bytes:
    msg = EmailMessage()
    msg["From"] = f"New Colleague {k} <colleague{k}@partner.example>"
    msg["To"] = to
    msg["Subject"] = f"Follow-up {n}.{k}: next steps"
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg["Message-ID"] = f"<demo-{n}-{k}-{uuid.uuid4().hex[:8]}@partner.example>"
    msg.set_content("Thanks for the meeting; here are the next steps.")
    return bytes(msg)


def summarise(rt: Runtime, rounds: list[Round], user_ids: list[str]) -> None:
    for r in rounds:
        rows = []
        for phase, kinds in PHASES:
            stats = [s for s in r.phases if s["kind"] in kinds]
            jobs = sum(int(s["jobs"]) for s in stats)
            seconds = _span(stats)
            items = _phase_items(phase, r)
            rate = f"{items / seconds:,.0f} {_unit(phase)}/s" if seconds and items else "-"
            rows.append(
                (
                    phase,
                    jobs,
                    f"{seconds:.2f} s" if seconds else "-",
                    rate,
                    sum(int(s["retries"] or 0) for s in stats),
                    sum(int(s["dead"]) for s in stats),
                )
            )
        render.table(
            f"{r.name}: {r.elapsed:.1f} s",
            ["phase", "jobs", "time", "throughput", "retries", "dead"],
            rows,
        )
        _quota(r)
    _top(rt, user_ids[0])


def _span(stats: list[dict[str, Any]]) -> float:
    starts = [s["first_start"] for s in stats if s["first_start"]]
    ends = [s["last_finish"] for s in stats if s["last_finish"]]
    return (max(ends) - min(starts)).total_seconds() if starts and ends else 0.0


def _phase_items(phase: str, r: Round) -> int:
    if phase == "ingestion":
        return r.items["fetched"] + r.items["events"]
    if phase == "normalization":
        return r.items["fetched"] + r.items["events"]
    return len(r.runs)


def _unit(phase: str) -> str:
    return "items" if phase in ("ingestion", "normalization") else "users"


def _quota(r: Round) -> None:
    users = r.quota.get("users", {})
    units = sum(m.get("units", 0) for u in users.values() for m in u.values())
    throttled = sum(m.get("throttled", 0) for u in users.values() for m in u.values())
    requests = sum(m.get("requests", 0) for u in users.values() for m in u.values())
    limits = r.quota.get("limits", {})
    rate = next((v["rate"] for k, v in limits.items() if "gmail" in k), None)
    ingest = [s for s in r.phases if s["kind"].startswith("sync.ingest")]
    window = _span(ingest)
    allowed = rate * window * len(users) if rate and window else 0
    share = f"{units / allowed:.0%}" if allowed else "-"
    console.print(
        f"  Google: {requests} requests, {units} quota units used of "
        f"{allowed:,.0f} allowed over the ingestion window ({share}); "
        f"{throttled} answered 429"
    )


def _top(rt: Runtime, user_id: str) -> None:
    user = UserStore(rt.postgres).get(user_id)
    data = SyncStore(rt.postgres).report(user_id, top=5)
    rows = [
        (
            c["rank"],
            c["addr"],
            c.get("display_name") or "",
            f"{c['score']:.3g}",
            c["messages_out"],
            c["messages_in"],
            c["meetings"],
        )
        for c in data["top_contacts"]
    ]
    render.table(
        f"top contacts of {user.email}",
        ["rank", "address", "name", "score", "sent", "received", "meetings"],
        rows,
    )
