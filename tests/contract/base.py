"""What the store contract's tests share: jobs to insert, error entries, and the base class.

A test class of the contract gets its ``store`` fixture (an empty store) and
:meth:`ContractBase.audit_log` from the subclass that runs it on one store.
"""

from __future__ import annotations

import uuid
from typing import Any

from jobsys.store import Job, JobStore, NewJob

LEASE = 60.0
WORKER = "node-1"
PID = 4242


def new_job(**changes: Any) -> NewJob:
    """A job to insert: user ``u1``, kind ``unit.echo`` on ``default``, three attempts."""
    values: dict[str, Any] = {
        "id": uuid.uuid4(),
        "user_id": "u1",
        "kind": "unit.echo",
        "queue": "default",
        "payload": {"value": 1},
        "max_attempts": 3,
    }
    values.update(changes)
    return NewJob(**values)


def error_entry(job: Job, message: str = "boom", reason: str = "bug") -> dict[str, Any]:
    """An attempt's error entry, shaped as the engine's ``Failure.entry`` makes it."""
    return {
        "attempt": job.attempt,
        "type": "RuntimeError",
        "message": message,
        "reason": reason,
        "worker": job.worker,
        "started_at": job.started_at.isoformat() if job.started_at else None,
        "failed_at": None,
    }


def claim(store: JobStore, job_id: uuid.UUID, *, lease: float = LEASE, **kw: Any) -> Job | None:
    return store.claim(
        job_id,
        kw.pop("user_id", None),
        lease=lease,
        worker=kw.pop("worker", WORKER),
        pid=kw.pop("pid", PID),
    )


def running(store: JobStore, *, lease: float = LEASE, **changes: Any) -> Job:
    """A job inserted and claimed (attempt 1)."""
    new = new_job(**changes)
    store.insert(new)
    job = claim(store, new.id, lease=lease)
    assert job is not None
    return job


def bury(store: JobStore, job: Job, *, reason: str = "bug", actor: str = WORKER) -> int | None:
    return store.bury(
        job,
        error=error_entry(job, "fatal", reason),
        traceback="Traceback (most recent call last): ...",
        reason=reason,
        retryable=False,
        actor=actor,
    )


def dead(store: JobStore, **changes: Any) -> tuple[Job, int]:
    """A job buried on its first attempt, and its dead letter's id."""
    job = running(store, **changes)
    letter = bury(store, job)
    assert letter is not None
    return store.get_job(job.id), letter


class ContractBase:
    """The two things a store's test class gives: a ``store`` fixture and its audit log."""

    def audit_log(self, store: JobStore) -> list[dict[str, Any]]:
        """Every audit event so far, oldest first: actor, action, job_id, user_id, detail."""
        raise NotImplementedError

    def actions(self, store: JobStore) -> list[str]:
        return [e["action"] for e in self.audit_log(store)]
