"""What the engine needs of a store: the job state machine, workers and dead letters.

Two implementations pass the same contract suite (``tests/store_contract.py``):
:class:`~jobsys.store.gateway.Store` on PostgreSQL, and
:class:`~jobsys.store.memory.MemoryStore`, in memory, for unit tests of the
engine without servers.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any, Protocol

from jobsys.store.admission import Listener, Promotion
from jobsys.store.quotas import Quota
from jobsys.store.records import Cost, DeadLetter, Job, NewJob, WorkerRow
from jobsys.store.status import Status


class JobStore(Protocol):
    """A store of jobs. Every transition is conditional on the status and attempt it expects."""

    # -- enqueue
    def insert(self, job: NewJob, *, quota: Quota | None = None) -> datetime: ...
    def insert_many(self, jobs: Sequence[NewJob], *, quota: Quota | None = None) -> None: ...
    def join(self, job: NewJob, merge: Callable[[dict[str, Any], dict[str, Any]], Any]) -> Any: ...

    # -- admission (jobs inserted not ``admitted`` wait in the backlog)
    def promote(
        self,
        queue: str,
        slots: int,
        *,
        aging: float = ...,
        recheck: float = ...,
        behind: bool = ...,
    ) -> Promotion: ...
    def key_freed(self, user_id: str, job_id: uuid.UUID) -> None: ...
    def release(self, rows: list[dict[str, Any]]) -> None: ...
    def next_due(self, queue: str) -> datetime | None: ...
    def dispatched(self, job_id: uuid.UUID) -> bool: ...
    def listener(self) -> Listener | None: ...

    # -- users' weights and quotas (``quotas.py``)
    def set_limits(self, user_id: str, changes: Mapping[str, Any]) -> None: ...
    def user_limits(self) -> dict[str, dict[str, Any]]: ...

    # -- one attempt
    def claim(
        self, job_id: uuid.UUID, user_id: str | None, *, lease: float, worker: str, pid: int
    ) -> Job | None: ...
    def job_state(self, job_id: uuid.UUID) -> tuple[Status, datetime] | None: ...
    # ``cost``: what the attempt spent, written with its outcome (``attempts``).
    def succeed(self, job: Job, result: Any, *, cost: Cost = ...) -> bool: ...
    # ``canvas``: the Celery options a job put back in the backlog is published with
    # when promoted (a keyed canvas member's place); None keeps the row's.
    def requeue(
        self,
        job: Job,
        *,
        delay: float,
        error: dict[str, Any],
        backlog: bool = False,
        canvas: Mapping[str, Any] | None = None,
        cost: Cost = ...,
    ) -> datetime | None: ...
    def postpone(
        self,
        job: Job,
        *,
        delay: float,
        backlog: bool = False,
        limit: float | None = ...,
        canvas: Mapping[str, Any] | None = None,
        cost: Cost = ...,
    ) -> datetime | None: ...
    def note_trace(self, job: Job, trace: dict[str, str]) -> None: ...
    def bury(
        self,
        job: Job,
        *,
        error: dict[str, Any],
        traceback: str,
        reason: str,
        retryable: bool,
        actor: str,
        cost: Cost = ...,
    ) -> int | None: ...
    def cancel_running(self, job: Job, *, cost: Cost = ...) -> bool: ...
    def heartbeat(self, job: Job, *, lease: float) -> bool | None: ...
    def running_on(self, job_id: uuid.UUID, worker: str, pid: int | None) -> Job | None: ...
    def note_unknown_kind(
        self, job_id: uuid.UUID, *, worker: str, limit: int
    ) -> tuple[int, int | None] | None: ...

    # -- reading and operator actions
    def get_job(self, job_id: uuid.UUID) -> Job: ...
    def list_jobs(
        self,
        *,
        user_id: str | None = None,
        status: Status | None = None,
        kind: str | None = None,
        limit: int = 100,
    ) -> list[Job]: ...
    def count_by_status(self, job_ids: Sequence[uuid.UUID] | None = None) -> dict[Status, int]: ...
    def request_cancel(self, job_id: uuid.UUID, *, actor: str) -> Job | None: ...

    # -- recovery
    def expired(self, dead_workers: Sequence[str], *, limit: int = 1000) -> list[Job]: ...
    def stale_queued(
        self,
        *,
        everything: bool,
        lost_after: float,
        queues: Sequence[str] | None,
        limit: int = 10_000,
    ) -> list[dict[str, Any]]: ...
    def sweep_lock(self) -> AbstractContextManager[bool]: ...

    # -- workers
    def register_worker(
        self, name: str, *, hostname: str, pid: int, queues: list[str], concurrency: int
    ) -> None: ...
    def heartbeat_worker(self, name: str, pid: int) -> bool: ...
    def stop_worker(self, name: str, pid: int) -> None: ...
    def mark_dead_workers(self, dead_after: float) -> list[str]: ...
    def retire_worker(self, name: str, pid: int, *, by: str) -> bool: ...
    def dead_worker_names(self) -> list[str]: ...
    def list_workers(self) -> list[WorkerRow]: ...

    # -- dead letters and audit
    def get_dead_letter(self, letter_id: int) -> DeadLetter: ...
    def list_dead_letters(
        self, *, kind: str | None = None, user_id: str | None = None, limit: int = 100
    ) -> list[DeadLetter]: ...
    def dead_letter_of(self, job_id: uuid.UUID) -> DeadLetter | None: ...
    def revive(self, letter: DeadLetter, *, actor: str, backlog: bool = False) -> Job | None: ...
    def purge_dead_letters(self, older_than: float, *, actor: str) -> int: ...
    def audit(
        self,
        actor: str,
        action: str,
        *,
        job_id: uuid.UUID | None = None,
        user_id: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None: ...

    def dispose(self, *, close: bool = True) -> None: ...
