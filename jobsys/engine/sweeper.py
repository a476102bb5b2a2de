"""The sweeper: repairs what crashes and a forgetful broker leave behind.

Each pass, under an advisory lock so one runs at a time:

1. workers whose heartbeats stopped are marked dead;
2. running jobs whose lease expired, or whose worker is dead, fail that
   attempt (it counts) and are retried after backoff or buried;
3. queued jobs whose message the broker lost are published again: all of
   them when the broker's epoch key is gone (Redis flushed or restarted
   without persistence; workers set the key when they start), else only due
   jobs unclaimed for ``lost_after`` seconds whose queue is empty, so a long
   queue is never flooded with copies;
4. every hook's ``on_sweep`` (the pipeline repairs its stalled runs there);
5. every queue's ready buffer is filled from the backlog (``admission.py``);
6. on PostgreSQL, whole hours of attempts that ended an hour ago are rolled up
   for the stats (``jobsys/store/rollup.py``; at most a day's worth per pass).
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any, Protocol

import redis
import structlog

from jobsys.engine.admission import Admitter, queue_size
from jobsys.engine.dispatch import Dispatch, Why, broker_connection
from jobsys.engine.failures import Failure
from jobsys.engine.outcome import settle_failure
from jobsys.engine.runtime import Runtime
from jobsys.store import rollup
from jobsys.store.gateway import Store

EPOCH_KEY = "jobsys:broker-epoch"
log = structlog.get_logger("jobsys.sweeper")


class Epoch(Protocol):
    """A mark on the broker that vanishes with its messages (a flush, a restart)."""

    def set_if_missing(self) -> bool:
        """Set the mark; True when it was missing (the broker lost everything)."""
        ...


class RedisEpoch:
    """The mark as a Redis key beside the broker's lists."""

    def __init__(self, url: str) -> None:
        self.redis = redis.Redis.from_url(url, socket_timeout=10)

    def set_if_missing(self) -> bool:
        return bool(self.redis.set(EPOCH_KEY, datetime.now(UTC).isoformat(), nx=True))


def broker_epoch(rt: Runtime) -> datetime | None:
    """When the broker's epoch began (its key was set after a start, flush or
    restart); None when unknown (no key yet, or the broker unreachable)."""
    try:
        value = RedisEpoch(rt.urls.broker).redis.get(EPOCH_KEY)
    except (redis.RedisError, ValueError):
        return None
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value.decode() if isinstance(value, bytes) else value)
    except ValueError:
        return None


class MemoryEpoch:
    """The mark in this process (for an in-memory broker)."""

    def __init__(self, present: bool = True) -> None:
        self.present = present

    def set_if_missing(self) -> bool:
        missing, self.present = not self.present, True
        return missing


@dataclasses.dataclass(frozen=True)
class SweepReport:
    """What one pass did."""

    ran: bool = True
    dead_workers: tuple[str, ...] = ()
    expired: int = 0
    republished: int = 0
    broker_reset: bool = False
    repaired: int = 0
    rolled_hours: int = 0

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def describe(self) -> str:
        """One sentence for people."""
        if not self.ran:
            return "another sweeper is running; this pass was skipped"
        parts = [
            f"{len(self.dead_workers)} dead worker(s)"
            + (f" ({', '.join(self.dead_workers)})" if self.dead_workers else ""),
            f"{self.expired} expired lease(s) retried or buried",
            f"{self.republished} lost message(s) re-published",
            f"{self.repaired} pipeline run(s) repaired",
        ]
        reset = "; the broker had lost its messages" if self.broker_reset else ""
        return "swept: " + ", ".join(parts) + reset


class Sweeper:
    def __init__(self, rt: Runtime, epoch: Epoch | None = None) -> None:
        self.rt = rt
        self.app = rt.app
        self.store = rt.store
        self.settings = rt.settings
        self.epoch = epoch if epoch is not None else RedisEpoch(rt.urls.broker)

    def run(self) -> SweepReport:
        """One pass; skipped (``ran=False``) while another sweeper holds the lock."""
        self.rt.load_imports()  # the modules whose hooks repair what they own
        with self.store.sweep_lock() as mine:
            if not mine:
                return SweepReport(ran=False)
            dead = self.store.mark_dead_workers(self.settings.worker_dead_after)
            expired = self._expire_leases()
            reset = self._broker_was_reset()
            republished = self._republish_lost(everything=reset)
            repaired = self.rt.hooks.on_sweep(self.rt)
            self._admit()
            rolled = self._roll_up()
        report = SweepReport(True, tuple(dead), expired, republished, reset, repaired, rolled)
        if dead or expired or republished or reset or repaired or rolled:
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
            settle_failure(self.rt, job, lost, actor="sweeper", why=Why.EXPIRED)
        return len(jobs)

    def note_broker(self) -> None:
        """Record that this broker's messages are intact (a worker starting on it).

        Without this, the first sweep on a fresh broker would take its missing
        epoch key for a reset and publish every queued job a second time. Only
        a broker holding messages is taken as intact: an empty one without the
        key may have been flushed while no worker ran, and then the first sweep
        must publish every queued job (there is nothing there to duplicate).
        """
        if any(queue_size(self.rt, name) > 0 for name in self.app.amqp.queues):
            self.epoch.set_if_missing()

    def _broker_was_reset(self) -> bool:
        """True when the epoch key vanished: every message in the broker is gone."""
        created = self.epoch.set_if_missing()
        if created:
            self._declare_queues()
        return created

    def _declare_queues(self) -> None:
        # Bindings live in Redis too; without them a publish is undeliverable.
        with broker_connection(self.app) as conn:
            channel = conn.default_channel
            for queue in self.app.amqp.queues.values():
                queue(channel).declare()

    def _republish_lost(self, *, everything: bool) -> int:
        stale = self.store.stale_queued(
            everything=everything, lost_after=self.settings.lost_after, queues=None
        )
        by_queue: dict[str, list[Dispatch]] = defaultdict(list)
        for row in stale:
            by_queue[row["queue"]].append(Dispatch.of_row(row, Why.SWEEP))
        lost = [
            d
            for queue, found in by_queue.items()
            # Messages are waiting: these jobs are behind them, not lost.
            if everything or queue_size(self.rt, queue) == 0
            for d in found
        ]
        self.rt.dispatcher.send_many(lost)
        return len(lost)

    def _roll_up(self) -> int:
        # The stats' roll-ups live beside the attempts, in PostgreSQL only.
        if not isinstance(self.store, Store):
            return 0
        return rollup.roll_up(self.store) or 0

    def _admit(self) -> None:
        """Fill every queue's ready buffer from the backlog, for the fleet's registered
        concurrency (nodes' promoters do it first; this covers a fleet without them)."""
        # Whatever JOBSYS_ADMISSION says here: a backlog left by processes that
        # enqueue with it on must not be stranded.
        alive = [w for w in self.store.list_workers() if w.status == "alive"]
        admitter = Admitter(self.rt, list(self.app.amqp.queues), sum(w.concurrency for w in alive))
        for queue in admitter.queues:
            admitter.fill(queue, low_water=False)
