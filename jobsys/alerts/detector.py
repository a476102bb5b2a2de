"""The detector's maths: a robust baseline per series, and when an incident fires or resolves.

Pure functions over frozen values, so the beat task keeps nothing between runs
(the state is a row per series in PostgreSQL) and the tests drive it with
synthetic series.

Baseline: an EWMA of the values (``level``) and a robust scale, 1.4826 times the
median absolute deviation of the last ``window`` values learned (the factor makes
it the standard deviation for normal noise). A value fires only when it is above
every one of ``level + k * scale``, ``floor`` (an absolute minimum, so a 0 -> 1
blip on a quiet series does not page) and ``level * ratio``; it must do so
``fire_after`` evaluations in a row, and only once ``min_samples`` values were
learned. A firing series resolves after ``resolve_after`` evaluations in a row
at or under the lower threshold ``max(level + k_resolve * scale, floor / 2)``
(hysteresis: a value between the two thresholds keeps the incident open). A
missing value (no traffic in the window) never fires and counts as calm.

The baseline learns only while the series is not firing, and after warm-up only
values under the firing threshold, so a burst does not teach it that bursts are
normal and a level that stays high keeps its incident open.
"""

from __future__ import annotations

import dataclasses
import enum
import statistics

# MAD x 1.4826 estimates the standard deviation of normally distributed noise.
MAD_TO_SIGMA = 1.4826


class Event(enum.StrEnum):
    """What an evaluation did to a series' incident."""

    # The series crossed its firing threshold fire_after times in a row.
    FIRE = "fire"
    # A firing series stayed under its resolving threshold resolve_after times in a row.
    RESOLVE = "resolve"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Policy:
    """How one signal's series fire and resolve.

    Raises:
        ValueError: a bound is out of range (``k_resolve`` must be below ``k``).
    """

    floor: float
    ratio: float = 1.0
    k: float = 6.0
    k_resolve: float = 3.0
    min_samples: int = 10
    fire_after: int = 2
    resolve_after: int = 3
    alpha: float = 0.1
    window: int = 60

    def __post_init__(self) -> None:
        if not 0 <= self.k_resolve < self.k:
            raise ValueError(f"k_resolve must be in [0, k={self.k}), got {self.k_resolve}")
        if not 0 < self.alpha <= 1:
            raise ValueError(f"alpha must be in (0, 1], got {self.alpha}")
        if min(self.min_samples, self.fire_after, self.resolve_after, self.window) < 1:
            raise ValueError("min_samples, fire_after, resolve_after and window must be >= 1")


@dataclasses.dataclass(frozen=True)
class Series:
    """One series' state between evaluations (a row of ``alert_baselines``)."""

    n: int = 0  # values learned
    level: float = 0.0  # EWMA of the values learned
    recent: tuple[float, ...] = ()  # the last ``window`` values learned
    streak: int = 0  # hot evaluations in a row (ok), or calm ones (firing)
    firing: bool = False

    def scale(self) -> float:
        """The robust spread of the recent values (0 until two are known)."""
        if len(self.recent) < 2:
            return 0.0
        middle = statistics.median(self.recent)
        return MAD_TO_SIGMA * statistics.median(abs(x - middle) for x in self.recent)

    def fire_threshold(self, policy: Policy) -> float:
        return max(self.level + policy.k * self.scale(), policy.floor, self.level * policy.ratio)

    def resolve_threshold(self, policy: Policy) -> float:
        return max(self.level + policy.k_resolve * self.scale(), policy.floor / 2)


@dataclasses.dataclass(frozen=True)
class Step:
    """The result of one evaluation of a series."""

    series: Series
    event: Event | None
    value: float | None
    baseline: float  # the level the value was judged against
    threshold: float  # the firing threshold (resolving one while firing)


def step(series: Series, value: float | None, policy: Policy) -> Step:
    """Judge ``value`` against the series' baseline, then learn from it."""
    fire_at, resolve_at = series.fire_threshold(policy), series.resolve_threshold(policy)
    warm = series.n >= policy.min_samples
    hot = warm and value is not None and value > fire_at
    calm = value is None or value <= resolve_at
    event: Event | None = None
    if series.firing:
        streak = series.streak + 1 if calm else 0
        firing = streak < policy.resolve_after
        event = None if firing else Event.RESOLVE
    else:
        streak = series.streak + 1 if hot else 0
        firing = streak >= policy.fire_after
        event = Event.FIRE if firing else None
    if event is not None:
        streak = 0
    learned = _learn(series, value, policy, fire_at) if not series.firing else series
    threshold = resolve_at if series.firing else fire_at
    after = dataclasses.replace(learned, streak=streak, firing=firing)
    return Step(after, event, value, series.level, threshold)


def _learn(series: Series, value: float | None, policy: Policy, fire_at: float) -> Series:
    if value is None or (series.n >= policy.min_samples and value > fire_at):
        return series
    level = value if series.n == 0 else series.level + policy.alpha * (value - series.level)
    recent = (*series.recent, value)[-policy.window :]
    return dataclasses.replace(series, n=series.n + 1, level=level, recent=recent)
