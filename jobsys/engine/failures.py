"""What went wrong in an attempt, and what to do about it: retry when, or bury why."""

from __future__ import annotations

import dataclasses
import random
import traceback as tb
from datetime import UTC, datetime
from typing import Any

from billiard.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded, WorkerLostError
from pydantic import ValidationError

from jobsys.errors import JobPostponed, JobsysError
from jobsys.store import connection_lost
from jobsys.store.jsonb import without_nul


@dataclasses.dataclass(frozen=True)
class Failure:
    """One failed attempt, classified."""

    exc_type: str
    message: str
    traceback: str
    reason: str
    retryable: bool
    retry_after: float | None = None
    postpone: bool = False

    def entry(
        self, attempt: int, started_at: datetime | None, worker: str | None
    ) -> dict[str, Any]:
        """The attempt's record in the job's error history."""
        return {
            "attempt": attempt,
            "type": self.exc_type,
            "message": self.message,
            "reason": self.reason,
            "worker": worker,
            "started_at": started_at.isoformat() if started_at else None,
            "failed_at": datetime.now(UTC).isoformat(),
        }


def classify(exc: BaseException, traceback: str | None = None) -> Failure:
    """Turn an exception into a :class:`Failure`.

    A guard's postponement and a lost database connection hand the attempt
    back instead of spending it: neither says anything about the job, and a
    PostgreSQL restart must not move every running job toward its dead letter.
    """
    text = traceback if traceback is not None else "".join(tb.format_exception(exc))
    reason, retryable, retry_after = _reason(exc)
    message = str(exc) or type(exc).__name__
    # PostgreSQL's text and jsonb refuse NUL: an error quoting binary data is still recorded.
    message, text = without_nul(message), without_nul(text)
    postpone = isinstance(exc, JobPostponed) or reason == STORE_UNAVAILABLE
    return Failure(type(exc).__name__, message, text, reason, retryable, retry_after, postpone)


STORE_UNAVAILABLE = "store_unavailable"


def _reason(exc: BaseException) -> tuple[str, bool, float | None]:
    if connection_lost(exc):
        return STORE_UNAVAILABLE, True, None
    if isinstance(exc, JobsysError):
        return exc.reason, exc.retryable, exc.retry_after
    if isinstance(exc, ValidationError):
        return "bad_input", False, None
    if isinstance(exc, SoftTimeLimitExceeded | TimeLimitExceeded):
        return "timeout", True, None
    if isinstance(exc, WorkerLostError | SystemExit):
        return "worker_lost", True, None
    return "bug", True, None


def backoff(attempt: int, *, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(cap, base * 2**(attempt-1))]."""
    if attempt < 1:
        raise ValueError(f"attempt must be at least 1, got {attempt}")
    ceiling = min(cap, base * 2.0 ** min(attempt - 1, 62))
    return (rng or random).uniform(0.0, ceiling)
