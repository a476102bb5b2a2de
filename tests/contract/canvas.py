"""The store contract: a keyed canvas member's Celery options wait in its row."""

from __future__ import annotations

from typing import Any

from jobsys.store import Job, JobStore
from tests.contract.base import ContractBase, bury, claim, error_entry, new_job

# What Celery hands a chord member (its callback signature is a dict), as JSON holds it.
CHORD = {
    "group_id": "g-1",
    "group_index": 3,
    "chord": {"task": "unit.callback", "args": [], "kwargs": {}, "options": {}},
    "reply_to": "r-1",
}


def promoted(store: JobStore) -> dict[Any, dict[str, Any]]:
    return {r["id"]: r for r in store.promote("default", 10).rows}


def running_member(store: JobStore) -> Job:
    """A keyed chord member inserted into the backlog, promoted and claimed."""
    member = new_job(admitted=False, concurrency_key="k", concurrency=1, canvas=CHORD)
    store.insert(member)
    assert member.id in promoted(store)
    job = claim(store, member.id)
    assert job is not None
    return job


class CanvasContract(ContractBase):
    """promote returns the canvas a row holds; putting a job back may replace it."""

    def test_a_promoted_row_carries_the_canvas_it_was_inserted_with(self, store: JobStore) -> None:
        # Given a keyed chord member and a plain job, both in the backlog
        member = new_job(admitted=False, concurrency_key="k", concurrency=1, canvas=CHORD)
        plain = new_job(admitted=False)
        store.insert(member)
        store.insert(plain)

        # When both are promoted
        rows = promoted(store)

        # Then the member's row holds its place in the chord, the plain job's nothing
        assert rows[member.id]["canvas"] == CHORD
        assert rows[plain.id]["canvas"] is None

    def test_a_retry_into_the_backlog_stores_the_canvas_it_is_given(self, store: JobStore) -> None:
        # Given a keyed chord member promoted and running
        job = running_member(store)

        # When its failed attempt goes back to the backlog with Celery's retry count
        retried = {**CHORD, "retries": 1}
        store.requeue(job, delay=0.0, error=error_entry(job), backlog=True, canvas=retried)

        # Then its next promotion publishes it with that
        assert promoted(store)[job.id]["canvas"] == retried

    def test_putting_back_without_a_canvas_keeps_the_rows(self, store: JobStore) -> None:
        # Given a keyed chord member promoted and running
        job = running_member(store)

        # When it is postponed into the backlog with no canvas given (the sweeper's paths)
        assert store.postpone(job, delay=0.0, backlog=True) is not None

        # Then the row still holds its place in the chord
        assert promoted(store)[job.id]["canvas"] == CHORD

    def test_a_published_member_whose_message_may_be_lost_comes_back_with_its_place(
        self, store: JobStore
    ) -> None:
        # Given a keyed chord member promoted (its message in the broker) and a plain job
        member = new_job(admitted=False, concurrency_key="k", concurrency=1, canvas=CHORD)
        plain = new_job()
        store.insert(member)
        store.insert(plain)
        assert member.id in promoted(store)

        # When the sweeper asks for every published job (the broker was flushed)
        stale = {
            r["id"]: r for r in store.stale_queued(everything=True, lost_after=0.0, queues=None)
        }

        # Then the member comes with its place in the chord, to be published with it
        assert stale[member.id]["canvas"] == CHORD
        assert stale[plain.id]["canvas"] is None

    def test_a_revived_member_leaves_its_old_chord(self, store: JobStore) -> None:
        # Given a keyed chord member that ran and died (its chord counted the failure)
        job = running_member(store)
        letter = bury(store, job)
        assert letter is not None

        # When an operator revives it
        assert store.revive(store.get_dead_letter(letter), actor="op") is not None

        # Then it waits for its key in the backlog, and its promotion no longer carries
        # the old place
        assert not store.dispatched(job.id)
        (row,) = [r for r in store.promote(job.queue, 10).rows if r["id"] == job.id]
        assert row["canvas"] is None
