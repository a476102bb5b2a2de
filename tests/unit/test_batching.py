"""The AIMD rule of the adaptive batch size, pure."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobsys.guards.batching import AdaptiveBatch, Observation, next_size

BOUNDS = {"minimum": 10, "maximum": 100, "step": 10, "target": 2.0}


def run(start: int, seen: list[Observation]) -> list[int]:
    sizes = [start]
    for s in seen:
        sizes.append(next_size(sizes[-1], s, **BOUNDS))
    return sizes


def test_clean_fast_batches_grow_additively_up_to_the_maximum() -> None:
    clean = [Observation(size=0, latency=0.1)] * 12
    assert run(10, clean) == [10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 100, 100, 100]


def test_a_throttled_or_failed_part_halves_it_down_to_the_minimum() -> None:
    bad = [Observation(100, 0.1, throttled=1), Observation(50, 0.1, failed=3)]
    assert run(100, bad + bad) == [100, 50, 25, 12, 10]


def test_a_clean_but_slow_batch_holds_the_size() -> None:
    assert run(40, [Observation(40, 2.5), Observation(40, 1.0)]) == [40, 40, 50]


@given(
    st.integers(10, 100),
    st.lists(
        st.builds(
            Observation,
            st.integers(1, 100),
            st.floats(0, 10),
            st.integers(0, 3),
            st.integers(0, 3),
        ),
        max_size=50,
    ),
)
def test_the_size_never_leaves_its_bounds(start: int, seen: list[Observation]) -> None:
    assert all(10 <= size <= 100 for size in run(start, seen))


def test_bad_bounds_are_named() -> None:
    with pytest.raises(ValueError, match="minimum <= maximum, got 50 and 20"):
        AdaptiveBatch(None, "b", minimum=50, maximum=20, step=10, target=1.0)
    with pytest.raises(ValueError, match="step must be >= 1"):
        AdaptiveBatch(None, "b", minimum=10, maximum=20, step=0, target=1.0)
