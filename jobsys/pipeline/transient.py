"""Transient Google failures are retried where they happen, not by failing the attempt.

A 503, a timeout or a dropped connection says nothing about the job: the next
try of the same request usually succeeds. So a request that fails this way is
tried again, up to ``tries`` times in all, after a capped exponential backoff
with full jitter; each try goes through the inner guard again, so it is
charged quota and admitted by the breakers like any other call (an outage
opens the provider's breaker, whose refusal postpones the job). Only a request
that fails every try fails the attempt.

The same rule holds for the parts of a batch (see ``ingest.fetch_messages``):
the failed parts are fetched again, not the batch and not the attempt.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable
from typing import TypeVar

import structlog

from jobsys.connectors.google.clients import Guard
from jobsys.connectors.google.errors import GoogleError, TransientError

T = TypeVar("T")
log = structlog.get_logger("jobsys.pipeline")
BACKOFF_BASE = 0.25  # s before the second try, doubling after each failed one
BACKOFF_CAP = 4.0  # s, the longest wait between two tries


def pause(failures: int, rng: random.Random | None = None) -> float:
    """Seconds to wait after the ``failures``-th failed try: full jitter under a capped doubling.

    Raises:
        ValueError: ``failures`` is below 1.
    """
    if failures < 1:
        raise ValueError(f"failures must be at least 1, got {failures}")
    ceiling = min(BACKOFF_CAP, BACKOFF_BASE * 2.0 ** min(failures - 1, 30))
    return (rng or random).uniform(ceiling / 2, ceiling)


class Persistent:
    """A :class:`Guard` that tries a request again while it fails transiently.

    Parameters:
        inner: the guard each try goes through (quota, breakers).
        tries: tries in all before the failure propagates (at least 1).
        sleep: how to wait between tries (tests pass their own).
    """

    def __init__(
        self, inner: Guard, tries: int, *, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        if tries < 1:
            raise ValueError(f"tries must be at least 1, got {tries}")
        self.inner, self.tries, self._sleep = inner, tries, sleep

    def call(
        self,
        method: str,
        count: int,
        fn: Callable[[], T],
        *,
        part_errors: Callable[[T], Iterable[GoogleError]] | None = None,
    ) -> T:
        failures = 0
        while True:
            try:
                return self.inner.call(method, count, fn, part_errors=part_errors)
            except TransientError as e:
                failures += 1
                if failures >= self.tries:
                    raise
                wait = pause(failures)
                log.info(
                    "google.transient_retry", method=method, failures=failures,
                    seconds=round(wait, 3), error=str(e),
                )  # fmt: skip
                self._sleep(wait)
