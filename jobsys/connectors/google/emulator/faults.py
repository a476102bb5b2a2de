"""Injected faults: random 5xx, 429 bursts, added latency and outage windows.

Decisions come from a seeded generator so that a fault schedule is as
repeatable as the data (given the same request order).
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class FaultSettings:
    """The faults in force.

    Attributes:
        error_rate: fraction of API requests answered 503 (0..1).
        throttle_next: how many next API requests are answered 429 regardless of quota.
        latency: seconds added before every API answer.
        outage_seconds: from now, every API request is answered 503 for this long.
    """

    error_rate: float = 0.0
    throttle_next: int = 0
    latency: float = 0.0
    outage_seconds: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.error_rate <= 1.0:
            raise ValueError(f"error_rate must be within 0..1, got {self.error_rate}")
        if self.throttle_next < 0 or self.latency < 0 or self.outage_seconds < 0:
            raise ValueError("throttle_next, latency and outage_seconds must be >= 0")


class Faults:
    """Thread-safe fault state consulted once per API request.

    Parameters:
        seed: seeds the random error decisions.
    """

    def __init__(self, seed: int) -> None:
        self._lock = threading.Lock()
        self._rng = random.Random(f"faults:{seed}")
        self._error_rate = 0.0
        self._throttle_left = 0
        self._latency = 0.0
        self._outage_until = 0.0

    def configure(self, settings: FaultSettings) -> None:
        """Replace the faults in force with ``settings``."""
        with self._lock:
            self._error_rate = settings.error_rate
            self._throttle_left = settings.throttle_next
            self._latency = settings.latency
            self._outage_until = time.monotonic() + settings.outage_seconds

    def clear(self) -> None:
        """Remove every fault."""
        self.configure(FaultSettings())

    @property
    def latency(self) -> float:
        """Seconds to sleep before answering an API request."""
        return self._latency

    def decide(self) -> str | None:
        """Return ``"outage"``, ``"error"``, ``"throttle"`` or None for the next request."""
        with self._lock:
            if time.monotonic() < self._outage_until:
                return "outage"
            if self._throttle_left > 0:
                self._throttle_left -= 1
                return "throttle"
            if self._error_rate and self._rng.random() < self._error_rate:
                return "error"
            return None

    def describe(self) -> dict[str, float]:
        """Return the faults in force, for the stats endpoint."""
        with self._lock:
            return {
                "error_rate": self._error_rate,
                "throttle_next": self._throttle_left,
                "latency": self._latency,
                "outage_remaining": max(0.0, self._outage_until - time.monotonic()),
            }
