"""Polling with deadlines: tests wait for a condition, never for a fixed time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(probe: Callable[[], T], *, timeout: float, what: str, interval: float = 0.1) -> T:
    """Call ``probe`` until it returns something truthy; return that.

    Raises:
        AssertionError: ``timeout`` seconds passed first (the last value is shown).
    """
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {value!r})")
        time.sleep(interval)
