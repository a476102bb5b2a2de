"""Job kinds the integration tests run in real worker processes.

Workers import this module through ``JOBSYS_IMPORTS=tests.support.kinds``.
Handlers keep whatever must survive an attempt (call counters, runs, successes)
in the test's Redis database, under keys derived from the payload's ``key``.
"""

from __future__ import annotations

import os
import time
from typing import Any

import redis
from billiard.exceptions import SoftTimeLimitExceeded
from pydantic import BaseModel, Field

from jobsys import JobContext, JobError, job
from jobsys.engine import runtime

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


@job(kind="test.noop")
def noop(ctx: JobContext) -> None:
    return None


@job(kind="test.echo", payload=Echo)
def echo(ctx: JobContext, payload: Echo) -> dict[str, Any]:
    return {"echo": payload.value, "attempt": ctx.attempt}


@job(kind="test.flaky", payload=Flaky, max_attempts=5)
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
