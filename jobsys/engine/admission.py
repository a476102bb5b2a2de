"""Admission: the broker holds a ready buffer; the backlog waits in PostgreSQL.

An enqueued job is only a row (plus a wake-up on the admission channel): it
joins the backlog. Each worker node runs a :class:`Promoter` that keeps, per
queue it consumes, about ``ready_seconds`` of work in the broker (at least
``ready_min`` messages, its concurrency by default; at most ``ready_max``).
When the buffer runs low it promotes the next due jobs (``Store.promote``:
urgent jobs first, then a fair share per user by weight) and publishes them.
When users start waiting (a NOTIFY), the users behind the queue's virtual
clock get one job each at once, published at the buffer's front
(:meth:`Admitter.catch_up`): a user who enqueues one job while another user has
thousands waiting, a buffer of them in the broker, starts behind the few
messages the pool processes hold.

A promoter wakes when a job joins the backlog (PostgreSQL NOTIFY), when its
node takes a message from the broker (a slot freed), and at least every
``POLL`` seconds; a node that is gone leaves the work to the others, and the
sweeper fills buffers too. Unkeyed canvas members are published by the job
that starts them (their chord needs them now) and bypass the backlog; a keyed
one waits here for its key, and its row's ``canvas`` (its place in the chord)
sends it on Celery's single-message path when promoted.
"""

from __future__ import annotations

import math
import os
import selectors
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from jobsys.engine.dispatch import Dispatch, Why, broker_connection
from jobsys.engine.registry import keyed
from jobsys.engine.runtime import Runtime
from jobsys.store import Job
from jobsys.store.admission import Listener, Promotion

log = structlog.get_logger("jobsys.admission")
POLL = 0.05  # s between looks at the buffer while a backlog is known
IDLE_POLL = 1.0  # s between looks at the backlog while none is known


class Rate:
    """Messages this node takes per second, smoothed."""

    def __init__(self, half_life: float = 2.0) -> None:
        self.half_life = half_life
        self.value = 0.0
        self.count = 0
        self.since = time.monotonic()
        self._lock = threading.Lock()

    def tick(self) -> None:
        with self._lock:
            self.count += 1

    def read(self) -> float:
        with self._lock:
            now = time.monotonic()
            elapsed = now - self.since
            if elapsed >= 0.05:
                keep = 0.5 ** (elapsed / self.half_life)
                self.value = keep * self.value + (1 - keep) * (self.count / elapsed)
                self.count, self.since = 0, now
            return self.value


