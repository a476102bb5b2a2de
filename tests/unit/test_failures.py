from __future__ import annotations

import random

import psycopg2
import pytest
import sqlalchemy as sa
from billiard.exceptions import SoftTimeLimitExceeded, WorkerLostError
from hypothesis import given
from hypothesis import strategies as st

from jobsys import JobError, PayloadError, StoreUnavailableError
from jobsys.engine.failures import backoff, classify


@given(
    attempt=st.integers(min_value=1, max_value=200),
    base=st.floats(min_value=0.01, max_value=10),
    cap=st.floats(min_value=0.01, max_value=1000),
    seed=st.integers(),
)
def test_backoff_stays_within_the_capped_exponential(
    attempt: int, base: float, cap: float, seed: int
) -> None:
    delay = backoff(attempt, base=base, cap=cap, rng=random.Random(seed))
    assert 0 <= delay <= min(cap, base * 2 ** min(attempt - 1, 62))


def test_backoff_grows_on_average() -> None:
    # Given many draws per attempt
    rng = random.Random(1)
    means = [
        sum(backoff(a, base=1, cap=1000, rng=rng) for _ in range(2000)) / 2000 for a in (1, 3, 5)
    ]
    # Then full jitter averages half the ceiling: 0.5, 2, 8
    assert means[0] == pytest.approx(0.5, rel=0.1)
    assert means[1] == pytest.approx(2, rel=0.1)
    assert means[2] == pytest.approx(8, rel=0.1)


def test_backoff_rejects_attempt_zero() -> None:
    with pytest.raises(ValueError, match="attempt must be at least 1"):
        backoff(0, base=1, cap=1)


@pytest.mark.parametrize(
    ("exc", "reason", "retryable"),
    [
        (RuntimeError("boom"), "bug", True),
        (PayloadError("k", ["x: bad"]), "bad_input", False),
        (SoftTimeLimitExceeded(), "timeout", True),
        (WorkerLostError("gone"), "worker_lost", True),
        (JobError("token revoked", reason="auth", retryable=False), "auth", False),
    ],
)
def test_classify(exc: BaseException, reason: str, retryable: bool) -> None:
    failure = classify(exc)
    assert (failure.reason, failure.retryable) == (reason, retryable)
    assert failure.exc_type == type(exc).__name__


def test_classify_keeps_retry_after_and_traceback() -> None:
    try:
        raise JobError("slow down", reason="quota", retry_after=12.5)
    except JobError as e:
        failure = classify(e)
    assert failure.retry_after == 12.5
    assert "slow down" in failure.traceback
    assert "Traceback" in failure.traceback


@pytest.mark.parametrize(
    "exc",
    [
        StoreUnavailableError("PostgreSQL unavailable: server closed the connection"),
        sa.exc.OperationalError(
            "SELECT 1", {}, psycopg2.OperationalError("terminating connection due to admin")
        ),
        psycopg2.OperationalError("server closed the connection unexpectedly"),
    ],
)
def test_a_lost_database_connection_hands_the_attempt_back(exc: BaseException) -> None:
    # When a handler's attempt ends in PostgreSQL going away
    failure = classify(exc)

    # Then it is postponed as infrastructure, not counted as the job's failure
    assert (failure.reason, failure.retryable, failure.postpone) == (
        "store_unavailable",
        True,
        True,
    )


def test_other_database_errors_are_the_jobs_own() -> None:
    # A statement the database refuses is a bug in the job, and spends its attempt
    exc = sa.exc.ProgrammingError("SELECT nope", {}, psycopg2.ProgrammingError("syntax error"))
    failure = classify(exc)
    assert (failure.reason, failure.postpone) == ("bug", False)
