"""The contract every :class:`~jobsys.store.protocol.JobStore` keeps, run against each store.

As huey's ``StorageTests``: a subclass provides a ``store`` fixture (an empty
store) and :meth:`StoreContract.audit_log`, and inherits every test. The
tests never move a clock, so the same ones run on PostgreSQL: what should be
"expired" is made so with a negative lease, ``lost_after=-1``,
``dead_after=-1`` or ``older_than=-1``.

PostgreSQL's gateway is the reference: where the in-memory store differs,
the in-memory store is wrong.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from jobsys.errors import DuplicateJobError, JobNotFoundError, JobsysError
from jobsys.store import Job, JobStore, NewJob, Status
from jobsys.store.status import MOVES

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


class StoreContract:
    """Tests of the store protocol; subclasses give the ``store`` fixture and the audit log."""

    def audit_log(self, store: JobStore) -> list[dict[str, Any]]:
        """Every audit event so far, oldest first: actor, action, job_id, user_id, detail."""
        raise NotImplementedError

    def actions(self, store: JobStore) -> list[str]:
        return [e["action"] for e in self.audit_log(store)]

    # -- insert -----------------------------------------------------------------

    def test_insert_stores_a_queued_job_and_returns_its_run_after(self, store: JobStore) -> None:
        # Given a new job with a priority and a unique key
        new = new_job(priority=4, unique_key="k1", payload={"value": [1, "two"]})

        # When it is inserted
        run_after = store.insert(new)

        # Then it is stored as given, queued, with no attempt yet, due at once
        job = store.get_job(new.id)
        assert (job.user_id, job.kind, job.queue) == ("u1", "unit.echo", "default")
        assert (job.payload, job.priority, job.unique_key) == ({"value": [1, "two"]}, 4, "k1")
        assert (job.status, job.attempt, job.max_attempts) == (Status.QUEUED, 0, 3)
        assert (job.worker, job.worker_pid, job.lease_until) == (None, None, None)
        assert (job.errors, job.result, job.cancel_requested) == ([], None, False)
        assert (job.started_at, job.finished_at) == (None, None)
        assert job.run_after == run_after == job.created_at

    def test_insert_with_a_delay_holds_the_job_back_that_long(self, store: JobStore) -> None:
        # When a job is inserted with a delay of 30 s
        new = new_job(delay=30.0)
        run_after = store.insert(new)

        # Then it is due 30 s after it was created, and cannot be claimed yet
        job = store.get_job(new.id)
        assert run_after - job.created_at == timedelta(seconds=30)
        assert claim(store, new.id) is None

    def test_insert_is_idempotent_on_the_same_id(self, store: JobStore) -> None:
        # Given an inserted job
        new = new_job()
        first = store.insert(new)

        # When the same id is inserted again with other fields (a re-sent message)
        again = store.insert(new_job(id=new.id, payload={"value": 2}, delay=600.0))

        # Then nothing changed: one job, the first payload, the stored run_after returned
        assert again == first
        assert store.count_by_status([new.id]) == {Status.QUEUED: 1}
        assert store.get_job(new.id).payload == {"value": 1}

    def test_insert_of_a_job_holding_its_own_unique_key_again_is_idempotent(
        self, store: JobStore
    ) -> None:
        # Given a queued job holding a unique key
        new = new_job(unique_key="sync")
        first = store.insert(new)

        # When the same job is inserted again (a re-sent canvas member)
        again = store.insert(new)

        # Then it is not its own duplicate: the stored run_after comes back
        assert again == first
        assert store.count_by_status() == {Status.QUEUED: 1}

    def test_insert_of_an_existing_id_for_another_user_is_refused(self, store: JobStore) -> None:
        # Given a queued job of user u1
        new = new_job()
        store.insert(new)

        # When a job of user u2 is inserted under the same id (a caller's task_id reused)
        with pytest.raises(JobsysError):
            store.insert(new_job(id=new.id, user_id="u2"))

        # Then the id still names one job, u1's
        assert store.count_by_status([new.id]) == {Status.QUEUED: 1}
        assert store.get_job(new.id).user_id == "u1"
        assert [j.user_id for j in store.list_jobs()] == ["u1"]

    def test_a_live_unique_key_refuses_another_job_naming_its_holder(self, store: JobStore) -> None:
        # Given a queued job holding a unique key, and a running one holding another
        queued = new_job(unique_key="sync")
        store.insert(queued)
        holder = running(store, unique_key="busy")

        # When jobs of the same kind and user ask for those keys
        for key, holder_id in (("sync", queued.id), ("busy", holder.id)):
            with pytest.raises(DuplicateJobError) as caught:
                store.insert(new_job(unique_key=key))

            # Then each is refused, naming the live job that holds its key
            assert caught.value.existing_id == holder_id
            assert caught.value.unique_key == key
        assert store.count_by_status() == {Status.QUEUED: 1, Status.RUNNING: 1}

    def test_a_unique_key_is_per_user_and_kind(self, store: JobStore) -> None:
        # Given a live job holding a key
        store.insert(new_job(unique_key="sync"))

        # When another user, and another kind, use the same key
        store.insert(new_job(unique_key="sync", user_id="u2"))
        store.insert(new_job(unique_key="sync", kind="unit.other"))

        # Then both are accepted
        assert store.count_by_status() == {Status.QUEUED: 3}

    def test_a_unique_key_is_accepted_again_once_its_holder_finished(self, store: JobStore) -> None:
        # Given jobs that held a key and finished: succeeded, cancelled, dead
        done = running(store, unique_key="a")
        assert store.succeed(done, None)
        cancelled = new_job(unique_key="b")
        store.insert(cancelled)
        store.request_cancel(cancelled.id, actor="op")
        dead(store, unique_key="c")

        # When new jobs ask for the same keys
        for key in ("a", "b", "c"):
            store.insert(new_job(unique_key=key))

        # Then they are accepted
        assert store.count_by_status() == {
            Status.SUCCEEDED: 1,
            Status.CANCELLED: 1,
            Status.DEAD: 1,
            Status.QUEUED: 3,
        }

    def test_insert_many_stores_every_job_queued_and_due(self, store: JobStore) -> None:
        # When three jobs are inserted at once
        batch = [new_job(user_id=f"u{i}", payload={"value": i}, priority=i) for i in range(3)]
        store.insert_many(batch)

        # Then each is queued as given, at attempt 0, and due now
        jobs = [store.get_job(n.id) for n in batch]
        assert [(j.user_id, j.payload, j.priority) for j in jobs] == [
            (f"u{i}", {"value": i}, i) for i in range(3)
        ]
        assert {(j.status, j.attempt, j.max_attempts) for j in jobs} == {(Status.QUEUED, 0, 3)}
        assert all(claim(store, n.id) is not None for n in batch)

    # -- claim ------------------------------------------------------------------

    def test_claim_moves_a_due_job_to_running(self, store: JobStore) -> None:
        # Given a queued job
        new = new_job()
        store.insert(new)

        # When a worker claims it
        job = store.claim(new.id, None, lease=30.0, worker="node-7", pid=99)

        # Then the job runs its first attempt on that worker, holding a 30 s lease
        assert job is not None
        assert (job.status, job.attempt, job.worker, job.worker_pid) == (
            Status.RUNNING,
            1,
            "node-7",
            99,
        )
        assert job.started_at is not None and job.lease_until is not None
        assert job.lease_until - job.started_at == timedelta(seconds=30)
        assert store.get_job(new.id) == job

    def test_claim_by_user_needs_the_jobs_user(self, store: JobStore) -> None:
        # Given a queued job of user u1
        new = new_job()
        store.insert(new)

        # When a message naming another user claims it, then u1's
        other = claim(store, new.id, user_id="u2")
        mine = claim(store, new.id, user_id="u1")

        # Then only the claim naming u1 wins
        assert other is None
        assert mine is not None and mine.attempt == 1

    def test_a_second_claim_loses(self, store: JobStore) -> None:
        # Given a job claimed once
        job = running(store)

        # When a duplicate delivery claims it again
        again = claim(store, job.id, worker="node-2")

        # Then it loses, and the first claim still holds the job
        assert again is None
        assert store.get_job(job.id) == job

    def test_claim_loses_on_unknown_finished_and_cancel_requested_jobs(
        self, store: JobStore
    ) -> None:
        # Given a succeeded job, and a job asked to stop while running then requeued
        done = running(store)
        assert store.succeed(done, 1)
        flagged = running(store)
        store.request_cancel(flagged.id, actor="op")
        assert store.requeue(flagged, delay=0.0, error=error_entry(flagged)) is not None

        # When each, and an unknown id, are claimed
        claims = [claim(store, i) for i in (done.id, flagged.id, uuid.uuid4())]

        # Then every claim loses and the jobs stay as they were
        assert claims == [None, None, None]
        assert store.get_job(flagged.id).status is Status.QUEUED
        assert store.get_job(done.id).status is Status.SUCCEEDED

    def test_job_state_is_status_and_run_after(self, store: JobStore) -> None:
        # Given a job delayed by a minute
        new = new_job(delay=60.0)
        run_after = store.insert(new)

        # Then its state is queued until then; an unknown id has none
        assert store.job_state(new.id) == (Status.QUEUED, run_after)
        assert store.job_state(uuid.uuid4()) is None

    # -- recording an attempt ---------------------------------------------------

    def test_succeed_records_the_result(self, store: JobStore) -> None:
        # Given a running job
        job = running(store)

        # When its attempt succeeds
        ok = store.succeed(job, {"rows": [1, 2], "note": "done"})

        # Then the result is stored and the lease released
        assert ok is True
        done = store.get_job(job.id)
        assert (done.status, done.result, done.lease_until) == (
            Status.SUCCEEDED,
            {"rows": [1, 2], "note": "done"},
            None,
        )
        assert done.finished_at is not None and done.finished_at >= job.started_at
        # And a second report of the same attempt changes nothing
        assert store.succeed(job, "again") is False
        assert store.get_job(job.id).result == {"rows": [1, 2], "note": "done"}

    def test_results_and_payloads_are_stored_as_json(self, store: JobStore) -> None:
        # Given a job whose payload holds a tuple, running
        job = running(store, payload={"pair": (1, 2)})

        # When it succeeds with a result holding a tuple and an integer key
        store.succeed(job, {"pair": (3, 4), 5: "five"})

        # Then both come back as JSON gives them: lists and string keys
        done = store.get_job(job.id)
        assert done.payload == {"pair": [1, 2]}
        assert done.result == {"pair": [3, 4], "5": "five"}

    def test_a_result_that_is_not_json_is_refused(self, store: JobStore) -> None:
        # Given a running job
        job = running(store)

        # When its attempt reports a result JSON cannot hold
        with pytest.raises(TypeError):
            store.succeed(job, {"at": object()})

        # Then nothing is recorded: the attempt still holds the job
        assert store.get_job(job.id) == job

    def test_what_the_store_returns_is_a_copy(self, store: JobStore) -> None:
        # Given a job whose first attempt failed, and a dead one
        job = running(store, payload={"value": [1]})
        store.requeue(job, delay=0.0, error=error_entry(job))
        _, letter_id = dead(store)
        store.register_worker("node-a", hostname="h", pid=1, queues=["cpu"], concurrency=1)

        # When a caller changes what it was given
        found = store.get_job(job.id)
        found.payload["value"].append(2)
        found.errors.append({"forged": True})
        store.get_dead_letter(letter_id).attempts.clear()
        store.list_workers()[0].queues.append("forged")

        # Then the store is unchanged
        assert store.get_job(job.id).payload == {"value": [1]}
        assert len(store.get_job(job.id).errors) == 1
        assert len(store.get_dead_letter(letter_id).attempts) == 1
        assert store.list_workers()[0].queues == ["cpu"]

    def test_requeue_puts_a_failed_attempt_back_with_its_error(self, store: JobStore) -> None:
        # Given a running job
        job = running(store)

        # When its attempt fails and it is requeued for 120 s
        run_after = store.requeue(job, delay=120.0, error=error_entry(job, "first"))

        # Then it waits, queued, its attempt counted, its error kept, no worker holding it
        assert run_after is not None and job.started_at is not None
        back = store.get_job(job.id)
        assert (back.status, back.attempt, back.run_after) == (Status.QUEUED, 1, run_after)
        assert run_after >= job.started_at + timedelta(seconds=120)
        assert (back.worker, back.worker_pid, back.lease_until) == (None, None, None)
        assert back.errors == [error_entry(job, "first")]
        assert claim(store, job.id) is None  # not due

    def test_requeue_appends_each_attempts_error_in_order(self, store: JobStore) -> None:
        # Given a job whose first attempt failed and was retried at once
        first = running(store)
        store.requeue(first, delay=0.0, error=error_entry(first, "one"))
        second = claim(store, first.id)
        assert second is not None and second.attempt == 2

        # When the second attempt fails too
        store.requeue(second, delay=0.0, error=error_entry(second, "two"))

        # Then both errors are kept, oldest first
        errors = store.get_job(first.id).errors
        assert [(e["attempt"], e["message"]) for e in errors] == [(1, "one"), (2, "two")]

    def test_postpone_hands_the_attempt_back(self, store: JobStore) -> None:
        # Given a running job (attempt 1)
        job = running(store)

        # When a guard postpones it for 45 s
        run_after = store.postpone(job, delay=45.0)

        # Then it is queued at attempt 0 again, with no error recorded
        assert run_after is not None and job.started_at is not None
        back = store.get_job(job.id)
        assert (back.status, back.attempt, back.errors) == (Status.QUEUED, 0, [])
        assert (back.worker, back.worker_pid, back.lease_until) == (None, None, None)
        assert back.run_after == run_after >= job.started_at + timedelta(seconds=45)

    def test_bury_writes_the_dead_letter_and_its_audit_event(self, store: JobStore) -> None:
        # Given a job whose first attempt failed and whose second is running
        first = running(store, payload={"value": 5})
        store.requeue(first, delay=0.0, error=error_entry(first, "one"))
        second = claim(store, first.id, worker="node-9")
        assert second is not None

        # When the second attempt is buried
        letter_id = store.bury(
            second,
            error=error_entry(second, "fatal", "auth"),
            traceback="Traceback: fatal",
            reason="auth",
            retryable=False,
            actor="node-9",
        )

        # Then the job is dead with both errors, and the letter holds its whole context
        assert letter_id is not None
        job = store.get_job(first.id)
        assert (job.status, job.lease_until) == (Status.DEAD, None)
        assert job.finished_at is not None
        history = [error_entry(first, "one"), error_entry(second, "fatal", "auth")]
        assert job.errors == history
        letter = store.get_dead_letter(letter_id)
        assert (letter.id, letter.job_id, letter.user_id, letter.kind, letter.queue) == (
            letter_id,
            first.id,
            "u1",
            "unit.echo",
            "default",
        )
        assert (letter.payload, letter.exc_type, letter.message) == (
            {"value": 5},
            "RuntimeError",
            "fatal",
        )
        assert (letter.traceback, letter.reason, letter.retryable) == (
            "Traceback: fatal",
            "auth",
            False,
        )
        assert (letter.attempts, letter.worker) == (history, "node-9")
        assert letter.first_attempt_at == first.started_at
        assert letter.retried_at is None
        # And one audit event tells of it
        (event,) = self.audit_log(store)
        assert event == {
            "actor": "node-9",
            "action": "job.dead",
            "job_id": first.id,
            "user_id": "u1",
            "detail": {"dead_letter": letter_id, "reason": "auth"},
        }

    def test_cancel_running_stops_the_attempt(self, store: JobStore) -> None:
        # Given a running job
        job = running(store)

        # When its attempt reports that it was cancelled
        ok = store.cancel_running(job)

        # Then the job is cancelled and its lease released
        assert ok is True
        found = store.get_job(job.id)
        assert (found.status, found.lease_until) == (Status.CANCELLED, None)
        assert found.finished_at is not None

    def test_every_outcome_loses_for_a_stale_attempt(self, store: JobStore) -> None:
        # Given a job whose first attempt was requeued and whose second is running
        first = running(store)
        store.requeue(first, delay=0.0, error=error_entry(first))
        second = claim(store, first.id)
        assert second is not None

        # When the first attempt (a late worker) reports any outcome
        outcomes = [
            store.succeed(first, "late"),
            store.requeue(first, delay=0.0, error=error_entry(first, "late")),
            store.postpone(first, delay=0.0),
            bury(store, first),
            store.cancel_running(first),
            store.heartbeat(first, lease=LEASE),
        ]

        # Then each loses and the second attempt still holds the job, untouched
        assert outcomes == [False, None, None, None, False, None]
        assert store.get_job(first.id) == second
        assert store.list_dead_letters() == []
        assert self.actions(store) == []

    def test_every_outcome_loses_once_the_job_is_no_longer_running(self, store: JobStore) -> None:
        # Given a job whose attempt was requeued (queued again, same attempt number)
        job = running(store)
        store.requeue(job, delay=300.0, error=error_entry(job))
        queued = store.get_job(job.id)

        # When that attempt reports an outcome again
        outcomes = [
            store.succeed(job, "late"),
            store.requeue(job, delay=0.0, error=error_entry(job, "late")),
            store.postpone(job, delay=0.0),
            bury(store, job),
            store.cancel_running(job),
            store.heartbeat(job, lease=LEASE),
        ]

        # Then each loses and the job stays queued as it was
        assert outcomes == [False, None, None, None, False, None]
        assert store.get_job(job.id) == queued

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
        # Given a job past its lease, one on node-2 with a live lease, one live on node-1,
        # and a queued job
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

    # -- workers ----------------------------------------------------------------

    def test_register_worker_lists_it_alive(self, store: JobStore) -> None:
        # When two workers register
        store.register_worker("node-b", hostname="h2", pid=2, queues=["cpu"], concurrency=4)
        store.register_worker(
            "node-a", hostname="h1", pid=1, queues=["default", "ingest"], concurrency=2
        )

        # Then both are listed by name, alive, as they registered
        rows = store.list_workers()
        assert [(w.name, w.hostname, w.pid, w.queues, w.concurrency, w.status) for w in rows] == [
            ("node-a", "h1", 1, ["default", "ingest"], 2, "alive"),
            ("node-b", "h2", 2, ["cpu"], 4, "alive"),
        ]
        assert all(w.heartbeat_at >= w.started_at for w in rows)
        assert store.dead_worker_names() == []
        # And each start is audited
        assert [(e["actor"], e["action"], e["detail"]) for e in self.audit_log(store)] == [
            ("node-b", "worker.start", {"pid": 2, "queues": ["cpu"]}),
            ("node-a", "worker.start", {"pid": 1, "queues": ["default", "ingest"]}),
        ]

    def test_heartbeat_worker_needs_the_registered_process(self, store: JobStore) -> None:
        # Given a worker registered from process 10
        store.register_worker("node-a", hostname="h", pid=10, queues=[], concurrency=1)

        # Then its process beats; another process, or an unknown worker, does not
        beats = [
            store.heartbeat_worker("node-a", 10),
            store.heartbeat_worker("node-a", 11),
            store.heartbeat_worker("node-z", 10),
        ]
        assert beats == [True, False, False]

    def test_stop_worker_and_mark_dead_workers(self, store: JobStore) -> None:
        # Given three registered workers, one of which stops (another process's stop is ignored)
        for i, name in enumerate(("node-a", "node-b", "node-c")):
            store.register_worker(name, hostname="h", pid=i, queues=[], concurrency=1)
        store.stop_worker("node-b", 1)
        store.stop_worker("node-c", 99)

        # When the sweeper marks workers silent for an hour, then those silent since a
        # second from now
        none = store.mark_dead_workers(3600.0)
        marked = store.mark_dead_workers(-1.0)

        # Then only the live ones are marked dead, each once, and audited
        assert none == []
        assert sorted(marked) == ["node-a", "node-c"]
        assert store.mark_dead_workers(-1.0) == []
        assert {w.name: w.status for w in store.list_workers()} == {
            "node-a": "dead",
            "node-b": "stopped",
            "node-c": "dead",
        }
        assert sorted(store.dead_worker_names()) == ["node-a", "node-b", "node-c"]
        dead_events = [e for e in self.audit_log(store) if e["action"] == "worker.dead"]
        assert sorted(e["detail"]["worker"] for e in dead_events) == ["node-a", "node-c"]
        assert {e["actor"] for e in dead_events} == {"sweeper"}

    def test_a_dead_worker_that_beats_or_registers_again_is_alive(self, store: JobStore) -> None:
        # Given two workers marked dead
        store.register_worker("node-a", hostname="h", pid=1, queues=[], concurrency=1)
        store.register_worker("node-b", hostname="h", pid=2, queues=[], concurrency=1)
        store.mark_dead_workers(-1.0)

        # When one beats and the other registers again from a new process
        assert store.heartbeat_worker("node-a", 1) is True
        store.register_worker("node-b", hostname="h2", pid=3, queues=["cpu"], concurrency=8)

        # Then both are alive again, the second as it registered now
        rows = {w.name: w for w in store.list_workers()}
        assert {n: w.status for n, w in rows.items()} == {"node-a": "alive", "node-b": "alive"}
        assert (rows["node-b"].hostname, rows["node-b"].pid, rows["node-b"].queues) == (
            "h2",
            3,
            ["cpu"],
        )
        assert store.dead_worker_names() == []

    # -- dead letters -----------------------------------------------------------

    def test_get_dead_letter_of_an_unknown_id_raises(self, store: JobStore) -> None:
        with pytest.raises(JobNotFoundError):
            store.get_dead_letter(123456)

    def test_list_dead_letters_newest_first_with_filters(self, store: JobStore) -> None:
        # Given dead jobs of two users and two kinds
        _, a = dead(store, user_id="u1", kind="unit.echo")
        _, b = dead(store, user_id="u2", kind="unit.echo")
        _, c = dead(store, user_id="u1", kind="unit.other")

        # Then they are listed newest first, filtered by kind, user or both, and limited
        def ids(**filters: Any) -> list[int]:
            return [d.id for d in store.list_dead_letters(**filters)]

        assert ids() == [c, b, a]
        assert ids(kind="unit.echo") == [b, a]
        assert ids(user_id="u1") == [c, a]
        assert ids(user_id="u1", kind="unit.other") == [c]
        assert ids(limit=2) == [c, b]
        assert ids(kind="unit.none") == []

    def test_revive_gives_a_dead_job_a_fresh_set_of_attempts(self, store: JobStore) -> None:
        # Given a job that was asked to stop while running and then buried
        job = running(store)
        store.request_cancel(job.id, actor="op")
        letter_id = bury(store, job)
        assert letter_id is not None
        letter = store.get_dead_letter(letter_id)

        # When an operator retries it from the dead-letter queue
        revived = store.revive(letter, actor="op")

        # Then it is queued at attempt 0, history and cancel request cleared, due now
        assert revived is not None and revived == store.get_job(job.id)
        assert (revived.status, revived.attempt, revived.errors) == (Status.QUEUED, 0, [])
        assert (revived.cancel_requested, revived.worker, revived.worker_pid) == (False, None, None)
        assert revived.finished_at is None
        # And the letter records the retry, and keeps the history
        kept = store.get_dead_letter(letter_id)
        assert kept.retried_at is not None and kept.retried_at >= kept.created_at
        assert kept.attempts == letter.attempts
        assert self.audit_log(store)[-1] == {
            "actor": "op",
            "action": "dlq.retry",
            "job_id": job.id,
            "user_id": "u1",
            "detail": {"letter": letter_id},
        }
        # And it can run again
        again = claim(store, job.id)
        assert again is not None and again.attempt == 1

    def test_revive_of_a_job_that_is_not_dead_returns_none(self, store: JobStore) -> None:
        # Given a dead letter whose job was already revived
        _, letter_id = dead(store)
        letter = store.get_dead_letter(letter_id)
        assert store.revive(letter, actor="op") is not None
        events = len(self.audit_log(store))

        # When it is revived again
        again = store.revive(letter, actor="op")

        # Then nothing happens
        assert again is None
        assert store.get_job(letter.job_id).status is Status.QUEUED
        assert len(self.audit_log(store)) == events

    def test_revive_from_a_letter_already_purged_still_revives_the_job(
        self, store: JobStore
    ) -> None:
        # Given a dead letter read by an operator, then purged by another
        _, letter_id = dead(store)
        letter = store.get_dead_letter(letter_id)
        store.purge_dead_letters(-1.0, actor="op2")

        # When the first operator retries it
        revived = store.revive(letter, actor="op")

        # Then the job is revived all the same
        assert revived is not None and revived.status is Status.QUEUED
        assert self.actions(store)[-1] == "dlq.retry"

    def test_dead_letter_of_is_the_jobs_newest_letter(self, store: JobStore) -> None:
        # Given a job buried, revived and buried again, and a job never buried
        job, first = dead(store)
        store.revive(store.get_dead_letter(first), actor="op")
        again = claim(store, job.id)
        assert again is not None
        second = bury(store, again)
        other = running(store)

        # Then its newest letter is the second; the other job has none
        found = store.dead_letter_of(job.id)
        assert found is not None and found.id == second != first
        assert store.dead_letter_of(other.id) is None

    def test_purge_dead_letters_older_than(self, store: JobStore) -> None:
        # Given two dead letters
        dead(store)
        dead(store)

        # When letters older than an hour are purged, then those older than a second from now
        none = store.purge_dead_letters(3600.0, actor="op")
        purged = store.purge_dead_letters(-1.0, actor="op")

        # Then the first purge removes nothing, the second both; each is audited
        assert (none, purged) == (0, 2)
        assert store.list_dead_letters() == []
        purges = [e for e in self.audit_log(store) if e["action"] == "dlq.purge"]
        assert [(e["actor"], e["detail"]) for e in purges] == [
            ("op", {"count": 0}),
            ("op", {"count": 2}),
        ]

    def test_audit_records_an_event(self, store: JobStore) -> None:
        # When an operator action is audited, with and without details
        job_id = uuid.uuid4()
        store.audit("op", "user.pause", job_id=job_id, user_id="u1", detail={"why": "abuse"})
        store.audit("op", "fleet.drain")

        # Then both are in the log, in order
        assert self.audit_log(store) == [
            {
                "actor": "op",
                "action": "user.pause",
                "job_id": job_id,
                "user_id": "u1",
                "detail": {"why": "abuse"},
            },
            {"actor": "op", "action": "fleet.drain", "job_id": None, "user_id": None, "detail": {}},
        ]

    # -- reading ----------------------------------------------------------------

    def test_get_job_of_an_unknown_id_raises(self, store: JobStore) -> None:
        with pytest.raises(JobNotFoundError):
            store.get_job(uuid.uuid4())

    def test_list_jobs_newest_first_with_filters(self, store: JobStore) -> None:
        # Given jobs of two users and two kinds, one of them running
        a = new_job(user_id="u1")
        b = new_job(user_id="u2")
        c = new_job(user_id="u1", kind="unit.other")
        for new in (a, b, c):
            store.insert(new)
        claim(store, b.id)

        # Then they are listed newest first, filtered by user, status, kind, and limited
        def ids(**filters: Any) -> set[uuid.UUID]:
            return {j.id for j in store.list_jobs(**filters)}

        everything = store.list_jobs()
        assert {j.id for j in everything} == {a.id, b.id, c.id}
        stamps = [j.created_at for j in everything]
        assert stamps == sorted(stamps, reverse=True)
        assert ids(user_id="u1") == {a.id, c.id}
        assert ids(status=Status.RUNNING) == {b.id}
        assert ids(kind="unit.other") == {c.id}
        assert ids(user_id="u1", status=Status.QUEUED, kind="unit.echo") == {a.id}
        assert len(store.list_jobs(limit=2)) == 2

    def test_count_by_status_over_all_or_some_jobs(self, store: JobStore) -> None:
        # Given two queued jobs, a running one and a succeeded one
        queued = [new_job(), new_job()]
        for new in queued:
            store.insert(new)
        busy = running(store)
        done = running(store)
        store.succeed(done, None)

        # Then the counts cover every job, or only those asked about
        assert store.count_by_status() == {Status.QUEUED: 2, Status.RUNNING: 1, Status.SUCCEEDED: 1}
        assert store.count_by_status([queued[0].id, busy.id]) == {
            Status.QUEUED: 1,
            Status.RUNNING: 1,
        }
        assert store.count_by_status([]) == {}

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
