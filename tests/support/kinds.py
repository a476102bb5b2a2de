"""Job kinds the integration tests run in real worker processes.

Workers import this module through ``JOBSYS_IMPORTS=tests.support.kinds``.
Handlers keep whatever must survive an attempt (call counters, runs, successes)
in the test's Redis database, under keys derived from the payload's ``key``.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any, Literal

import psycopg2
import redis
from billiard.exceptions import SoftTimeLimitExceeded
from pydantic import BaseModel, Field
from sqlalchemy.engine import make_url

from jobsys import Attempt, Hook, JobContext, JobError, Recorded, Runtime, job
from jobsys.engine import runtime
from jobsys.engine.dispatch import Dispatch

_clients: dict[int, redis.Redis] = {}


def counters() -> redis.Redis:
    """This process's client for the test's Redis database (the broker's)."""
    pid = os.getpid()
    if pid not in _clients:
        _clients.clear()
        _clients[pid] = redis.Redis.from_url(runtime.current().urls.broker)
    return _clients[pid]


class Echo(BaseModel):
    value: Any = None


class Keyed(BaseModel):
    key: str = Field(min_length=1)


class Flaky(Keyed):
    failures: int = Field(ge=0)


class Slow(Keyed):
    seconds: float = Field(gt=0)


class Stamp(Keyed):
    tag: str
    seconds: float = 0.0


@job(kind="test.stamp", payload=Stamp)
def stamp(ctx: JobContext, payload: Stamp) -> None:
    """Appends its tag to ``<key>:starts`` when it starts (the recorded start order)."""
    counters().rpush(f"{payload.key}:starts", payload.tag)
    time.sleep(payload.seconds)


class Overlap(Keyed):
    tag: str
    seconds: float = 0.05


def _bracket(payload: Overlap) -> None:
    """Records its start and end in ``<key>:events``: the order shows any overlap."""
    counters().rpush(f"{payload.key}:events", f"start:{payload.tag}")
    time.sleep(payload.seconds)
    counters().rpush(f"{payload.key}:events", f"end:{payload.tag}")


@job(kind="test.keyed_one", payload=Overlap, concurrency_key="one:{key}", concurrency=1)
def keyed_one(ctx: JobContext, payload: Overlap) -> None:
    _bracket(payload)


@job(kind="test.keyed_three", payload=Overlap, concurrency_key="three:{key}", concurrency=3)
def keyed_three(ctx: JobContext, payload: Overlap) -> None:
    _bracket(payload)


class Member(Overlap):
    failures: int = Field(0, ge=0)  # attempts that fail before one succeeds


@job(
    kind="test.keyed_member",
    payload=Member,
    results=True,  # a chord counts its members' results
    max_attempts=3,
    concurrency_key="member:{key}",
    concurrency=1,
)
def keyed_member(ctx: JobContext, payload: Member) -> str:
    """A chord member of a key of concurrency 1; brackets each attempt in ``<key>:events``."""
    calls = int(counters().incr(f"{payload.key}:{payload.tag}:calls"))
    _bracket(payload)
    if calls <= payload.failures:
        raise JobError(f"planned failure {calls} of {payload.failures}", reason="flaky")
    return payload.tag


@job(kind="test.chord_end", payload=Keyed)
def chord_end(ctx: JobContext, payload: Keyed) -> None:
    """A chord's callback: records ``callback`` in ``<key>:events`` after its members'."""
    counters().rpush(f"{payload.key}:events", "callback")


@job(kind="test.noop")
def noop(ctx: JobContext) -> None:
    return None


@job(kind="test.echo", payload=Echo, deadline=60)
def echo(ctx: JobContext, payload: Echo) -> dict[str, Any]:
    return {"echo": payload.value, "attempt": ctx.attempt}


@job(kind="test.flaky", payload=Flaky, max_attempts=5, deadline=timedelta(minutes=2))
def flaky(ctx: JobContext, payload: Flaky) -> dict[str, Any]:
    calls = int(counters().incr(f"{payload.key}:calls"))
    if calls <= payload.failures:
        raise JobError(f"planned failure {calls} of {payload.failures}", reason="flaky")
    return {"calls": calls}


@job(kind="test.broken", payload=Keyed, max_attempts=3)
def broken(ctx: JobContext, payload: Keyed) -> dict[str, Any]:
    """Fails while ``<key>:broken`` exists in Redis (the bug), succeeds once it is gone."""
    counters().incr(f"{payload.key}:calls")
    if counters().exists(f"{payload.key}:broken"):
        raise RuntimeError(f"still broken on attempt {ctx.attempt}")
    return {"fixed_on_attempt": ctx.attempt}


@job(kind="test.overrun", payload=Keyed, max_attempts=2, timeout=2, soft_timeout=1)
def overrun(ctx: JobContext, payload: Keyed) -> None:
    """Ignores its soft limit and never returns: only the hard limit stops it."""
    counters().incr(f"{payload.key}:calls")
    while True:
        try:
            time.sleep(0.1)
        except SoftTimeLimitExceeded:
            counters().incr(f"{payload.key}:soft")


@job(kind="test.exit", payload=Keyed, max_attempts=3)
def exits(ctx: JobContext, payload: Keyed) -> None:
    """Kills its own process, as a segfaulting C extension would."""
    counters().incr(f"{payload.key}:calls")
    os._exit(1)


@job(kind="test.slow", payload=Slow, max_attempts=5, timeout=60, soft_timeout=50)
def slow(ctx: JobContext, payload: Slow) -> dict[str, Any]:
    """Records each run (attempt and pid) on entry and each success on the way out."""
    counters().rpush(f"{payload.key}:runs", f"{ctx.attempt}:{os.getpid()}")
    deadline = time.monotonic() + payload.seconds
    while time.monotonic() < deadline:
        time.sleep(0.05)
    counters().incr(f"{payload.key}:successes")
    return {"pid": os.getpid(), "attempt": ctx.attempt}


@job(kind="test.store_blip", payload=Keyed, max_attempts=1)
def store_blip(ctx: JobContext, payload: Keyed) -> dict[str, Any]:
    """On its first run, PostgreSQL drops every connection (as in a restart) mid-handler.

    Its next heartbeat then meets the closed connection. One attempt only: if the
    outage spent it, the job would be dead-lettered.
    """
    calls = int(counters().incr(f"{payload.key}:calls"))
    if calls == 1:
        _drop_every_connection(ctx.runtime.urls.database)
    ctx.heartbeat()
    counters().incr(f"{payload.key}:successes")
    return {"calls": calls}


def _drop_every_connection(database_url: str) -> None:
    dsn = make_url(database_url).set(drivername="postgresql")
    admin = psycopg2.connect(dsn.render_as_string(hide_password=False))
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            cur.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
    finally:
        admin.close()


class Patient(Keyed):
    seconds: float = Field(gt=0, le=60)


@job(kind="test.patient", payload=Patient, max_attempts=3, timeout=90, soft_timeout=80)
def patient(ctx: JobContext, payload: Patient) -> dict[str, Any]:
    """Heartbeats every 50 ms for ``seconds``; records its start and each beat in Redis."""
    counters().rpush(f"{payload.key}:started", ctx.attempt)
    deadline = time.monotonic() + payload.seconds
    while time.monotonic() < deadline:
        ctx.heartbeat()  # raises JobCancelled once the job is cancelled or revoked
        counters().incr(f"{payload.key}:beats")
        time.sleep(0.05)
    counters().incr(f"{payload.key}:finished")
    return {"beats": int(counters().get(f"{payload.key}:beats") or 0)}


class Odd(BaseModel):
    what: Literal["nan", "nul", "object", "nul_error"]


@job(kind="test.unstorable", payload=Odd, max_attempts=2)
def unstorable(ctx: JobContext, payload: Odd) -> Any:
    """Returns what PostgreSQL's jsonb cannot hold, or fails with a NUL in its message."""
    if payload.what == "nul_error":
        raise RuntimeError("bad byte \x00 in the input")
    return {"nan": float("nan"), "nul": "a\u0000b", "object": object()}[payload.what]


HOOK_LOG = "test-hooks:events"  # a Redis list of what the recording hook saw, in order


class RecordingHook(Hook):
    """Appends every engine event about a job to :data:`HOOK_LOG` (in the test's Redis db)."""

    def before_dispatch(self, dispatch: Dispatch) -> Dispatch:
        self._log(dispatch.job_id, f"dispatch:{dispatch.why.value}")
        return dispatch

    def after_claim(self, attempt: Attempt) -> None:
        self._log(attempt.job.id, f"claim:{attempt.job.attempt}")

    def around_handler(self, attempt: Attempt, call: Callable[[], Any]) -> Any:
        self._log(attempt.job.id, f"run:{attempt.job.attempt}")
        return call()

    def after_record(self, recorded: Recorded) -> None:
        self._log(recorded.job.id, f"record:{recorded.outcome.value}:{recorded.job.attempt}")

    def _log(self, job_id: uuid.UUID, event: str) -> None:
        counters().rpush(HOOK_LOG, f"{job_id} {os.getpid()} {event}")


SPANS = "test-hooks:spans"  # a Redis list: start/end of each handler call, in order


class HandlerSpans(Hook):
    """Appends ``start:<kind>:<job id>`` and ``end:<kind>:<job id>`` to :data:`SPANS` around
    every handler call: inside the attempt's claim and its record, so two spans that
    overlap in this order were running at once."""

    def around_handler(self, attempt: Attempt, call: Callable[[], Any]) -> Any:
        job = attempt.job
        counters().rpush(SPANS, f"start:{job.kind}:{job.id}")
        try:
            return call()
        finally:
            counters().rpush(SPANS, f"end:{job.kind}:{job.id}")


class HeldPublish(Hook):
    """Holds admission's publishes while the file ``path`` exists, once a promotion has
    committed (it touches ``path + ".held"`` first): a kill lands between the two."""

    def __init__(self, path: str) -> None:
        self.path = path

    def before_dispatch(self, dispatch: Dispatch) -> Dispatch:
        if dispatch.why.value == "admit" and os.path.exists(self.path):
            with open(self.path + ".held", "w"):
                pass
            while os.path.exists(self.path):
                time.sleep(0.05)
        return dispatch


def jobsys_hooks(runtime: Runtime) -> list[Hook]:
    """Workers started with ``JOBSYS_TEST_HOOKS=1`` record engine events (see RecordingHook);
    with ``JOBSYS_TEST_SPANS=1``, handler calls (HandlerSpans); with
    ``JOBSYS_TEST_HOLD_PUBLISH=path``, admission's publishes wait (HeldPublish)."""
    hooks: list[Hook] = []
    if os.environ.get("JOBSYS_TEST_HOOKS") == "1":
        hooks.append(RecordingHook())
    if os.environ.get("JOBSYS_TEST_SPANS") == "1":
        hooks.append(HandlerSpans())
    held = os.environ.get("JOBSYS_TEST_HOLD_PUBLISH")
    if held:
        hooks.append(HeldPublish(held))
    return hooks


def hook_events(client: redis.Redis, job_id: uuid.UUID) -> list[tuple[int, str]]:
    """(pid, event) of every recorded event about ``job_id``, in the order they happened."""
    out = []
    for line in client.lrange(HOOK_LOG, 0, -1):
        ident, pid, event = line.decode().split(" ", 2)
        if ident == str(job_id):
            out.append((int(pid), event))
    return out
