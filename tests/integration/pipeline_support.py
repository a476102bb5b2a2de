"""Fixtures for the sync pipeline's integration tests: an emulator, users, runs.

The Google emulator runs in the test process (a daemon thread on loopback);
real worker processes reach it through ``JOBSYS_GOOGLE_API_ENDPOINT``.
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from jobsys.connectors.google.emulator import Emulator, TruthEvent, TruthMessage, running
from jobsys.store import Job, Store
from jobsys.store.sync import SyncStore
from jobsys.store.tokens import TokenCipher, generate_key
from jobsys.store.users import UserStore
from jobsys.tasks import sync_user
from tests.conftest import Env, StartWorkers
from tests.support.wait import wait_until

RUN_TIMEOUT = 120.0  # one run of a few users on a loaded 2-core machine, with faults


@dataclass
class Pipeline:
    """The emulator, the users provisioned from it, and helpers to run syncs."""

    env: Env
    emulator: Emulator
    key: str
    users: dict[str, str] = field(default_factory=dict)  # email -> jobsys user id

    @property
    def sync(self) -> SyncStore:
        return SyncStore(self.env.store)

    @property
    def worker_env(self) -> dict[str, str]:
        return {
            "JOBSYS_GOOGLE_API_ENDPOINT": self.emulator.base_url,
            "JOBSYS_GOOGLE_TOKEN_URI": self.emulator.token_uri,
            "APP_ENCRYPTION_KEY": self.key,
        }

    def provision(self) -> dict[str, str]:
        """Add every emulator user to jobsys with encrypted tokens; returns email -> id."""
        cipher, users = TokenCipher(self.key), UserStore(self.env.store)
        for creds in self.emulator.users():
            user = users.add(creds.email)
            users.save_credential(
                user.id,
                "google",
                token=cipher.encrypt(creds.access_token),
                refresh_token=cipher.encrypt(creds.refresh_token),
            )
            self.users[creds.email] = user.id
        return dict(self.users)

    def start(self, user_id: str, *, full: bool = False) -> uuid.UUID:
        """Enqueue ``sync_user`` and return the id of the run it started or joined."""
        job = self.finished_job(uuid.UUID(sync_user.delay(user_id, full=full).id))
        assert job.result is not None, f"sync_user ended {job.status} with {job.errors}"
        return uuid.UUID(job.result["run_id"])

    def finished_job(self, job_id: uuid.UUID, timeout: float = 60) -> Job:
        """The job once it reached a final status."""
        job = wait_until(
            lambda: self.env.finished(job_id), timeout=timeout, what=f"job {job_id} to finish"
        )
        assert job is not None
        return job

    def wait_run(self, run_id: uuid.UUID, timeout: float = RUN_TIMEOUT) -> dict[str, Any]:
        """The run once it left ``running``."""

        def finished() -> dict[str, Any] | None:
            run = self.sync.get_run(run_id)
            return run if run is not None and run["status"] != "running" else None

        run = wait_until(finished, timeout=timeout, what=f"run {run_id} to finish", interval=0.2)
        assert run is not None
        return run

    def run(self, user_id: str, *, full: bool = False) -> dict[str, Any]:
        """Sync one user to the end; returns the finished run."""
        return self.wait_run(self.start(user_id, full=full))

    def run_all(self, *, full: bool = False) -> dict[str, dict[str, Any]]:
        """Sync every user at once; returns email -> finished run."""
        started = {email: self.start(uid, full=full) for email, uid in self.users.items()}
        return {email: self.wait_run(run_id) for email, run_id in started.items()}

    def api_calls(self, email: str) -> dict[str, int]:
        """Requests per API method the emulator answered for ``email`` since the last reset."""
        per_method = self.emulator.stats()["users"].get(email, {})
        return {method: counts["requests"] for method, counts in per_method.items()}

    def duplicates(self) -> dict[str, int]:
        """Rows whose natural key occurs more than once, per table (should be empty)."""
        return duplicated_keys(self.env.store)

    def job_statuses(self) -> Counter[str]:
        with self.env.store.durable.connect() as conn:
            rows = conn.exec_driver_sql("SELECT status, count(*) FROM jobs GROUP BY status")
            return Counter({str(s): int(n) for s, n in rows})


# Each synced table's natural key: a row whose key occurs twice is a duplicate.
NATURAL_KEYS = {
    "raw_messages": "user_id, gmail_id",
    "messages": "user_id, gmail_id",
    "raw_events": "user_id, event_id",
    "events": "user_id, event_id",
    "contacts": "user_id, addr",
    "interactions": "user_id, source_id, addr, kind",
    "sync_cursors": "user_id, source",
}


def duplicated_keys(store: Store) -> dict[str, int]:
    """Natural keys that occur more than once, counted per table (only tables that have some)."""
    found: dict[str, int] = {}
    with store.durable.connect() as conn:
        for table, key in NATURAL_KEYS.items():
            n = conn.exec_driver_sql(
                f"SELECT count(*) FROM (SELECT {key} FROM {table}"
                f" GROUP BY {key} HAVING count(*) > 1) d"
            ).scalar_one()
            if n:
                found[table] = int(n)
    return found


@pytest.fixture
def pipeline_factory(
    jobsys_env: Env, start_workers: StartWorkers, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., Pipeline]]:
    """``make(users=2, messages_per_user=20, events_per_user=8, ...)``: an emulator, users.

    Workers are not started: call ``start_workers(..., env=pipeline.worker_env)``.
    """
    key = generate_key()
    monkeypatch.setenv("APP_ENCRYPTION_KEY", key)
    stack: list[Any] = []

    def make(users: int = 2, seed: int = 7, **config: Any) -> Pipeline:
        config.setdefault("messages_per_user", 20)
        config.setdefault("events_per_user", 8)
        context = running(users=users, seed=seed, **config)
        emulator = context.__enter__()
        stack.append(context)
        pipeline = Pipeline(jobsys_env, emulator, key)
        pipeline.provision()
        return pipeline

    yield make
    for context in reversed(stack):
        context.__exit__(None, None, None)


# -- comparing synced rows with the emulator's ground truth --------------------


def message_facts(rows: list[dict[str, Any]]) -> dict[str, tuple[Any, ...]]:
    """gmail id -> (thread, subject, senders, to, cc, sent_at, labels) of synced messages."""
    return {
        r["gmail_id"]: (
            r["thread_id"],
            r["subject"],
            [a["addr"] for a in r["from_addrs"]],
            [a["addr"] for a in r["to_addrs"]],
            [a["addr"] for a in r["cc_addrs"]],
            r["sent_at"],
            sorted(r["labels"]),
        )
        for r in rows
    }


def truth_message_facts(truth: list[TruthMessage]) -> dict[str, tuple[Any, ...]]:
    """The same facts, from the emulator's truth (addresses compared case-insensitively)."""
    return {
        t["id"]: (
            t["thread_id"],
            t["subject"],
            [a.lower() for a in t["senders"]],
            [a.lower() for a in t["to"]],
            [a.lower() for a in t["cc"]],
            t["sent_at"],
            sorted(t["labels"]),
        )
        for t in truth
    }


