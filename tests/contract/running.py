"""The store contract: running jobs, unknown kinds, cancellation, recovery, the moves table."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta

import pytest

from jobsys.store import Job, JobStore, Status
from jobsys.store.status import MOVES
from tests.contract.base import (
    LEASE,
    PID,
    WORKER,
    ContractBase,
    bury,
    claim,
    dead,
    error_entry,
    new_job,
    running,
)


class RunningContract(ContractBase):
    """heartbeat, running_on, note_unknown_kind, request_cancel, expired, stale_queued,
    sweep_lock, and every move of ``status.MOVES``."""

    # -- heartbeats and the running job -----------------------------------------

    def test_heartbeat_extends_the_lease(self, store: JobStore) -> None:
        # Given a running job whose lease has already run out
        job = running(store, lease=-1.0)
        assert [j.id for j in store.expired([])] == [job.id]

        # When its attempt beats with a 60 s lease
        cancel = store.heartbeat(job, lease=60.0)

        # Then no cancel was requested and the lease is live again
        assert cancel is False
        assert store.expired([]) == []
        found = store.get_job(job.id)
        assert job.started_at is not None and found.lease_until is not None
        assert found.lease_until >= job.started_at + timedelta(seconds=60)

    def test_heartbeat_tells_a_running_attempt_it_was_asked_to_stop(self, store: JobStore) -> None:
        # Given a running job an operator asked to cancel
        job = running(store)
        flagged = store.request_cancel(job.id, actor="op")

        # When its attempt beats
        cancel = store.heartbeat(job, lease=LEASE)

        # Then it learns it must stop, and the job is still running until it does
        assert flagged is not None and flagged.status is Status.RUNNING
        assert flagged.cancel_requested is True
        assert cancel is True
        assert store.get_job(job.id).status is Status.RUNNING

    def test_running_on_finds_the_job_in_its_worker_process(self, store: JobStore) -> None:
        # Given a job running on node-1 in process 4242
        job = running(store)

        # Then it is found there (any process when pid is None), and nowhere else
        assert store.running_on(job.id, WORKER, PID) == job
        assert store.running_on(job.id, WORKER, None) == job
        assert store.running_on(job.id, WORKER, PID + 1) is None
        assert store.running_on(job.id, "node-2", None) is None
        assert store.running_on(uuid.uuid4(), WORKER, None) is None
        # And no longer once its attempt is recorded
        assert store.succeed(job, None)
        assert store.running_on(job.id, WORKER, PID) is None

    # -- unknown kinds ----------------------------------------------------------

    def test_note_unknown_kind_counts_deliveries_then_buries_at_the_limit(
        self, store: JobStore
    ) -> None:
        # Given a queued job whose kind no worker knows
        new = new_job()
        store.insert(new)

        # When it is delivered three times (limit 3), to two workers
        noted = [
            store.note_unknown_kind(new.id, worker=w, limit=3)
            for w in ("node-1", "node-2", "node-2")
        ]

        # Then the first two are counted and the third buries it
        assert [n[0] for n in noted if n is not None] == [1, 2, 3]
        assert noted[0] is not None and noted[0][1] is None
        assert noted[1] is not None and noted[1][1] is None
        letter_id = noted[2][1] if noted[2] is not None else None
        assert letter_id is not None
        job = store.get_job(new.id)
        assert (job.status, job.attempt) == (Status.DEAD, 0)
        assert [(e["reason"], e["worker"]) for e in job.errors] == [
            ("unknown_kind", "node-1"),
            ("unknown_kind", "node-2"),
            ("unknown_kind", "node-2"),
        ]
        # And the letter names the last worker, not retryable, with every delivery
        letter = store.get_dead_letter(letter_id)
        assert (letter.reason, letter.worker, letter.retryable) == ("unknown_kind", "node-2", False)
        assert (letter.exc_type, letter.attempts) == ("UnknownKind", job.errors)
        assert "node-2" in letter.message
        assert letter.first_attempt_at is None
        assert self.audit_log(store)[-1] == {
            "actor": "node-2",
            "action": "job.dead",
            "job_id": new.id,
            "user_id": "u1",
            "detail": {"dead_letter": letter_id, "reason": "unknown_kind"},
        }

    def test_note_unknown_kind_counts_only_unknown_kind_deliveries(self, store: JobStore) -> None:
        # Given a job whose first attempt failed for another reason and was requeued
        job = running(store)
        store.requeue(job, delay=0.0, error=error_entry(job, reason="bug"))

        # When a worker that lacks its kind receives it (limit 2)
        noted = store.note_unknown_kind(job.id, worker="node-3", limit=2)

        # Then that is its first unknown-kind delivery, and it stays queued
        assert noted == (1, None)
        assert store.get_job(job.id).status is Status.QUEUED

    def test_note_unknown_kind_ignores_jobs_that_are_not_queued(self, store: JobStore) -> None:
        # Given a running job
        job = running(store)

        # When an unknown-kind delivery of it, or of an unknown id, is noted
        noted = [
            store.note_unknown_kind(job.id, worker="node-3", limit=1),
            store.note_unknown_kind(uuid.uuid4(), worker="node-3", limit=1),
        ]

        # Then nothing is recorded
        assert noted == [None, None]
        assert store.get_job(job.id) == job

    # -- cancellation -----------------------------------------------------------

    def test_request_cancel_cancels_a_queued_job_at_once(self, store: JobStore) -> None:
        # Given a queued job
        new = new_job()
        store.insert(new)

        # When an operator cancels it
        job = store.request_cancel(new.id, actor="op")

        # Then it is cancelled now, and the audit log says who did it
        assert job is not None and job == store.get_job(new.id)
        assert (job.status, job.cancel_requested) == (Status.CANCELLED, True)
        assert job.finished_at is not None
        assert self.audit_log(store) == [
            {
                "actor": "op",
                "action": "job.cancel",
                "job_id": new.id,
                "user_id": "u1",
                "detail": {"status": "cancelled"},
            }
        ]

    def test_request_cancel_flags_a_running_job(self, store: JobStore) -> None:
        # Given a running job
        job = running(store)

        # When an operator cancels it
        flagged = store.request_cancel(job.id, actor="op")

        # Then it keeps running, flagged, until its attempt stops at a heartbeat
        assert flagged is not None and flagged == store.get_job(job.id)
        assert (flagged.status, flagged.cancel_requested, flagged.attempt) == (
            Status.RUNNING,
            True,
            1,
        )
        assert flagged.finished_at is None
        assert self.audit_log(store)[-1]["detail"] == {"status": "running"}
        assert store.cancel_running(job) is True

    def test_request_cancel_leaves_finished_and_unknown_jobs(self, store: JobStore) -> None:
        # Given a succeeded job
        job = running(store)
        store.succeed(job, None)

        # When it, and an unknown id, are cancelled
        found = [store.request_cancel(i, actor="op") for i in (job.id, uuid.uuid4())]

        # Then nothing changes and nothing is audited
        assert found == [None, None]
        assert store.get_job(job.id).status is Status.SUCCEEDED
        assert self.actions(store) == []

    # -- recovery ---------------------------------------------------------------

    def test_expired_lists_running_jobs_past_their_lease_or_on_dead_workers(
        self, store: JobStore
    ) -> None:
        # Given a job past its lease, one on node-2 (dead) with a live lease, one live on
        # node-1, and a queued job
        store.register_worker("node-2", hostname="h", pid=2, queues=[], concurrency=1)
        assert store.retire_worker("node-2", 2, by="node-2") is True
        lapsed = running(store, lease=-1.0)
        orphan = new_job()
        store.insert(orphan)
        on_dead = claim(store, orphan.id, worker="node-2")
        healthy = running(store)
        store.insert(new_job())
        assert on_dead is not None

        # When the sweeper asks, with node-2 dead, and with no dead worker
        with_dead = store.expired(["node-2"])
        alone = store.expired([])

        # Then both expired attempts are listed, the lapsed lease first, then only it
        assert [j.id for j in with_dead] == [lapsed.id, on_dead.id]
        assert with_dead[0] == lapsed
        assert [j.id for j in alone] == [lapsed.id]
        assert healthy.id not in {j.id for j in with_dead}
        assert [j.id for j in store.expired(["node-2"], limit=1)] == [lapsed.id]

    def test_a_node_alive_again_since_its_name_was_read_keeps_its_jobs(
        self, store: JobStore
    ) -> None:
        # Given node-2 marked dead, and a job it claimed with a live lease
        store.register_worker("node-2", hostname="h", pid=2, queues=[], concurrency=1)
        store.mark_dead_workers(-1.0)
        names = store.dead_worker_names()
        job = new_job()
        store.insert(job)

        # When a new process of node-2 registers and claims it before the sweeper asks
        store.register_worker("node-2", hostname="h", pid=3, queues=[], concurrency=1)
        assert claim(store, job.id, worker="node-2") is not None

        # Then the names read before the registration do not expire its fresh claim
        assert names == ["node-2"]
        assert store.expired(names) == []

    def test_stale_queued_everything_lists_every_queued_job(self, store: JobStore) -> None:
        # Given a due job, one delayed by an hour at priority 5, a running job,
        # and a queued job asked to stop (requeued after its cancel was requested)
        due = new_job(payload={"value": 7})
        later = new_job(delay=3600.0, priority=5)
        store.insert(due)
        store.insert(later)
        running(store)
        flagged = running(store)
        store.request_cancel(flagged.id, actor="op")
        store.requeue(flagged, delay=0.0, error=error_entry(flagged))

        # When the sweeper asks for everything (the broker lost its messages)
        rows = store.stale_queued(everything=True, lost_after=3600.0, queues=None)

        # Then both queued jobs come back, higher priority first, the cancelled one left out
        assert [r["id"] for r in rows] == [later.id, due.id]
        assert rows[1] == {
            "id": due.id,
            "user_id": "u1",
            "kind": "unit.echo",
            "queue": "default",
            "priority": 0,
            "payload": {"value": 7},
            "trace": None,
            "canvas": None,
            "countdown": 0.0,
        }
        # And the delayed one with the countdown until it is due
        assert 3500.0 < rows[0]["countdown"] <= 3600.0

    def test_stale_queued_lists_jobs_unclaimed_for_lost_after(self, store: JobStore) -> None:
        # Given a due job on "default", one on "cpu", and one delayed by an hour
        due = new_job()
        cpu = new_job(queue="cpu")
        later = new_job(delay=3600.0)
        for new in (due, cpu, later):
            store.insert(new)

        # When the sweeper asks for due jobs unclaimed since a second from now, and for
        # those unclaimed for an hour
        lost = store.stale_queued(everything=False, lost_after=-1.0, queues=None)
        recent = store.stale_queued(everything=False, lost_after=3600.0, queues=None)
        on_cpu = store.stale_queued(everything=False, lost_after=-1.0, queues=["cpu"])

        # Then only the due ones count as lost, per queue when asked, none an hour back
        assert {r["id"] for r in lost} == {due.id, cpu.id}
        assert recent == []
        assert [r["id"] for r in on_cpu] == [cpu.id]
        assert {r["countdown"] for r in lost} == {0.0}

    def test_sweep_lock_is_held_by_one_sweeper_at_a_time(self, store: JobStore) -> None:
        # When a sweeper holds the lock and another asks for it
        with store.sweep_lock() as first:
            with store.sweep_lock() as second:
                pass

        # Then only the first has it; once released, the next sweeper gets it
        assert (first, second) == (True, False)
        with store.sweep_lock() as third:
            assert third is True

    # -- the state machine ------------------------------------------------------

    @pytest.mark.parametrize("move", sorted(MOVES))
    def test_every_legal_move_is_a_store_transition(self, store: JobStore, move: str) -> None:
        # Given a job in the move's source status
        drive = MOVE_DRIVERS[move]

        # When the store call that makes the move runs
        before, after = drive(store)

        # Then the job went from the move's source to its destination
        assert before in MOVES[move].src
        assert after is MOVES[move].dst


def _claim_move(store: JobStore) -> tuple[Status, Status]:
    new = new_job()
    store.insert(new)
    return store.get_job(new.id).status, _status(store, claim(store, new.id))


def _on_running(act: Callable[[JobStore, Job], object]) -> Callable[[JobStore], tuple[Status, ...]]:
    def drive(store: JobStore) -> tuple[Status, ...]:
        job = running(store)
        done = act(store, job)
        assert done is not None and done is not False
        return job.status, store.get_job(job.id).status

    return drive


def _bury_queued_move(store: JobStore) -> tuple[Status, Status]:
    new = new_job()
    store.insert(new)
    noted = store.note_unknown_kind(new.id, worker=WORKER, limit=1)
    assert noted is not None and noted[1] is not None
    return Status.QUEUED, store.get_job(new.id).status


def _cancel_queued_move(store: JobStore) -> tuple[Status, Status]:
    new = new_job()
    store.insert(new)
    before = store.get_job(new.id).status
    return before, _status(store, store.request_cancel(new.id, actor="op"))


def _revive_move(store: JobStore) -> tuple[Status, Status]:
    job, letter = dead(store)
    return job.status, _status(store, store.revive(store.get_dead_letter(letter), actor="op"))


def _status(store: JobStore, job: Job | None) -> Status:
    assert job is not None
    assert store.get_job(job.id).status is job.status
    return job.status


MOVE_DRIVERS: dict[str, Callable[[JobStore], tuple[Status, ...]]] = {
    "claim": _claim_move,
    "succeed": _on_running(lambda s, j: s.succeed(j, None)),
    "requeue": _on_running(lambda s, j: s.requeue(j, delay=0.0, error=error_entry(j))),
    "postpone": _on_running(lambda s, j: s.postpone(j, delay=0.0)),
    "bury": _on_running(bury),
    "bury_queued": _bury_queued_move,
    "cancel_running": _on_running(lambda s, j: s.cancel_running(j)),
    "cancel_queued": _cancel_queued_move,
    "revive": _revive_move,
}
