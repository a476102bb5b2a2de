"""The store contract: workers, dead letters, audit events, and reading jobs."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from jobsys.errors import JobNotFoundError
from jobsys.store import JobStore, Status
from tests.contract.base import (
    ContractBase,
    bury,
    claim,
    dead,
    new_job,
    running,
)


class FleetContract(ContractBase):
    """Workers, dead letters (revive, purge), audit, get_job, list_jobs, count_by_status."""

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

    def test_retire_worker_marks_only_that_live_process_dead(self, store: JobStore) -> None:
        # Given a node registered by process 1
        store.register_worker("node-a", hostname="h", pid=1, queues=[], concurrency=1)

        # When another process's row is retired, then process 1's, then process 1's again
        found = [
            store.retire_worker("node-a", 2, by="node-a"),
            store.retire_worker("node-a", 1, by="node-a"),
            store.retire_worker("node-a", 1, by="node-a"),
        ]

        # Then only the first retirement of the registered process counts, and is audited
        assert found == [False, True, False]
        assert [(w.name, w.status) for w in store.list_workers()] == [("node-a", "dead")]
        dead_events = [e for e in self.audit_log(store) if e["action"] == "worker.dead"]
        assert [(e["actor"], e["detail"]) for e in dead_events] == [
            ("node-a", {"worker": "node-a", "pid": 1})
        ]

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
        # And it is marked published (its caller publishes it), so its message's claim runs it
        assert store.dispatched(job.id)
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

    def test_revive_into_the_backlog_waits_for_a_promotion(self, store: JobStore) -> None:
        # Given a dead letter of a job without a concurrency key
        job, letter_id = dead(store)

        # When it is revived into the backlog (admission on)
        revived = store.revive(store.get_dead_letter(letter_id), actor="op", backlog=True)

        # Then it is queued but not published: a claim of a stray message is refused
        assert revived is not None and revived.status is Status.QUEUED
        assert not store.dispatched(job.id)
        assert claim(store, job.id) is None
        # And the next promotion of its queue takes it, once, and then it runs
        assert [r["id"] for r in store.promote(job.queue, 10).rows] == [job.id]
        assert store.promote(job.queue, 10).rows == []
        assert store.dispatched(job.id)
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