def listed_events(truth: list[TruthEvent]) -> list[TruthEvent]:
    """The truth a full sync can see.

    A full ``events.list`` (no ``showDeleted``) omits whole events that are
    cancelled, as Calendar does; they reach jobsys only through an incremental
    listing. Cancelled instances of a series are listed and kept.
    """
    return [t for t in truth if t["status"] != "cancelled" or t["recurring_event_id"]]


def never_listed(truth: list[TruthEvent]) -> set[str]:
    """Ids of events a full listing omits (see :func:`listed_events`)."""
    return {t["id"] for t in truth} - {t["id"] for t in listed_events(truth)}


def event_facts(rows: list[dict[str, Any]]) -> dict[str, tuple[Any, ...]]:
    """event id -> (summary, status, all_day, start, end, organizer, attendees, series)."""
    return {
        r["event_id"]: (
            r["summary"] if r["status"] != "cancelled" else None,
            r["status"],
            r["all_day"],
            r["start_at"],
            r["end_at"],
            r["organizer"],
            sorted((a["addr"], a["response_status"]) for a in r["attendees"]),
            r["recurring_event_id"],
        )
        for r in rows
    }


def truth_event_facts(truth: list[TruthEvent]) -> dict[str, tuple[Any, ...]]:
    """The same facts from the truth, as a synced cancellation carries them.

    Calendar answers a cancelled event with a stub (id, status, updated and,
    for an instance, recurringEventId and originalStartTime): no summary,
    times, organizer or attendees reach jobsys, so those are compared as absent.
    """
    out: dict[str, tuple[Any, ...]] = {}
    for t in truth:
        if t["status"] == "cancelled":
            out[t["id"]] = (None, "cancelled", False, None, None, None, [], t["recurring_event_id"])
        else:
            out[t["id"]] = (
                t["summary"],
                t["status"],
                t["all_day"],
                t["start"],
                t["end"],
                t["organizer"].lower() if t["organizer"] else None,
                sorted((a["email"].lower(), a["response_status"]) for a in t["attendees"]),
                t["recurring_event_id"],
            )
    return out


