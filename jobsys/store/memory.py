"""An in-memory :class:`~jobsys.store.protocol.JobStore`, for unit tests without servers.

It follows the same state machine (``status.MOVES``) and passes the same
contract suite as the PostgreSQL gateway. Time comes from ``clock`` so a test
can move it on; one lock makes every call atomic, as each of the gateway's
transitions is one statement. What goes in is stored as JSON would hold it
(tuples become lists, keys strings; anything else raises ``TypeError``), and
what comes out is a copy, as rows read from PostgreSQL are.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import itertools
import json
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from jobsys.errors import DuplicateJobError, JobNotFoundError, OptionError
from jobsys.store import jsonb
from jobsys.store.jsonb import RESULT
from jobsys.store.memory_admission import MemoryAdmission
from jobsys.store.memory_quotas import MemoryQuotas
from jobsys.store.quotas import Quota
from jobsys.store.records import (
    UNMEASURED,
    Cost,
    DeadLetter,
    Job,
    JoinRace,
    NewJob,
    WorkerRow,
    unknown_kind_entry,
)
from jobsys.store.status import LIVE, MOVES, Status

Clock = Callable[[], datetime]
T = TypeVar("T")


def _now() -> datetime:
    return datetime.now(UTC)


def _later(at: datetime, seconds: float) -> datetime:
    return at + timedelta(seconds=seconds)


class MemoryStore(MemoryQuotas, MemoryAdmission):
    """Jobs, workers, dead letters and audit events in dictionaries."""

    def __init__(self, clock: Clock = _now) -> None:
        self.clock = clock
        self.jobs: dict[uuid.UUID, Job] = {}
        self.workers: dict[str, WorkerRow] = {}
        self.letters: dict[int, DeadLetter] = {}
        self.audit_events: list[dict[str, Any]] = []
        # (job id, attempt, outcome, cost) of each recorded attempt, as ``attempts`` holds.
        self.costs: list[tuple[uuid.UUID, int, str, Cost]] = []
        self._ids = itertools.count(1)
        self._lock = threading.RLock()
        self._sweeping = threading.Lock()
        self._init_admission()
        self._init_quotas()
        self.coalescing: set[uuid.UUID] = set()

    def dispose(self, *, close: bool = True) -> None:
        return None

    # -- enqueue ----------------------------------------------------------------

    def insert(self, job: NewJob, *, quota: Quota | None = None) -> datetime:
        with self._lock:
            found = self.jobs.get(job.id)
            if found is not None and found.user_id != job.user_id:
                raise OptionError("task_id", str(job.id), "is the id of another user's job")
            if found is not None:
                return found.run_after
            holder = self._unique_holder(job)
            if holder is not None:
                raise DuplicateJobError(job.kind, job.user_id, job.unique_key or "", holder)
            if job.coalesce and self._twin(job) is not None:
                raise JoinRace(job.kind)
            if quota is not None:
                self._charge({job.user_id: 1}, quota)
            now = self.clock()
            self.jobs[job.id] = _job(job, now, _later(now, job.delay))
            self._note_key(job)
            self._keep_canvas(job.id, job.canvas)
            if job.coalesce:
                self.coalescing.add(job.id)
            if not job.admitted:
                self._join_backlog(self.jobs[job.id])
            return self.jobs[job.id].run_after

    def insert_many(self, jobs: Sequence[NewJob], *, quota: Quota | None = None) -> None:
        with self._lock:
            if quota is not None:
                self._charge(dict(Counter(j.user_id for j in jobs)), quota)
            now = self.clock()
            for new in jobs:
                if new.id not in self.jobs:
                    self.jobs[new.id] = _job(new, now, now)
                    self._note_key(new)
                    if not new.admitted:
                        self._join_backlog(self.jobs[new.id])

    def join(self, job: NewJob, merge: Callable[[dict[str, Any], dict[str, Any]], Any]) -> Any:
        with self._lock:
            twin = self._twin(job)
            if twin is None:
                return None
            payload = _json(merge(copy.deepcopy(twin.payload), dict(job.payload)))
            self.jobs[twin.id] = dataclasses.replace(twin, payload=payload)
            return twin.id

    def _twin(self, job: NewJob) -> Job | None:
        for other_id in self.coalescing:
            other = self.jobs[other_id]
            same = (other.user_id, other.kind) == (job.user_id, job.kind)
            if same and other.status is Status.QUEUED and other.id in self.backlog:
                return other
        return None

    def _unique_holder(self, job: NewJob) -> uuid.UUID | None:
        if job.unique_key is None:
            return None
        for other in self.jobs.values():
            same = (other.user_id, other.kind, other.unique_key)
            if same == (job.user_id, job.kind, job.unique_key) and other.status in LIVE:
                return other.id
        return None

    # -- one attempt ------------------------------------------------------------

    def claim(
        self, job_id: uuid.UUID, user_id: str | None, *, lease: float, worker: str, pid: int
    ) -> Job | None:
        with self._lock:
            job, now = self.jobs.get(job_id), self.clock()
            if job is None or (user_id is not None and job.user_id != user_id):
                return None
            ok = job.status in MOVES["claim"].src and job.run_after <= now
            if not ok or job.cancel_requested or job.id in self.backlog:
                return None
            claimed = self._put(
                job,
                status=MOVES["claim"].dst,
                attempt=job.attempt + 1,
                started_at=now,
                lease_until=_later(now, lease),
                worker=worker,
                worker_pid=pid,
            )
            return _copy(claimed)

    def job_state(self, job_id: uuid.UUID) -> tuple[Status, datetime] | None:
        with self._lock:
            job = self.jobs.get(job_id)
            return (job.status, job.run_after) if job else None

    def succeed(self, job: Job, result: Any, *, cost: Cost = UNMEASURED) -> bool:
        stored = json.loads(jsonb.dumps(result, what=RESULT))  # what PostgreSQL would refuse
        with self._lock:
            found = self._holding(job, "succeed")
            if found is None:
                return False
            self.costs.append((job.id, job.attempt, "succeeded", cost))
            done = {"result": stored, "finished_at": self.clock(), "lease_until": None}
            self._put(found, status=Status.SUCCEEDED, **done)
            return True

    def requeue(
        self,
        job: Job,
        *,
        delay: float,
        error: dict[str, Any],
        backlog: bool = False,
        canvas: Mapping[str, Any] | None = None,
        cost: Cost = UNMEASURED,
    ) -> datetime | None:
        with self._lock:
            found = self._holding(job, "requeue")
            if found is None or found.cancel_requested:
                return None
            self.costs.append((job.id, job.attempt, "retried", cost))
            back = self._put(found, errors=[*found.errors, _json(error)], **self._back(delay))
            self._keep_canvas(job.id, canvas)
            if backlog:
                self._join_backlog(back)
            return back.run_after

    def note_trace(self, job: Job, trace: dict[str, str]) -> None:
        with self._lock:
            found = self.jobs.get(job.id)
            if found is not None and found.attempt == job.attempt:
                self._put(found, trace=_json(trace))

    def postpone(
        self,
        job: Job,
        *,
        delay: float,
        backlog: bool = False,
        limit: float | None = None,
        canvas: Mapping[str, Any] | None = None,
        cost: Cost = UNMEASURED,
    ) -> datetime | None:
        with self._lock:
            found = self._holding(job, "postpone")
            if found is None or found.cancel_requested:
                return None
            now, since = self.clock(), found.postponed_since
            if limit is not None and since is not None and (now - since).total_seconds() >= limit:
                return None
            counted = {"postponements": found.postponements + 1, "postponed_since": since or now}
            self.costs.append((job.id, job.attempt, "postponed", cost))
            back = self._put(found, attempt=found.attempt - 1, **counted, **self._back(delay))
            self._keep_canvas(job.id, canvas)
            if backlog:
                self._join_backlog(back)
            return back.run_after

    def _back(self, delay: float) -> dict[str, Any]:
        when = _later(self.clock(), delay)
        fields = {"lease_until": None, "worker": None, "worker_pid": None}
        return {"status": Status.QUEUED, "run_after": when, **fields}

    def bury(
        self,
        job: Job,
        *,
        error: dict[str, Any],
        traceback: str,
        reason: str,
        retryable: bool,
        actor: str,
        cost: Cost = UNMEASURED,
    ) -> int | None:
        with self._lock:
            found = self._holding(job, "bury")
            if found is None:
                return None
            self.costs.append((job.id, job.attempt, "dead", cost))
            error = _json(error)
            return self._bury(
                found, [*found.errors, error], error, traceback, reason, retryable, actor
            )

    def _bury(
        self,
        job: Job,
        errors: list[dict[str, Any]],
        error: dict[str, Any],
        traceback: str,
        reason: str,
        retryable: bool,
        actor: str,
    ) -> int:
        now = self.clock()
        dead = self._put(job, status=Status.DEAD, finished_at=now, lease_until=None, errors=errors)
        letter = DeadLetter(
            id=next(self._ids),
            job_id=dead.id,
            user_id=dead.user_id,
            kind=dead.kind,
            queue=dead.queue,
            payload=dead.payload,
            exc_type=error["type"],
            message=error["message"],
            traceback=traceback,
            reason=reason,
            retryable=retryable,
            attempts=errors,
            worker=dead.worker or actor,
            first_attempt_at=_first_start(errors),
            created_at=now,
            retried_at=None,
        )
        self.letters[letter.id] = letter
        self._audit(
            actor, "job.dead", dead.id, dead.user_id, {"dead_letter": letter.id, "reason": reason}
        )
        return letter.id

    def cancel_running(self, job: Job, *, cost: Cost = UNMEASURED) -> bool:
        with self._lock:
            found = self._holding(job, "cancel_running")
            if found is None:
                return False
            self.costs.append((job.id, job.attempt, "cancelled", cost))
            self._put(found, status=Status.CANCELLED, finished_at=self.clock(), lease_until=None)
            return True

    def heartbeat(self, job: Job, *, lease: float) -> bool | None:
        with self._lock:
            found = self._holding(job, "succeed")  # held while running at this attempt
            if found is None:
                return None
            self._put(found, lease_until=_later(self.clock(), lease))
            return found.cancel_requested

    def running_on(self, job_id: uuid.UUID, worker: str, pid: int | None) -> Job | None:
        with self._lock:
            job = self.jobs.get(job_id)
            if job is None or job.status is not Status.RUNNING or job.worker != worker:
                return None
            return _copy(job) if pid is None or job.worker_pid == pid else None

    def note_unknown_kind(
        self, job_id: uuid.UUID, *, worker: str, limit: int
    ) -> tuple[int, int | None] | None:
        with self._lock:
            job = self.jobs.get(job_id)
            if job is None or job.status not in MOVES["bury_queued"].src:
                return None
            error = unknown_kind_entry(worker)
            errors = [*job.errors, error]
            count = sum(1 for e in errors if e.get("reason") == "unknown_kind")
            if count < limit:
                self._put(job, errors=errors)
                return count, None
            return count, self._bury(job, errors, error, "", "unknown_kind", False, worker)

    def _holding(self, job: Job, move: str) -> Job | None:
        found = self.jobs.get(job.id)
        if found is None or found.status not in MOVES[move].src or found.attempt != job.attempt:
            return None
        return found

    def _put(self, job: Job, **changes: Any) -> Job:
        new = job.evolve(**changes)
        self.jobs[job.id] = new
        return new

    # -- reading and operator actions -------------------------------------------

    def get_job(self, job_id: uuid.UUID) -> Job:
        with self._lock:
            job = self.jobs.get(job_id)
        if job is None:
            raise JobNotFoundError("job", job_id)
        return _copy(job)

    def list_jobs(
        self,
        *,
        user_id: str | None = None,
        status: Status | None = None,
        kind: str | None = None,
        limit: int = 100,
    ) -> list[Job]:
        with self._lock:
            found = [
                j
                for j in self.jobs.values()
                if (user_id is None or j.user_id == user_id)
                and (status is None or j.status is status)
                and (kind is None or j.kind == kind)
            ]
        return _copy(sorted(found, key=lambda j: j.created_at, reverse=True)[:limit])

    def count_by_status(self, job_ids: Sequence[uuid.UUID] | None = None) -> dict[Status, int]:
        with self._lock:
            wanted = set(job_ids) if job_ids is not None else None
            counts: dict[Status, int] = {}
            for j in self.jobs.values():
                if wanted is None or j.id in wanted:
                    counts[j.status] = counts.get(j.status, 0) + 1
        return counts

    def request_cancel(self, job_id: uuid.UUID, *, actor: str) -> Job | None:
        with self._lock:
            job = self.jobs.get(job_id)
            if job is None or job.status not in LIVE:
                return None
            if job.status is Status.QUEUED:
                job = self._put(
                    job, status=Status.CANCELLED, finished_at=self.clock(), cancel_requested=True
                )
            else:
                job = self._put(job, cancel_requested=True)
            self._audit(actor, "job.cancel", job_id, job.user_id, {"status": job.status.value})
            return _copy(job)

    # -- recovery ---------------------------------------------------------------

    def expired(self, dead_workers: Sequence[str], *, limit: int = 1000) -> list[Job]:
        with self._lock:
            now = self.clock()
            # As in SQL: a node that registered since the names were read is alive.
            dead = {n for n in dead_workers if self._not_alive(n)}
            found = [
                j
                for j in self.jobs.values()
                if j.status is Status.RUNNING
                and ((j.lease_until is not None and j.lease_until < now) or j.worker in dead)
            ]
        far = datetime.max.replace(tzinfo=UTC)
        return _copy(sorted(found, key=lambda j: j.lease_until or far)[:limit])

    def stale_queued(
        self,
        *,
        everything: bool,
        lost_after: float,
        queues: Sequence[str] | None,
        limit: int = 10_000,
    ) -> list[dict[str, Any]]:
        with self._lock:
            now = self.clock()
            cutoff = _later(now, -lost_after)
            found = [
                j
                for j in self.jobs.values()
                if j.status is Status.QUEUED
                and not j.cancel_requested
                and j.id not in self.backlog
                and (everything or j.run_after < cutoff)
                and (queues is None or j.queue in queues)
            ]
        found.sort(key=lambda j: (-j.priority, j.run_after))
        return _copy([_stale_row(j, now, self.canvases.get(j.id)) for j in found[:limit]])

    @contextlib.contextmanager
    def sweep_lock(self) -> Iterator[bool]:
        mine = self._sweeping.acquire(blocking=False)
        try:
            yield mine
        finally:
            if mine:
                self._sweeping.release()

    # -- workers ----------------------------------------------------------------

    def register_worker(
        self, name: str, *, hostname: str, pid: int, queues: list[str], concurrency: int
    ) -> None:
        with self._lock:
            now = self.clock()
            self.workers[name] = WorkerRow(
                name=name,
                hostname=hostname,
                pid=pid,
                queues=_json(list(queues)),
                concurrency=concurrency,
                status="alive",
                started_at=now,
                heartbeat_at=now,
            )
            self._audit(name, "worker.start", None, None, {"pid": pid, "queues": list(queues)})

    def heartbeat_worker(self, name: str, pid: int) -> bool:
        with self._lock:
            row = self.workers.get(name)
            if row is None or row.pid != pid:
                return False
            self.workers[name] = dataclasses.replace(row, heartbeat_at=self.clock(), status="alive")
            return True

    def stop_worker(self, name: str, pid: int) -> None:
        with self._lock:
            row = self.workers.get(name)
            if row is not None and row.pid == pid:
                self.workers[name] = dataclasses.replace(row, status="stopped")

    def mark_dead_workers(self, dead_after: float) -> list[str]:
        with self._lock:
            cutoff = _later(self.clock(), -dead_after)
            names = [
                w.name
                for w in self.workers.values()
                if w.status == "alive" and w.heartbeat_at < cutoff
            ]
            for name in names:
                self.workers[name] = dataclasses.replace(self.workers[name], status="dead")
                self._audit("sweeper", "worker.dead", None, None, {"worker": name})
        return names

    def retire_worker(self, name: str, pid: int, *, by: str) -> bool:
        with self._lock:
            row = self.workers.get(name)
            if row is None or row.pid != pid or row.status != "alive":
                return False
            self.workers[name] = dataclasses.replace(row, status="dead")
            self._audit(by, "worker.dead", None, None, {"worker": name, "pid": pid})
            return True

    def _not_alive(self, name: str) -> bool:
        row = self.workers.get(name)
        return row is not None and row.status != "alive"

    def dead_worker_names(self) -> list[str]:
        with self._lock:
            return [w.name for w in self.workers.values() if w.status != "alive"]

    def list_workers(self) -> list[WorkerRow]:
        with self._lock:
            return _copy(sorted(self.workers.values(), key=lambda w: w.name))

    # -- dead letters and audit -------------------------------------------------

    def get_dead_letter(self, letter_id: int) -> DeadLetter:
        with self._lock:
            letter = self.letters.get(letter_id)
        if letter is None:
            raise JobNotFoundError("dead letter", letter_id)
        return _copy(letter)

    def list_dead_letters(
        self, *, kind: str | None = None, user_id: str | None = None, limit: int = 100
    ) -> list[DeadLetter]:
        with self._lock:
            found = [
                d
                for d in self.letters.values()
                if (kind is None or d.kind == kind) and (user_id is None or d.user_id == user_id)
            ]
        return _copy(sorted(found, key=lambda d: d.id, reverse=True)[:limit])

    def dead_letter_of(self, job_id: uuid.UUID) -> DeadLetter | None:
        with self._lock:
            found = [d for d in self.letters.values() if d.job_id == job_id]
        return _copy(max(found, key=lambda d: d.id)) if found else None

    def revive(self, letter: DeadLetter, *, actor: str, backlog: bool = False) -> Job | None:
        with self._lock:
            job = self.jobs.get(letter.job_id)
            if job is None or job.status not in MOVES["revive"].src:
                return None
            now = self.clock()
            fresh = {"attempt": 0, "run_after": now, "finished_at": None, "errors": []}
            fresh |= {"postponements": 0, "postponed_since": None}
            clear = {"cancel_requested": False, "worker": None, "worker_pid": None}
            job = self._put(job, status=Status.QUEUED, **fresh, **clear)
            self.canvases.pop(job.id, None)  # published on its own, out of its old chord
            # Into the backlog (admission on); a keyed job always, to wait for its key.
            if backlog or job.id in self.keys:
                self._join_backlog(job)
            else:
                self.backlog.discard(job.id)
            kept = self.letters.get(letter.id)  # purged meanwhile: the job is revived all the same
            if kept is not None:
                self.letters[letter.id] = dataclasses.replace(kept, retried_at=now)
            self._audit(actor, "dlq.retry", job.id, job.user_id, {"letter": letter.id})
            return _copy(job)

    def purge_dead_letters(self, older_than: float, *, actor: str) -> int:
        with self._lock:
            cutoff = _later(self.clock(), -older_than)
            old = [i for i, d in self.letters.items() if d.created_at < cutoff]
            for i in old:
                del self.letters[i]
            self._audit(actor, "dlq.purge", None, None, {"count": len(old)})
        return len(old)

    def audit(
        self,
        actor: str,
        action: str,
        *,
        job_id: uuid.UUID | None = None,
        user_id: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        with self._lock:
            self._audit(actor, action, job_id, user_id, _json(detail or {}))

    def _audit(
        self,
        actor: str,
        action: str,
        job_id: uuid.UUID | None,
        user_id: str | None,
        detail: dict[str, Any],
    ) -> None:
        event = {"actor": actor, "action": action, "job_id": job_id, "user_id": user_id}
        self.audit_events.append({**event, "detail": detail, "at": self.clock()})


def _job(new: NewJob, now: datetime, run_after: datetime) -> Job:
    return Job(
        id=new.id,
        user_id=new.user_id,
        kind=new.kind,
        queue=new.queue,
        priority=new.priority,
        payload=_json(dict(new.payload)),
        status=Status.QUEUED,
        attempt=0,
        max_attempts=new.max_attempts,
        unique_key=new.unique_key,
        run_after=run_after,
        lease_until=None,
        worker=None,
        worker_pid=None,
        cancel_requested=False,
        result=None,
        errors=[],
        created_at=now,
        started_at=None,
        finished_at=None,
        trace=_json(new.trace) if new.trace else None,
    )


def _json(value: T) -> T:
    """The value as PostgreSQL's JSONB gives it back (``TypeError`` if JSON cannot hold it)."""
    result: T = json.loads(json.dumps(value))
    return result


def _copy(value: T) -> T:
    # Rows read from PostgreSQL share nothing with the store; neither do these.
    return copy.deepcopy(value)


def _first_start(errors: list[dict[str, Any]]) -> datetime | None:
    started = errors[0].get("started_at") if errors else None
    return datetime.fromisoformat(started) if started else None


def _stale_row(job: Job, now: datetime, canvas: dict[str, Any] | None) -> dict[str, Any]:
    countdown = max(0.0, (job.run_after - now).total_seconds())
    fields = ("id", "user_id", "kind", "queue", "priority", "payload", "trace")
    return {**{f: getattr(job, f) for f in fields}, "countdown": countdown, "canvas": canvas}
