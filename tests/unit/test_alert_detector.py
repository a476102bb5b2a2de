"""The detector's maths over synthetic series: steady noise never fires, a burst fires
once and resolves once, and nothing fires before the baseline has its samples."""

from __future__ import annotations

import random

import pytest

from jobsys.alerts.detector import Event, Policy, Series, step

ERRORS = Policy(floor=0.1, ratio=2.0)


def run(
    values: list[float | None], policy: Policy = ERRORS, series: Series | None = None
) -> list[tuple[int, Event]]:
    """Evaluate the values in order (one a minute); the (minute, event) pairs that happened."""
    state = series or Series()
    events = []
    for minute, value in enumerate(values):
        done = step(state, value, policy)
        state = done.series
        if done.event is not None:
            events.append((minute, done.event))
    return events


def error_rates(rng: random.Random, minutes: int, *, p: float, volume: int = 40) -> list[float]:
    """Each minute's share of ``volume`` attempts that failed, each failing with chance p."""
    return [sum(rng.random() < p for _ in range(volume)) / volume for _ in range(minutes)]


@pytest.mark.parametrize("seed", range(20))
def test_an_hour_of_steady_noise_fires_nothing(seed: int) -> None:
    # Given an hour of stationary, noisy error rates (5% of 40 attempts a minute)
    rng = random.Random(seed)
    values = error_rates(rng, 60, p=0.05)

    # When the detector evaluates them every minute
    # Then no incident opens
    assert run(list(values)) == []


@pytest.mark.parametrize("seed", range(10))
def test_an_hour_of_noisy_latencies_fires_nothing(seed: int) -> None:
    # Given an hour of log-normal p95 latencies around 2 s
    rng = random.Random(seed)
    values: list[float | None] = [rng.lognormvariate(0.7, 0.25) for _ in range(60)]

    # Then a latency policy (floor 5 s, 3x the baseline) opens nothing
    assert run(values, Policy(floor=5.0, ratio=3.0)) == []


def test_a_burst_fires_exactly_once_and_resolves_once_after_recovery() -> None:
    # Given 30 minutes of noise, a 10-minute error burst, then 20 minutes of recovery
    rng = random.Random(7)
    values: list[float | None] = [
        *error_rates(rng, 30, p=0.05),
        *error_rates(rng, 10, p=0.6),
        *error_rates(rng, 20, p=0.05),
    ]

    # When evaluated every minute
    events = run(values)

    # Then it fired on the burst's second minute and resolved on recovery's third, once each
    assert events == [(31, Event.FIRE), (42, Event.RESOLVE)]


def test_a_single_hot_evaluation_does_not_fire() -> None:
    # Given a warm, quiet baseline, then one hot minute among calm ones
    values: list[float | None] = [0.0] * 20 + [0.9] + [0.0] * 5
    # Then nothing fires: fire_after is 2 evaluations in a row
    assert run(values) == []


def test_nothing_fires_before_min_samples() -> None:
    # Given a series that is hot from its 3rd value on
    values: list[float | None] = [0.0, 0.0] + [0.9] * 20

    # Then warm-up learns the burst as it comes (10 samples) and nothing fires during it
    events = run(values, Policy(floor=0.1, min_samples=10))
    assert [e for e in events if e[0] < 10] == []


def test_fires_as_soon_as_min_samples_are_learned() -> None:
    # Given exactly min_samples quiet values, then a burst
    values: list[float | None] = [0.0] * 10 + [0.9] * 3
    # Then the first two burst values fire on the second (minutes 10 and 11)
    assert run(values, Policy(floor=0.1, min_samples=10)) == [(11, Event.FIRE)]
    # And one value fewer of warm-up makes the first burst value a learned one
    assert run([0.0] * 9 + [0.9] * 2, Policy(floor=0.1, min_samples=10)) == []


def test_the_absolute_floor_keeps_a_quiet_series_from_paging() -> None:
    # Given a series that is always 0, then 0.05 (one failure in 20) for an hour
    values: list[float | None] = [0.0] * 20 + [0.05] * 60
    # Then its zero spread alone would fire, but the floor (0.1) holds
    assert run(values) == []


def test_hysteresis_keeps_a_value_between_thresholds_firing() -> None:
    # Given a fired incident over a quiet baseline (fire above 0.1, resolve at or under 0.05)
    values: list[float | None] = [0.0] * 20 + [0.9, 0.9]
    # When the value drops between the thresholds for a long time, then under them
    values += [0.08] * 30 + [0.0] * 3
    # Then it resolves only on the third value under the lower threshold
    assert run(values) == [(21, Event.FIRE), (54, Event.RESOLVE)]


def test_missing_values_count_as_calm_and_never_fire() -> None:
    values: list[float | None] = [0.0] * 20 + [0.9, 0.9] + [None] * 3 + [None] * 10
    assert run(values) == [(21, Event.FIRE), (24, Event.RESOLVE)]


def test_the_baseline_does_not_learn_while_firing() -> None:
    # Given a fired incident
    state = Series()
    for value in [0.0] * 20 + [0.9, 0.9]:
        state = step(state, value, ERRORS).series
    level, n = state.level, state.n

    # When it stays hot
    for _ in range(50):
        state = step(state, 0.9, ERRORS).series

    # Then the baseline is what it was before the burst
    assert (state.level, state.n, state.firing) == (level, n, True)


def test_policy_refuses_a_resolve_bound_above_the_fire_bound() -> None:
    with pytest.raises(ValueError, match="k_resolve"):
        Policy(floor=0.1, k=3.0, k_resolve=3.0)
