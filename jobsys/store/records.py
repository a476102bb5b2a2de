"""Immutable value objects that leave the store; ORM rows never do."""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from jobsys.store.status import Status


@dataclasses.dataclass(frozen=True, kw_only=True)
class NewJob:
    """A job about to be inserted."""

    id: uuid.UUID
    user_id: str
    kind: str
    queue: str
    payload: dict[str, Any]
    max_attempts: int
    priority: int = 0
    unique_key: str | None = None
    delay: float = 0.0
    # The caller chose the id (a Celery task id): it must not be another user's job's.
    chosen_id: bool = False
    # Published by the caller at once (an unkeyed canvas member, admission off); else it
    # waits for admission.
    admitted: bool = True
    # At most ``concurrency`` jobs with this key run or wait in the broker (admission.py).
    concurrency_key: str | None = None
    concurrency: int | None = None
    # One per user and kind waits in the backlog; requests join it (``Store.join``).
    coalesce: bool = False
    # ``payload`` as the JSON text enqueue already checked: the insert sends it as is.
    payload_json: str | None = dataclasses.field(default=None, compare=False, repr=False)
    # With tracing on: the enqueue's span context (``{"parent": traceparent}``).
    trace: dict[str, str] | None = None
    # A keyed canvas member's Celery options (its place in its chord), kept in the row
    # while it waits for admission; JSON, as ``jsonb`` holds it.
    canvas: dict[str, Any] | None = None

    def payload_text(self) -> str:
        return self.payload_json if self.payload_json is not None else json.dumps(self.payload)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Job:
    """A job as stored."""

    id: uuid.UUID
    user_id: str
    kind: str
    queue: str
    priority: int
    payload: dict[str, Any]
    status: Status
    attempt: int
    max_attempts: int
    unique_key: str | None
    run_after: datetime
    lease_until: datetime | None
    worker: str | None
    worker_pid: int | None
    cancel_requested: bool
    result: Any
    errors: list[dict[str, Any]]
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    # Times the job was postponed, and when first (reset when revived).
    postponements: int = 0
    postponed_since: datetime | None = None
    # With tracing on: the enqueue's and the last attempt's span contexts (``parent``,
    # ``last``: W3C traceparents); None when the job was enqueued without tracing.
    trace: dict[str, str] | None = None

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> Job:
        values = {f.name: row[f.name] for f in dataclasses.fields(cls)}
        values["status"] = Status(values["status"])
        return cls(**values)

    def evolve(self, **changes: Any) -> Job:
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = _jsonable(dataclasses.asdict(self))
        return data


@dataclasses.dataclass(frozen=True, kw_only=True)
class Cost:
    """What one attempt spent: its handler's CPU and wall seconds, and Google's calls."""

    cpu_s: float | None = None
    wall_s: float | None = None
    google_requests: int | None = None
    quota_units: int | None = None

    def params(self) -> dict[str, Any]:
        """The cost columns' parameters of the statements that record an outcome."""
        # Spelt out: dataclasses.asdict deep-copies, on every attempt's record.
        return {
            "cpu_s": self.cpu_s,
            "wall_s": self.wall_s,
            "google_requests": self.google_requests,
            "quota_units": self.quota_units,
        }


# Settled where nothing was measured (the sweeper, a worker's main process): NULLs.
UNMEASURED = Cost()


@dataclasses.dataclass(frozen=True, kw_only=True)
class DeadLetter:
    """A dead job's whole context."""

    id: int
    job_id: uuid.UUID
    user_id: str
    kind: str
    queue: str
    payload: dict[str, Any]
    exc_type: str
    message: str
    traceback: str
    reason: str
    retryable: bool
    attempts: list[dict[str, Any]]
    worker: str | None
    first_attempt_at: datetime | None
    created_at: datetime
    retried_at: datetime | None

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> DeadLetter:
        return cls(**{f.name: row[f.name] for f in dataclasses.fields(cls)})

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = _jsonable(dataclasses.asdict(self))
        return data


@dataclasses.dataclass(frozen=True, kw_only=True)
class WorkerRow:
    """A worker node as registered."""

    name: str
    hostname: str
    pid: int
    queues: list[str]
    concurrency: int
    status: str
    started_at: datetime
    heartbeat_at: datetime

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> WorkerRow:
        return cls(**{f.name: row[f.name] for f in dataclasses.fields(cls)})

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = _jsonable(dataclasses.asdict(self))
        return data


def unknown_kind_entry(worker: str) -> dict[str, Any]:
    """A job's error entry for one delivery to a worker that does not know its kind."""
    return {
        "attempt": 0,
        "type": "UnknownKind",
        "message": f"worker {worker} does not know this job's kind",
        "reason": "unknown_kind",
        "worker": worker,
        "started_at": None,
        "failed_at": None,
    }


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


class JoinRace(Exception):
    """A coalescing job's insert met another request's job, inserted meanwhile: join it."""
