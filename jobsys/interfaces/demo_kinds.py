"""The sample job kind that ``jobsys demo`` runs."""

from __future__ import annotations

import hashlib
import time

from pydantic import BaseModel, Field

from jobsys.engine.context import JobContext
from jobsys.engine.task import job
from jobsys.errors import JobError


class Work(BaseModel):
    n: int = Field(ge=0)
    fail_times: int = Field(0, ge=0, description="attempts that fail before one succeeds")
    millis: int = Field(5, ge=0, le=10_000, description="simulated work per attempt")


@job(kind="demo.work", payload=Work, max_attempts=3, timeout=30, soft_timeout=20)
def work(ctx: JobContext, payload: Work) -> dict[str, object]:
    """Hash a little, sleep a little, fail the first ``fail_times`` attempts."""
    time.sleep(payload.millis / 1000)
    if ctx.attempt <= payload.fail_times:
        raise JobError(
            f"simulated transient failure {ctx.attempt}/{payload.fail_times}", reason="simulated"
        )
    digest = hashlib.sha256(str(payload.n).encode()).hexdigest()[:12]
    return {"n": payload.n, "digest": digest, "attempt": ctx.attempt}
