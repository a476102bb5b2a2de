"""Job kinds for the benchmark (jobsys side). Loaded by the worker via JOBSYS_IMPORTS=bench.kinds.

``bench.noop`` does nothing; ``bench.stamp`` records when its handler started
(``RPUSH bench:stamps "<job id> <time.time()>"``) so the client can measure
start latency with the same clock and the same cheap write as the bare-Celery task.
"""

from __future__ import annotations

import time

from pydantic import BaseModel

from bench.stamps import STAMPS_KEY, stamps
from jobsys import job


@job(kind="bench.noop")
def noop(ctx: object) -> None:
    return None


@job(kind="bench.stamp")
def stamp(ctx) -> None:  # type: ignore[no-untyped-def]
    now = time.time()
    stamps().rpush(STAMPS_KEY, f"{ctx.job_id} {now!r}")


class Sleep(BaseModel):
    seconds: float = 0.0


@job(kind="bench.sleep", payload=Sleep)
def sleep(ctx, payload: Sleep) -> None:  # type: ignore[no-untyped-def]
    """Records its start like ``bench.stamp``, then sleeps ``seconds`` (a job's work)."""
    stamps().rpush(STAMPS_KEY, f"{ctx.job_id} {time.time()!r}")
    time.sleep(payload.seconds)