class Admitter:
    """Fills the broker's ready buffer of some queues from the backlog."""

    def __init__(self, rt: Runtime, queues: Sequence[str], concurrency: int) -> None:
        self.rt = rt
        self.queues = list(queues)
        self.concurrency = max(1, concurrency)
        self.rate = Rate()
        # A promotion's wall time (promote and publish), smoothed.
        self.promote_s = 0.0
        # Per queue: messages the node may take before the buffer is down to its low water.
        self.headroom: dict[str, int] = {}

    def target(self) -> int:
        """How many messages to keep ready per queue."""
        return self.levels()[0]

    def levels(self) -> tuple[int, int]:
        """The buffer's target and low water (messages left when its refill starts).

        A refill's worth is ``ready_seconds`` of work at the node's rate (at least
        ``ready_min``). The low water is what the node takes during two promotions
        (their smoothed wall time), at least a quarter of a refill's worth; the
        target is the two together, at most ``ready_max``. A pool process holds one
        message at a time: a buffer that runs dry while it is refilled idles the
        pool. Refills that started at a quarter of a no-op flood's buffer found it
        empty in one promotion of nine: a promotion took 10 ms of wall time (2.6 ms
        of its thread's CPU), some 4 jobs' worth.
        """
        s = self.rt.settings
        rate = self.rate.read()
        batch = max(s.ready_min or self.concurrency, math.ceil(rate * s.ready_seconds))
        low = max(batch // 4, math.ceil(rate * 2 * self.promote_s))
        target = min(s.ready_max, batch + low)
        # Under a small ready_max, still half a buffer a refill: a low water at the
        # target would have the node count the broker after every message it takes.
        return target, min(low, target // 2)

    def fill(
        self, queue: str, *, low_water: bool = True, urgent: bool = False, joined: bool = False
    ) -> bool:
        """Promote and publish jobs until ``queue``'s buffer is full.

        With ``low_water`` it does nothing while the buffer is over its low water
        (:meth:`levels`), so each promotion publishes about a refill's worth (a
        promotion's statements and counting cost about as much again as its jobs).
        ``urgent`` work (priority 8 and above joined the backlog) is promoted even
        into a full buffer: its message's priority puts it ahead of the rest.
        When users ``joined`` the backlog and no promotion is due, the users behind
        the queue's virtual clock (those that just started waiting, mostly) get one
        job each at the buffer's front (:meth:`catch_up`); a promotion puts them
        there itself.
        Returns whether due jobs may still wait in the backlog (False once a
        promotion found fewer than asked).
        """
        target, low = self.levels()
        ready = queue_size(self.rt, queue)
        if ready > low and low_water and not urgent:
            if joined:
                ready += self.catch_up(queue, target)
            self.headroom[queue] = ready - low
            return True
        more = True
        while ready < target or urgent:
            started = time.monotonic()
            s = self.rt.settings
            promotion = self.rt.store.promote(
                queue, max(1, target - ready), aging=s.priority_aging, recheck=s.key_recheck
            )
            self._publish(promotion)
            self._timed(time.monotonic() - started)
            ready, urgent = ready + len(promotion.rows), False
            if not promotion.full:
                # Short: the backlog ran dry, or rows were taken by another promoter
                # or locked by an enqueue; only a backlog with nothing due is done.
                more = self._due(queue)
                break
        self.headroom[queue] = max(1, ready - low)
        return more

    def catch_up(self, queue: str, slots: int) -> int:
        """Publish one job for each user behind ``queue``'s virtual clock (at most
        ``slots``) at the front of the buffer; returns how many.

        Start-time fair queuing serves these users before the buffer's last jobs,
        which belong to users ahead of the clock. At the back, a user that has just
        started waiting would wait for the whole buffer; at the front it waits for
        the messages the pool processes already hold. The buffer can then hold
        ``ready_seconds`` of work without light users waiting that long.
        """
        s = self.rt.settings
        promotion = self.rt.store.promote(
            queue, slots, aging=s.priority_aging, recheck=s.key_recheck, behind=True
        )
        self._publish(promotion)
        return len(promotion.rows)

    def next_look(self, queues: set[str]) -> int:
        """Messages the node may take before one of ``queues`` needs a look."""
        if not queues:
            return max(1, self.target() // 4)
        return min(self.headroom.get(q, 1) for q in queues)

    def _timed(self, seconds: float) -> None:
        self.promote_s = seconds if not self.promote_s else 0.8 * self.promote_s + 0.2 * seconds

    def _publish(self, promotion: Promotion) -> None:
        rows = promotion.rows
        try:
            dispatches = [Dispatch.of_row(r, Why.ADMIT) for r in rows]
            self.rt.dispatcher.send_many(dispatches, ahead=promotion.ahead)
        except Exception:
            # Not published: back to the backlog, or they would wait for the sweeper.
            self.rt.store.release(rows)
            raise

    def _due(self, queue: str) -> bool:
        # Soon counts as now: users whose jobs wait for their concurrency keys are
        # looked at again within the recheck time, and should not wait for an idle poll.
        due = self.rt.store.next_due(queue)
        soon = datetime.now(UTC) + timedelta(seconds=self.rt.settings.key_recheck)
        return due is not None and due <= soon


class Promoter(threading.Thread):
    """A worker node's admission loop (a thread of its main process)."""

    def __init__(self, admitter: Admitter) -> None:
        super().__init__(name="jobsys-admission", daemon=True)
        self.admitter = admitter
        self.stopping = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._taken = 0
        self._every = 1

    def received(self) -> None:
        """The node took a message from the broker: wake when its buffers may be low."""
        self.admitter.rate.tick()
        self._taken += 1
        if self._taken >= self._every:
            self._taken = 0
            self.poke()

    def poke(self) -> None:
        try:
            os.write(self._wake_w, b"!")
        except BlockingIOError:  # already awake
            pass

    def stop(self) -> None:
        self.stopping.set()
        self.poke()

    def run(self) -> None:
        listener: Listener | None = None
        waiting = set(self.admitter.queues)  # a node starts by filling its buffers
        last_look = 0.0
        while not self.stopping.is_set():
            try:
                listener = listener or self.admitter.rt.store.listener()
                woke = self._wait(listener, POLL if waiting else IDLE_POLL)
                joined = set(woke)
                # Every queue now and then, however often wake-ups come: a NOTIFY can
                # be missed (a reconnect) and delayed jobs fall due on their own.
                if time.monotonic() - last_look >= (POLL if waiting else IDLE_POLL):
                    last_look = time.monotonic()
                    woke = {q: woke.get(q, False) for q in self.admitter.queues}
                waiting |= set(woke)
                waiting = {
                    q
                    for q in waiting
                    if self.admitter.fill(q, urgent=woke.get(q, False), joined=q in joined)
                }
                self._every = self.admitter.next_look(waiting)
            except Exception as e:  # the database or broker may be away: try again soon
                log.warning("admission.failed", error=str(e))
                if listener is not None:
                    listener.close()
                listener = None
                self.stopping.wait(IDLE_POLL)
        if listener is not None:
            listener.close()

    def _wait(self, listener: Listener | None, timeout: float) -> dict[str, bool]:
        """Sleep until woken or ``timeout``; the queues new backlog joined, and whether
        urgent work is among it."""
        with selectors.DefaultSelector() as sel:
            sel.register(self._wake_r, selectors.EVENT_READ)
            if listener is not None:
                sel.register(listener, selectors.EVENT_READ)
            woke = {key.fileobj for key, _ in sel.select(timeout)}
        if self._wake_r in woke:
            os.read(self._wake_r, 4096)
        named = listener.drain() if listener is not None else {}
        return {q: urgent for q, urgent in named.items() if q in self.admitter.queues}


def hand_over(rt: Runtime, job: Job) -> None:
    """A job's attempt ended (or went back to the backlog): if its kind has a
    concurrency key, the jobs waiting for that key are promoted now, not at the
    next recheck."""
    if not keyed(job.kind):
        return
    try:
        rt.store.key_freed(job.user_id, job.id)
    except Exception as e:  # the waiters are still looked at after the recheck time
        log.warning("admission.hand_over_failed", job_id=str(job.id), error=str(e))


# One command for every priority's list: kombu's count pipelines ten LLENs in a
# MULTI, about three times the client's work of this (0.31 against 0.12 ms measured).
_COUNT = "local n = 0 for _, k in ipairs(KEYS) do n = n + redis.call('LLEN', k) end return n"


def queue_size(rt: Runtime, queue: str) -> int:
    """Messages waiting in ``queue`` (every priority sub-list), as the broker counts them."""
    with broker_connection(rt.app) as conn:
        channel: Any = conn.default_channel
        if conn.transport.driver_type == "redis":
            keys = [channel._q_for_pri(queue, pri) for pri in channel.priority_steps]
            return int(channel.client.eval(_COUNT, len(keys), *keys))
        # The other virtual transports' own count; queue_declare(passive=True) would
        # also raise for a queue with no message.
        return int(channel._size(queue))