def assert_matches_truth(p: Pipeline, email: str, *, hidden: set[str] | None = None) -> None:
    """The user's messages and events equal the emulator's truth.

    Events: those a full listing shows, or (after incremental syncs) every event
    but the ``hidden`` ones, cancelled before the first full listing ever saw them.
    """
    user_id = p.users[email]
    assert message_facts(p.sync.messages(user_id)) == truth_message_facts(
        p.emulator.truth_messages(email)
    )
    truth = p.emulator.truth_events(email)
    expected = (
        listed_events(truth) if hidden is None else [t for t in truth if t["id"] not in hidden]
    )
    assert event_facts(p.sync.events(user_id)) == truth_event_facts(expected)


def raw_message(n: int, sender: str, to: str, subject: str | None = None) -> bytes:
    """A small well-formed RFC 822 message, the kind a test delivers to a mailbox."""
    return (
        f"From: Sender {n} <{sender}>\r\n"
        f"To: {to}\r\n"
        f"Subject: {subject or f'delta {n}'}\r\n"
        f"Date: Mon, 03 Feb 2025 10:{n % 60:02d}:00 +0100\r\n"
        f"Message-ID: <delta-{n}@test.example>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "\r\n"
        f"Body of message {n}.\r\n"
    ).encode()


def new_event(n: int, owner: str, attendee: str) -> dict[str, Any]:
    """A timed Calendar v3 event resource (the emulator assigns its id)."""
    return {
        "summary": f"Added meeting {n}",
        "start": {"dateTime": f"2025-02-1{n % 10}T09:00:00+01:00", "timeZone": "Europe/Berlin"},
        "end": {"dateTime": f"2025-02-1{n % 10}T09:30:00+01:00", "timeZone": "Europe/Berlin"},
        "organizer": {"email": owner, "self": True},
        "attendees": [
            {"email": owner, "self": True, "organizer": True, "responseStatus": "accepted"},
            {"email": attendee, "responseStatus": "tentative"},
        ],
    }


def change_mailbox_and_calendar(p: Pipeline, email: str, tag: int) -> None:
    """Deliver two messages, delete the oldest, cancel a confirmed event and add one."""
    for n in (tag, tag + 1):
        p.emulator.add_message(email, raw_message(n, f"peer{n}@other.example", email))
    oldest = p.emulator.truth_messages(email)[-1]["id"]
    assert p.emulator.delete_message(email, oldest)
    confirmed = [t for t in p.emulator.truth_events(email) if t["status"] == "confirmed"]
    assert p.emulator.cancel_event(email, confirmed[0]["id"])
    p.emulator.put_event(email, new_event(tag, email, f"guest{tag}@other.example"))


@contextlib.contextmanager
def fault_bursts(
    emulator: Emulator, *, error_rate: float, burst: int, every: float
) -> Iterator[None]:
    """``error_rate`` of API requests answer 503, and every ``every`` s the next ``burst`` 429."""
    stop = threading.Event()

    def rearm() -> None:
        while not stop.is_set():
            emulator.set_faults(error_rate=error_rate, throttle_next=burst)
            stop.wait(every)

    thread = threading.Thread(target=rearm, name="fault-bursts", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        emulator.clear_faults()


def injected_errors(emulator: Emulator) -> int:
    """API requests the emulator answered with an error (faults, 429s, 401s) so far."""
    users = emulator.stats()["users"]
    return sum(c["errors"] + c["throttled"] for per in users.values() for c in per.values())
