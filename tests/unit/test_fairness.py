"""Sharing free slots between users by virtual time and weight (start-time fair queuing)."""

from __future__ import annotations

from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from jobsys.store.fairness import Waiting, allocate, charge


def test_equal_users_alternate_smallest_virtual_time_first() -> None:
    alloc = allocate([Waiting("a", 0.0), Waiting("b", 0.0), Waiting("c", 1.5)], 5)
    assert alloc.order == ["a", "b", "a", "b", "c"]
    assert alloc.vtimes == {"a": 2.0, "b": 2.0, "c": 2.5}


def test_a_user_alone_gets_every_slot() -> None:
    assert allocate([Waiting("heavy", 7.0)], 4).order == ["heavy"] * 4


def test_weights_set_the_ratio_of_slots() -> None:
    alloc = allocate([Waiting("one", 0.0, 1.0), Waiting("three", 0.0, 3.0)], 40)
    assert alloc.counts() == {"one": 10, "three": 30}


def test_a_user_is_charged_only_for_the_jobs_it_got() -> None:
    waiting = [Waiting("a", 1.0, 2.0), Waiting("b", 1.0)]
    assert charge(waiting, {"a": 3}) == {"a": 2.5, "b": 1.0}


@given(
    weights=st.lists(st.integers(min_value=1, max_value=5), min_size=1, max_size=6),
    rounds=st.integers(min_value=1, max_value=30),
)
def test_over_many_rounds_each_user_gets_its_share_within_one_slot(
    weights: list[int], rounds: int
) -> None:
    # Given users with integer weights, served in rounds of one slot per unit of weight
    slots = sum(weights) * rounds
    waiting = [Waiting(f"u{i}", 0.0, float(w)) for i, w in enumerate(weights)]

    # When that many slots are granted
    got = Counter(allocate(waiting, slots).order)

    # Then each user got weight x rounds slots, give or take one
    for i, w in enumerate(weights):
        assert abs(got[f"u{i}"] - w * rounds) <= 1
