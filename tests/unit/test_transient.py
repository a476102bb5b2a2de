"""Transient Google failures: the backoff, and the guard that tries a request again."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobsys.connectors.google.errors import AuthError, GoogleError, TransientError
from jobsys.pipeline.guarding import _breaking
from jobsys.pipeline.transient import BACKOFF_CAP, Persistent, pause


class Counting:
    """An inner guard that counts the calls it lets through."""

    def __init__(self) -> None:
        self.calls = 0

    def call(
        self,
        method: str,
        count: int,
        fn: Callable[[], Any],
        *,
        part_errors: Callable[[Any], Iterable[GoogleError]] | None = None,
    ) -> Any:
        self.calls += 1
        return fn()


def failing(times: int, error: GoogleError) -> Callable[[], str]:
    left = [times]

    def fn() -> str:
        if left[0] > 0:
            left[0] -= 1
            raise error
        return "ok"

    return fn


@given(failures=st.integers(min_value=1, max_value=100), seed=st.integers())
def test_pause_is_jittered_under_a_capped_doubling(failures: int, seed: int) -> None:
    ceiling = min(BACKOFF_CAP, 0.25 * 2 ** min(failures - 1, 30))
    assert ceiling / 2 <= pause(failures, random.Random(seed)) <= ceiling


def test_a_request_failing_less_than_its_tries_succeeds_through_the_inner_guard() -> None:
    # Given a request answered 503 four times, and five tries
    inner, waits = Counting(), []
    guard = Persistent(inner, 5, sleep=waits.append)

    # When it is called
    got = guard.call("gmail.users.getProfile", 1, failing(4, TransientError("503")))

    # Then it succeeds on the fifth try, each try through the inner guard, after growing waits
    assert got == "ok"
    assert inner.calls == 5
    assert len(waits) == 4
    assert [w <= c for w, c in zip(waits, (0.25, 0.5, 1.0, 2.0), strict=True)] == [True] * 4


def test_a_request_failing_every_try_raises_its_last_failure() -> None:
    inner, waits = Counting(), []
    guard = Persistent(inner, 3, sleep=waits.append)
    with pytest.raises(TransientError, match="503"):
        guard.call("gmail.users.getProfile", 1, failing(3, TransientError("503")))
    assert (inner.calls, len(waits)) == (3, 2)


def test_other_failures_are_not_tried_again() -> None:
    inner, waits = Counting(), []
    guard = Persistent(inner, 5, sleep=waits.append)
    with pytest.raises(AuthError):
        guard.call("gmail.users.getProfile", 1, failing(1, AuthError("401")))
    assert (inner.calls, waits) == (1, [])


def test_tries_must_be_at_least_one() -> None:
    with pytest.raises(ValueError, match="tries must be at least 1"):
        Persistent(Counting(), 0)


def test_a_breaker_counts_a_batch_only_when_half_its_parts_failed_or_one_lost_auth() -> None:
    few = [TransientError("503")] * 4
    half = [TransientError("503")] * 5
    auth = [AuthError("401")]
    assert _breaking(few, 10) == []
    assert _breaking(half, 10) == half
    assert _breaking(auth, 100) == auth
    single = [TransientError("503")]
    assert _breaking(single, 1) == single
