"""Quotas as callers meet them: the error's words, its round trip, and the public API."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime, timedelta

import pytest

from jobsys import QuotaExceeded, enqueue, enqueue_many
from jobsys.store.quotas import frees_at
from tests.support.engine import ECHO, Engine

T0 = datetime(2026, 12, 3, 5, 0, tzinfo=UTC)


def test_frees_at_is_when_the_oldest_enqueues_holding_the_excess_age_out() -> None:
    buckets = [(T0, 2), (T0 + timedelta(minutes=5), 3), (T0 + timedelta(minutes=9), 1)]
    assert frees_at(buckets, 1) == T0 + timedelta(hours=1)
    assert frees_at(buckets, 2) == T0 + timedelta(hours=1)
    assert frees_at(buckets, 3) == T0 + timedelta(hours=1, minutes=5)
    assert frees_at(buckets, 7) is None


def test_the_error_names_user_limit_usage_and_survives_a_process_boundary() -> None:
    later = datetime.now(UTC) + timedelta(minutes=10)
    error = QuotaExceeded("u-7", "max_per_hour", 100, used=100, asked=1, frees_at=later)

    assert str(error).startswith("user 'u-7' is over its quota max_per_hour=100 (100 enqueued")
    assert "frees up at" in str(error) and error.reason == "quota"
    assert error.retry_after is not None and 590 < error.retry_after <= 600
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.user_id, copy.limit, copy.value, copy.frees_at) == (
        "u-7",
        "max_per_hour",
        100,
        later,
    )
    assert str(copy) == str(error)

    too_many = QuotaExceeded("u-7", "max_queued", 10, used=0, asked=50)
    assert "asks for 50, more than the limit allows at once" in str(too_many)


def test_enqueue_and_enqueue_many_are_refused_whole_past_a_users_quota(engine: Engine) -> None:
    # Given u1 may hold two queued jobs, and holds one
    engine.store.set_limits("u1", {"max_queued": 2})
    enqueue(ECHO.kind, user_id="u1", payload={"value": 1}, runtime=engine.rt)

    # When a batch asks for two more of u1's, with one of u2's
    with pytest.raises(QuotaExceeded) as refused:
        enqueue_many(
            ECHO.kind,
            [("u2", {"value": 1}), ("u1", {"value": 2}), ("u1", {"value": 3})],
            runtime=engine.rt,
        )

    # Then nothing of the batch is stored; one more of u1's alone still fits
    assert (refused.value.user_id, refused.value.used, refused.value.asked) == ("u1", 1, 2)
    assert [j.user_id for j in engine.store.jobs.values()] == ["u1"]
    enqueue(ECHO.kind, user_id="u1", payload={"value": 4}, runtime=engine.rt)
    with pytest.raises(QuotaExceeded):
        enqueue(ECHO.kind, user_id="u1", payload={"value": 5}, runtime=engine.rt)
    assert len(engine.store.jobs) == 2
