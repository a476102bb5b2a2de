"""What went wrong in an attempt, and what to do about it: retry when, or bury why."""

from __future__ import annotations

import dataclasses
import random
import traceback as tb
from datetime import UTC, datetime
from typing import Any

from billiard.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded, WorkerLostError
from pydantic import ValidationError

from jobsys.errors import PayloadError


class JobError(Exception):
    """Raise from a handler to say how the failure should be treated.

    Parameters:
        message: what went wrong.
        reason: a short classification (``auth``, ``quota``, ``expired_cursor``, ...).
        retryable: whether another attempt may succeed.
        retry_after: seconds to wait before the next attempt, overriding backoff.
    """

    def __init__(
        self,
        message: str,
        *,
        reason: str = "error",
        retryable: bool = True,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.retryable = retryable
        self.retry_after = retry_after


class JobCancelled(Exception):
    """Raised inside a handler when its job was cancelled."""


class JobPostponed(Exception):
    """Raise from a handler to run the job again later without spending an attempt.

    For a guard that refused before anything was tried (an open circuit
    breaker, a spent quota): the job is not failing, it is early.

    Parameters:
        message: why the job waits.
        delay: seconds until the next try.
        reason: a short classification (``quota``, ``breaker_open``, ``throttled``).
    """

    def __init__(self, message: str, *, delay: float, reason: str = "postponed") -> None:
        super().__init__(message)
        self.delay = max(0.0, delay)
        self.reason = reason


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
    """Turn an exception into a :class:`Failure`."""
    text = traceback if traceback is not None else "".join(tb.format_exception(exc))
    reason, retryable, retry_after = _reason(exc)
    message = str(exc) or type(exc).__name__
    postpone = isinstance(exc, JobPostponed)
    return Failure(type(exc).__name__, message, text, reason, retryable, retry_after, postpone)


def _reason(exc: BaseException) -> tuple[str, bool, float | None]:
    if isinstance(exc, JobError):
        return exc.reason, exc.retryable, exc.retry_after
    if isinstance(exc, JobPostponed):
        return exc.reason, True, exc.delay
    if isinstance(exc, PayloadError | ValidationError):
        return "bad_input", False, None
    if isinstance(exc, SoftTimeLimitExceeded | TimeLimitExceeded):
        return "timeout", True, None
    if isinstance(exc, WorkerLostError | SystemExit):
        return "worker_lost", True, None
    reason = getattr(exc, "reason", None)
    if isinstance(reason, str):
        return reason, bool(getattr(exc, "retryable", True)), getattr(exc, "retry_after", None)
    return "bug", True, None


def backoff(attempt: int, *, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(cap, base * 2**(attempt-1))]."""
    if attempt < 1:
        raise ValueError(f"attempt must be at least 1, got {attempt}")
    ceiling = min(cap, base * 2.0 ** min(attempt - 1, 62))
    return (rng or random).uniform(0.0, ceiling)
