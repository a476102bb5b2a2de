"""Job and pipeline-run statuses, and the legal job transitions.

:data:`MOVES` is the one definition of how a job's status may change; the
conditional UPDATEs in ``queries.py`` take their ``SET status`` and
``WHERE status`` clauses from it, and the in-memory store checks the same
table, so the state machine cannot differ between them.
"""

from __future__ import annotations

import dataclasses
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
FINAL = (Status.SUCCEEDED, Status.DEAD, Status.CANCELLED)


class RunStatus(enum.StrEnum):
    """Where a pipeline run is."""

    # Some step has not finished yet.
    RUNNING = "running"
    # Every step finished; processing marked it done.
    SUCCEEDED = "succeeded"
    # A step was dead-lettered (or the run was abandoned).
    FAILED = "failed"


@dataclasses.dataclass(frozen=True)
class Move:
    """One legal transition: from any of ``src`` to ``dst``."""

    name: str
    src: tuple[Status, ...]
    dst: Status

    def where(self) -> str:
        """The SQL predicate on the current status."""
        if len(self.src) == 1:
            return f"status = '{self.src[0].value}'"
        return "status IN (" + ", ".join(f"'{s.value}'" for s in self.src) + ")"

    def set(self) -> str:
        """The SQL assignment of the new status."""
        return f"status = '{self.dst.value}'"


def _moves(*moves: Move) -> dict[str, Move]:
    return {m.name: m for m in moves}


MOVES = _moves(
    # a worker wins the job (the transition a duplicate delivery must lose)
    Move("claim", (Status.QUEUED,), Status.RUNNING),
    Move("succeed", (Status.RUNNING,), Status.SUCCEEDED),
    # a failed attempt goes back after its backoff; a postponed one without spending it
    Move("requeue", (Status.RUNNING,), Status.QUEUED),
    Move("postpone", (Status.RUNNING,), Status.QUEUED),
    Move("bury", (Status.RUNNING,), Status.DEAD),
    # a job no worker can run (its kind unknown to every worker that received it)
    Move("bury_queued", (Status.QUEUED,), Status.DEAD),
    Move("cancel_running", (Status.RUNNING,), Status.CANCELLED),
    Move("cancel_queued", (Status.QUEUED,), Status.CANCELLED),
    # retried from the dead-letter queue with a fresh set of attempts
    Move("revive", (Status.DEAD,), Status.QUEUED),
)


def can_move(src: Status, dst: Status) -> bool:
    """Whether ``src -> dst`` is a legal transition (the SQL enforces the same)."""
    return any(src in m.src and m.dst is dst for m in MOVES.values())
