"""Parameter types of the ``jobsys`` command line: durations, seconds, finite numbers."""

from __future__ import annotations

import math
import re
from typing import Any

import click

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
# Beyond a century a duration is a typo, and past it dates overflow (year 9999)
# and PostgreSQL intervals overflow long before a float does.
MAX_SECONDS = 100 * 365 * 86400


def parse_duration(text: str, *, unit_required: bool = False) -> float:
    """``"90"``, ``"45s"``, ``"30m"``, ``"12h"``, ``"7d"``, ``"2w"`` -> seconds.

    Parameters:
        text: the duration as typed.
        unit_required: refuse a bare number (where a unit is easy to forget).

    Raises:
        ValueError: the text is not such a duration, or exceeds 100 years.
    """
    match = _DURATION.match(text)
    if match is None or (unit_required and not match.group(2)):
        unit = "a unit" if unit_required else "an optional unit"
        raise ValueError(
            f"duration {text!r} must be a number with {unit} s, m, h, d or w (e.g. 7d, 12h)"
        )
    seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if seconds > MAX_SECONDS:
        raise ValueError(f"duration {text!r} exceeds 100 years")
    return seconds


class Duration(click.ParamType[float]):
    """A duration such as ``7d`` or ``12h`` (see :func:`parse_duration`)."""

    name = "DURATION"

    def __init__(self, *, unit_required: bool = False) -> None:
        self.unit_required = unit_required

    def convert(self, value: Any, param: Any, ctx: Any) -> float:
        if isinstance(value, float):
            return value
        try:
            return parse_duration(str(value), unit_required=self.unit_required)
        except ValueError as e:
            self.fail(str(e), param, ctx)


class Seconds(click.ParamType[float]):
    """A finite, non-negative number of seconds, at most 100 years (``nan``, ``1e12`` refused)."""

    name = "SECONDS"

    def convert(self, value: Any, param: Any, ctx: Any) -> float:
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number of seconds", param, ctx)
        if not math.isfinite(seconds) or seconds < 0:
            self.fail(f"{value!r} is not a finite, non-negative number of seconds", param, ctx)
        if seconds > MAX_SECONDS:
            self.fail(f"{value!r} seconds exceeds 100 years ({MAX_SECONDS} s)", param, ctx)
        return seconds


class FiniteRange(click.FloatRange):
    """click's FloatRange, refusing ``nan`` (which every comparison lets through)."""

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        number = super().convert(value, param, ctx)
        if isinstance(number, float) and math.isnan(number):
            self.fail(f"{value!r} is not a number", param, ctx)
        return number
