"""What one attempt costs, measured around its handler in the process that runs it.

CPU is ``time.thread_time()`` of the thread that runs the handler: in a
prefork child that is the child's one working thread, in a thread pool that
thread alone (a process-wide figure would charge one job with its
neighbours' work). Wall time is ``perf_counter``. Google requests and quota
units are the tally the Google clients count into while the handler runs
(:mod:`jobsys.connectors.google.usage`). The store writes the figures with the
attempt's outcome, in the same statement.
"""

from __future__ import annotations

import time

from jobsys.connectors.google.usage import tallying
from jobsys.store.records import Cost


class Meter:
    """Started when the handler is about to run; :meth:`stop` reads the cost once."""

    def __init__(self) -> None:
        self._cpu = time.thread_time()
        self._wall = time.perf_counter()
        self._tally, self._untally = tallying()
        self._cost: Cost | None = None

    def stop(self) -> Cost:
        """The attempt's cost so far; later calls return the same figures."""
        if self._cost is None:
            self._untally()
            self._cost = Cost(
                cpu_s=time.thread_time() - self._cpu,
                wall_s=time.perf_counter() - self._wall,
                google_requests=self._tally.requests,
                quota_units=self._tally.units,
            )
        return self._cost
