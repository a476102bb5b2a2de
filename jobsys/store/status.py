"""Job status and its legal transitions."""

from __future__ import annotations

import enum


class Status(enum.StrEnum):
    """Where a job is in its life."""

    # Waiting for a worker: new, waiting out a retry backoff, or a delay.
    QUEUED = "queued"
    # Claimed by a worker that holds its lease.
    RUNNING = "running"
    # Finished; its result is recorded.
    SUCCEEDED = "succeeded"
    # Out of attempts (or not retryable); a dead letter holds its context.
    DEAD = "dead"
    # Cancelled by an operator before it finished.
    CANCELLED = "cancelled"


LIVE = (Status.QUEUED, Status.RUNNING)

_TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.QUEUED: frozenset({Status.RUNNING, Status.CANCELLED}),
    Status.RUNNING: frozenset({Status.SUCCEEDED, Status.QUEUED, Status.DEAD, Status.CANCELLED}),
    Status.DEAD: frozenset({Status.QUEUED}),
    Status.SUCCEEDED: frozenset(),
    Status.CANCELLED: frozenset(),
}


def can_move(src: Status, dst: Status) -> bool:
    """Whether ``src -> dst`` is a legal transition (the SQL enforces the same)."""
    return dst in _TRANSITIONS[src]
