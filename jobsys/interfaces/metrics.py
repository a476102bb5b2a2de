"""Prometheus metrics: the job metrics, the fleet's gauges read from PostgreSQL, exposition.

A worker node runs its jobs in prefork children, so its metrics are kept in
prometheus-client's multiprocess mode: every process writes its values to
files in ``PROMETHEUS_MULTIPROC_DIR`` and the node's main process adds them up
at scrape time. :mod:`jobsys.interfaces.obs` sets it (a folder per node, emptied
at the node's start) before any metric has a value; this module is imported
only after that, in worker nodes (its one unlabelled counter has a value at once).

Names are fixed (README "Metrics"); no metric has a per-user label.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

import structlog
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from jobsys.engine.hooks import Attempt, Hook, Outcome, Recorded
from jobsys.store import Store

if TYPE_CHECKING:
    from jobsys.engine.runtime import Runtime

log = structlog.get_logger("jobsys.metrics")

# How long one reading of the fleet's gauges serves scrapes (several Prometheus
# servers, or a node and the API, scraping at once cost one query).
GAUGE_CACHE_SECONDS = 5.0
_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 180, 600)
_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
RECORDED = (
    Outcome.SUCCEEDED,
    Outcome.RETRIED,
    Outcome.POSTPONED,
    Outcome.DEAD,
    Outcome.CANCELLED,
)

JOBS = Counter("jobsys_jobs", "Attempts recorded, by kind and outcome", ["kind", "outcome"])
DURATION = Histogram(
    "jobsys_job_duration_seconds",
    "Time a handler ran, per attempt, by kind",
    ["kind"],
    buckets=_DURATION_BUCKETS,
)
START_LATENCY = Histogram(
    "jobsys_job_start_latency_seconds",
    "From when an attempt was due (run_after) to its start (the claim)",
    ["kind", "queue"],
    buckets=_LATENCY_BUCKETS,
)
LEASE_EXPIRED = Counter(
    "jobsys_lease_expired", "Running jobs whose lease expired and the sweeper settled"
)


class JobMetrics(Hook):
    """Counts every recorded attempt and times handlers and starts (an engine hook)."""

    def after_claim(self, attempt: Attempt) -> None:
        job = attempt.job
        if job.started_at is not None:
            waited = (job.started_at - job.run_after).total_seconds()
            START_LATENCY.labels(job.kind, job.queue).observe(max(0.0, waited))

    def around_handler(self, attempt: Attempt, call: Callable[[], Any]) -> Any:
        began = time.perf_counter()
        try:
            return call()
        finally:
            DURATION.labels(attempt.job.kind).observe(time.perf_counter() - began)

    def after_record(self, recorded: Recorded) -> None:
        if recorded.outcome in RECORDED:
            JOBS.labels(recorded.job.kind, recorded.outcome.value).inc()
        # The sweeper settles only running jobs whose lease expired (sweeper.py).
        if recorded.actor == "sweeper":
            LEASE_EXPIRED.inc()


class FleetGauges(Collector):
    """Queue depths, oldest due job, dead letters and workers, read from PostgreSQL.

    A custom collector for the scraping process: one query (``FLEET_GAUGES``) at
    most every ``ttl`` seconds. Every node reports the same fleet-wide figures:
    aggregate them with ``max``, not ``sum``.
    """

    def __init__(self, rt: Runtime, ttl: float = GAUGE_CACHE_SECONDS) -> None:
        self.rt, self.ttl = rt, ttl
        self._lock = threading.Lock()
        self._read_at = -float("inf")
        self._rows: list[tuple[str, str, str, float]] = []

    def collect(self) -> Iterator[Metric]:
        rows = self._cached()
        families = {
            "depth": GaugeMetricFamily(
                "jobsys_queue_depth", "Jobs queued or running, by queue and state",
                labels=["queue", "state"],
            ),
            "oldest": GaugeMetricFamily(
                "jobsys_oldest_queued_seconds", "Age of the oldest due queued job, by queue",
                labels=["queue"],
            ),
            "dead_letters": GaugeMetricFamily(
                "jobsys_dead_letters", "Dead letters not retried, by kind", labels=["kind"]
            ),
            "workers": GaugeMetricFamily(
                "jobsys_workers", "Worker nodes, by state", labels=["state"]
            ),
        }  # fmt: skip
        for metric, a, b, value in rows:
            family = families.get(metric)
            if family is not None:
                family.add_metric([a, b] if metric == "depth" else [a], value)
        yield from families.values()

    def _cached(self) -> list[tuple[str, str, str, float]]:
        with self._lock:
            if time.monotonic() - self._read_at >= self.ttl:
                self._rows = self._read()
                self._read_at = time.monotonic()
            return self._rows

    def _read(self) -> list[tuple[str, str, str, float]]:
        store = self.rt.store
        if not isinstance(store, Store):  # an in-memory store has no fleet to report
            return []
        try:
            return store.fleet_gauges()
        except Exception as e:  # a scrape must answer while PostgreSQL is away
            log.warning("metrics.gauges_unavailable", error=str(e))
            return []


class _Process(Collector):
    """This process's own registry (the API's, without multiprocess mode) as a collector."""

    def collect(self) -> Iterable[Metric]:
        return REGISTRY.collect()


def registry(rt: Runtime) -> CollectorRegistry:
    """What a scrape of this process serves: the job and guard metrics of every
    process of the node (multiprocess mode) or of this one, and the fleet's gauges."""
    found = CollectorRegistry(auto_describe=False)
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        MultiProcessCollector(found, path=directory)  # type: ignore[no-untyped-call]
    else:
        found.register(_Process())
    found.register(FleetGauges(rt))
    return found


def render(found: CollectorRegistry) -> bytes:
    """The text exposition format of ``found``."""
    return generate_latest(found)
