"""The store contract: inserting jobs, claiming them, recording each attempt."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from jobsys.errors import DuplicateJobError, JobsysError, UnstorableError
from jobsys.store import JobStore, Status
from tests.contract.base import (
    LEASE,
    ContractBase,
    bury,
    claim,
    dead,
    error_entry,
    new_job,
    running,
)


class JobsContract(ContractBase):
    """insert, insert_many, claim, job_state, succeed, requeue, postpone, bury, cancel_running."""

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

        # When a job of user u2 is inserted under the same id (a caller's task_id reused):
        # the id alone names a job everywhere (get_job, job_state, request_cancel, revive)
        with pytest.raises(JobsysError):
            store.insert(new_job(id=new.id, user_id="u2", chosen_id=True))

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
        # Given a succeeded job, and a job asked to stop while running whose attempt
        # failed: it is not put back in the queue, it is cancelled
        done = running(store)
        assert store.succeed(done, 1)
        flagged = running(store)
        store.request_cancel(flagged.id, actor="op")
        assert store.requeue(flagged, delay=0.0, error=error_entry(flagged)) is None
        assert store.postpone(flagged, delay=0.0) is None
        assert store.cancel_running(flagged)

        # When each, and an unknown id, are claimed
        claims = [claim(store, i) for i in (done.id, flagged.id, uuid.uuid4())]

        # Then every claim loses and the jobs stay as they were
        assert claims == [None, None, None]
        assert store.get_job(flagged.id).status is Status.CANCELLED
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

    @pytest.mark.parametrize(
        ("result", "cause"),
        [
            ({"at": object()}, "a value JSON cannot encode"),
            (float("nan"), "NaN or Infinity"),
            ({"x": [float("-inf")]}, "NaN or Infinity"),
            ("a\u0000b", "\\u0000 character"),
        ],
    )
    def test_a_result_jsonb_cannot_hold_is_refused(
        self, store: JobStore, result: object, cause: str
    ) -> None:
        # Given a running job
        job = running(store)

        # When its attempt reports a result PostgreSQL's jsonb cannot hold
        with pytest.raises(UnstorableError) as refused:
            store.succeed(job, result)

        # Then the error names the cause, and nothing is recorded: the attempt still holds it
        assert str(refused.value).startswith("the job's result cannot be stored as JSON: it holds")
        assert cause in str(refused.value)
        assert (refused.value.reason, refused.value.retryable) == ("unstorable", False)
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

    def test_postponements_are_counted_and_refused_past_the_limit(self, store: JobStore) -> None:
        # Given a running job, never postponed
        job = running(store)
        assert (job.postponements, job.postponed_since) == (0, None)

        # When it is postponed twice (the first time under a limit of 0 s, which only
        # refuses once a first postponement is on record), claimed again after each
        assert store.postpone(job, delay=0.0, limit=0.0) is not None
        again = claim(store, job.id)
        assert again is not None and again.postponements == 1
        since = again.postponed_since
        assert since is not None
        assert store.postpone(again, delay=0.0) is not None
        third = claim(store, job.id)
        assert third is not None

        # Then both are counted, timed from the first
        assert (third.postponements, third.postponed_since) == (2, since)
        # And under a limit the first postponement is as old as, it is refused: the job
        # stays with this attempt
        assert store.postpone(third, delay=0.0, limit=0.0) is None
        assert store.get_job(job.id) == third
        # While a limit not reached yet lets it be postponed again
        assert store.postpone(third, delay=0.0, limit=3600.0) is not None
        assert store.get_job(job.id).postponements == 3

    def test_a_revived_job_starts_its_postponements_afresh(self, store: JobStore) -> None:
        # Given a job postponed once, then claimed again and buried
        job = running(store)
        assert store.postpone(job, delay=0.0) is not None
        again = claim(store, job.id)
        assert again is not None
        letter = bury(store, again)
        assert letter is not None

        # When it is revived
        revived = store.revive(store.get_dead_letter(letter), actor="op")

        # Then its postponements start from none
        assert revived is not None
        assert (revived.postponements, revived.postponed_since) == (0, None)

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
