"""The sweeper: repairs what crashes and a forgetful broker leave behind.

Each pass, under an advisory lock so one runs at a time:

1. workers whose heartbeats stopped are marked dead;
2. running jobs whose lease expired, or whose worker is dead, fail that
   attempt (it counts) and are retried after backoff or buried;
3. queued jobs whose message the broker lost are published again: all of
   them when the broker's epoch key is gone (Redis flushed or restarted
   without persistence; workers set the key when they start), else only due
   jobs unclaimed for ``lost_after`` seconds whose queue is empty, so a long
   queue is never flooded with copies.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import redis
import structlog
from celery import Celery

from jobsys.config import Settings
from jobsys.engine.failures import Failure
from jobsys.engine.outcome import republish, settle_failure
from jobsys.engine.publish import publish
from jobsys.store import Store

EPOCH_KEY = "jobsys:broker-epoch"
log = structlog.get_logger("jobsys.sweeper")


_REPAIRS: list[Callable[[], int]] = []


def register_repair(repair: Callable[[], int]) -> None:
    """Add a pass to every sweep (e.g. the pipeline's run repair); returns what it fixed."""
    if repair not in _REPAIRS:
        _REPAIRS.append(repair)


@dataclasses.dataclass(frozen=True)
class SweepReport:
    """What one pass did."""

    ran: bool = True
    dead_workers: tuple[str, ...] = ()
    expired: int = 0
    republished: int = 0
    broker_reset: bool = False
    repaired: int = 0

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class Sweeper:
    def __init__(self, app: Celery, store: Store, settings: Settings, broker_url: str) -> None:
        self.app = app
        self.store = store
        self.settings = settings
        self.redis = redis.Redis.from_url(broker_url, socket_timeout=10)

    def run(self) -> SweepReport:
        """One pass; skipped (``ran=False``) while another sweeper holds the lock."""
        with self.store.sweep_lock() as mine:
            if not mine:
                return SweepReport(ran=False)
            dead = self.store.mark_dead_workers(self.settings.worker_dead_after)
            expired = self._expire_leases()
            reset = self._broker_was_reset()
            republished = self._republish_lost(everything=reset)
            repaired = sum(repair() for repair in _REPAIRS)
        report = SweepReport(True, tuple(dead), expired, republished, reset, repaired)
        if dead or expired or republished or reset or repaired:
            log.info("sweep", **report.as_dict())
        return report

    def _expire_leases(self) -> int:
        jobs = self.store.expired(self.store.dead_worker_names())
        for job in jobs:
            lost = Failure(
                "LeaseExpired",
                f"lease expired (worker {job.worker} pid {job.worker_pid} lost or overran)",
                "",
                "worker_lost",
                True,
            )
            settled = settle_failure(self.store, self.settings, job, lost, actor="sweeper")
            if settled.action == "retry":
                republish(self.app, job, settled.delay)
        return len(jobs)

    def note_broker(self) -> None:
        """Record that this broker's messages are intact (a worker starting on it).

        Without this, the first sweep on a fresh broker would take its missing
        epoch key for a reset and publish every queued job a second time. Only
        a broker holding messages is taken as intact: an empty one without the
        key may have been flushed while no worker ran, and then the first sweep
        must publish every queued job (there is nothing there to duplicate).
        """
        if any(self._queue_size(name) > 0 for name in self.app.amqp.queues):
            self.redis.set(EPOCH_KEY, datetime.now(UTC).isoformat(), nx=True)

    def _broker_was_reset(self) -> bool:
        """True when the epoch key vanished: every message in the broker is gone."""
        created = self.redis.set(EPOCH_KEY, datetime.now(UTC).isoformat(), nx=True)
        if created:
            self._declare_queues()
        return bool(created)

    def _declare_queues(self) -> None:
        # Bindings live in Redis too; without them a publish is undeliverable.
        with self.app.connection_for_write() as conn:
            channel = conn.default_channel
            for queue in self.app.amqp.queues.values():
                queue(channel).declare()

    def _republish_lost(self, *, everything: bool) -> int:
        stale = self.store.stale_queued(
            everything=everything, lost_after=self.settings.lost_after, queues=None
        )
        by_queue: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in stale:
            by_queue[row["queue"]].append(row)
        count = 0
        with self.app.producer_or_acquire() as producer:
            for queue, rows in by_queue.items():
                if not everything and self._queue_size(queue) > 0:
                    continue  # messages are waiting: these jobs are behind them, not lost
                for row in rows:
                    publish(
                        self.app,
                        job_id=row["id"],
                        user_id=row["user_id"],
                        kind=row["kind"],
                        queue=queue,
                        priority=row["priority"],
                        countdown=float(row["countdown"]),
                        # A Celery retry re-sends the message's kwargs as the payload.
                        payload=row["payload"],
                        producer=producer,
                    )
                    count += 1
        return count

    def _queue_size(self, queue: str) -> int:
        with self.app.connection_for_write() as conn:
            try:
                channel: Any = conn.default_channel
                return int(channel.queue_declare(queue, passive=True).message_count)
            except Exception:  # a queue the broker no longer knows holds nothing
                return 0
