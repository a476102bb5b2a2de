"""Admission for the in-memory store: the same promotion rules as ``admission.py``."""

from __future__ import annotations

import copy
import json
import threading
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from jobsys.store.admission import AGING, KEY_RECHECK, Promotion, urgent_cap
from jobsys.store.fairness import Waiting, one_each, share
from jobsys.store.queries import URGENT_PRIORITY
from jobsys.store.records import Job, NewJob
from jobsys.store.status import Status

Key = tuple[str, str]  # (queue, user_id)


class MemoryAdmission:
    """The backlog, users' virtual times and weights; mixed into ``MemoryStore``."""

    jobs: dict[uuid.UUID, Job]
    clock: Callable[[], datetime]
    _lock: threading.RLock
    _weight: Callable[[str], float]

    def _init_admission(self) -> None:
        self.backlog: set[uuid.UUID] = set()
        self.vtimes: dict[Key, float] = {}
        self.waiting: set[Key] = set()
        self.vclocks: dict[str, float] = {}
        self.keys: dict[uuid.UUID, tuple[str, int]] = {}  # concurrency key and limit
        # A keyed canvas member's Celery options, as the row's ``canvas`` holds them.
        self.canvases: dict[uuid.UUID, dict[str, Any]] = {}

    def _note_key(self, job: NewJob) -> None:
        if job.concurrency_key is not None:
            self.keys[job.id] = (job.concurrency_key, job.concurrency or 1)

    def _keep_canvas(self, job_id: uuid.UUID, canvas: Mapping[str, Any] | None) -> None:
        """As the gateway: given options replace the row's; None keeps them."""
        if canvas:
            # As jsonb gives them back (TypeError for what JSON cannot hold).
            self.canvases[job_id] = json.loads(json.dumps(dict(canvas)))

    def _join_backlog(self, job: Job) -> None:
        key = (job.queue, job.user_id)
        self.backlog.add(job.id)
        if key not in self.waiting:
            # As in SQL: join at the queue's virtual clock.
            clock = self.vclocks.get(job.queue, 0.0)
            self.vtimes[key] = max(self.vtimes.get(key, 0.0), clock)
            self.waiting.add(key)

    def dispatched(self, job_id: uuid.UUID) -> bool:
        """Whether the job's message was published (False while it waits in the backlog)."""
        with self._lock:
            return job_id in self.jobs and job_id not in self.backlog

    def release(self, rows: list[dict[str, Any]]) -> None:
        with self._lock:
            for row in rows:
                job = self.jobs.get(row["id"])
                if job is not None and job.status is Status.QUEUED:
                    self.backlog.add(job.id)
                    self.waiting.add((job.queue, job.user_id))

    def key_freed(self, user_id: str, job_id: uuid.UUID) -> None:
        """Nothing to do: every promotion here counts each key's holders afresh."""

    def promote(
        self,
        queue: str,
        slots: int,
        *,
        aging: float = AGING,
        recheck: float = KEY_RECHECK,
        behind: bool = False,
    ) -> Promotion:
        if slots <= 0:
            return Promotion([], False)
        with self._lock:
            due = self._due(queue)
            if behind:
                fair, ahead = self._share(queue, _aged_first(due, self.clock(), aging), slots, True)
                return Promotion(self._promoted(queue, fair), len(fair) >= slots, ahead)
            pressing = [j for j in due if j.priority >= URGENT_PRIORITY]
            urgent = pressing[: urgent_cap(slots)]
            rest = _aged_first([j for j in due if j not in urgent], self.clock(), aging)
            fair, ahead = self._share(queue, rest, slots - len(urgent))
            # What the others leave goes to more urgent jobs, as in SQL.
            more = [j for j in pressing[len(urgent) :] if j not in fair]
            urgent += more[: slots - len(urgent) - len(fair)]
            rows = self._promoted(queue, urgent + fair)
        return Promotion(rows, len(rows) >= slots, ahead)

    def _promoted(self, queue: str, promoted: list[Job]) -> list[dict[str, Any]]:
        self.backlog.difference_update(j.id for j in promoted)
        self._settle(queue)
        return [_row(j, self.canvases.get(j.id)) for j in promoted]

    def _due(self, queue: str) -> list[Job]:
        now = self.clock()
        found = [
            j
            for j in (self.jobs[i] for i in self.backlog)
            if j.queue == queue
            and j.status is Status.QUEUED
            and j.run_after <= now
            and not j.cancel_requested
        ]
        return self._with_room(sorted(found, key=lambda j: (-j.priority, j.run_after)))

    def _with_room(self, due: list[Job]) -> list[Job]:
        """The due jobs whose keys have room for them, in order (as ``hold_keys``)."""
        held: dict[str, int] = {}
        for job_id, (key, _) in self.keys.items():
            job = self.jobs.get(job_id)
            live = job is not None and (
                job.status is Status.RUNNING
                or (job.status is Status.QUEUED and job_id not in self.backlog)
            )
            held[key] = held.get(key, 0) + int(live)
        out = []
        for job in due:
            found = self.keys.get(job.id)
            if found is None:
                out.append(job)
            elif held[found[0]] < found[1]:
                held[found[0]] += 1
                out.append(job)
        return out

    def _share(
        self, queue: str, due: list[Job], slots: int, behind: bool = False
    ) -> tuple[list[Job], frozenset[uuid.UUID]]:
        if slots <= 0:
            return [], frozenset()
        users = {j.user_id for j in due}
        clock = self.vclocks.get(queue, 0.0)
        keys = sorted(
            (self.vtimes[(queue, u)], u)
            for u in users
            if (queue, u) in self.waiting and (not behind or self.vtimes[(queue, u)] <= clock)
        )
        waiting = [Waiting(u, v, self._weight(u)) for v, u in keys[:slots]]
        late = {w.user_id for w in waiting if w.vtime <= clock}
        lines = {w.user_id: [j for j in due if j.user_id == w.user_id] for w in waiting}

        def pick(counts: dict[str, int], total: int) -> dict[str, list[Job]]:
            picked: dict[str, list[Job]] = {}
            for user, n in counts.items():
                take = min(n, total - sum(len(p) for p in picked.values()))
                picked[user], lines[user] = lines[user][:take], lines[user][take:]
            return picked

        done = one_each(waiting, pick) if behind else share(waiting, slots, pick)
        for user, vtime in done.vtimes.items():
            self.vtimes[(queue, user)] = vtime
        if done.frontier is not None:
            self.vclocks[queue] = max(self.vclocks.get(queue, 0.0), done.frontier)
        jobs: list[Job] = done.jobs
        return jobs, frozenset(j.id for j in done.firsts(late))

    def _settle(self, queue: str) -> None:
        # A user with nothing left in the backlog stops waiting (as next_due NULL).
        left = {
            (j.queue, j.user_id)
            for j in (self.jobs[i] for i in self.backlog)
            if j.status is Status.QUEUED
        }
        self.waiting = {k for k in self.waiting if k[0] != queue or k in left}

    def listener(self) -> None:
        return None  # no notifications: a promoter polls

    def next_due(self, queue: str) -> datetime | None:
        with self._lock:
            times = [
                j.run_after
                for j in (self.jobs[i] for i in self.backlog)
                if j.queue == queue and j.status is Status.QUEUED
            ]
        return min(times, default=None)


def _aged_first(due: list[Job], now: datetime, aging: float) -> list[Job]:
    """``due`` (in priority order) with each user's oldest job ahead of the user's
    others once it waited longer than ``aging`` (as ``AGED``)."""
    oldest: dict[str, Job] = {}
    for job in due:
        if job.priority >= URGENT_PRIORITY:  # not aged into: already first
            continue
        if job.user_id not in oldest or job.run_after < oldest[job.user_id].run_after:
            oldest[job.user_id] = job
    cutoff = now - timedelta(seconds=aging)
    aged = [j for j in oldest.values() if j.run_after < cutoff]
    ahead = {j.id for j in aged}
    return aged + [j for j in due if j.id not in ahead]


def _row(job: Job, canvas: dict[str, Any] | None) -> dict[str, Any]:
    fields = ("id", "user_id", "kind", "queue", "priority", "payload", "run_after", "trace")
    return {**{f: getattr(job, f) for f in fields}, "canvas": copy.deepcopy(canvas)}
