"""The store contract: the span contexts a traced job keeps (``jobs.trace``)."""

from __future__ import annotations

import dataclasses

from jobsys.store import JobStore
from tests.contract.base import ContractBase, claim, error_entry, new_job

ENQUEUED = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
FIRST_ATTEMPT = "00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01"


class TracingContract(ContractBase):
    """insert and insert_many keep a job's trace; note_trace replaces it for one attempt."""

    def test_a_job_keeps_its_enqueues_trace_and_an_untraced_one_none(self, store: JobStore) -> None:
        # Given a traced job inserted alone, one inserted in bulk, and an untraced one
        alone = new_job(trace={"parent": ENQUEUED})
        bulk = new_job(trace={"parent": ENQUEUED})
        plain = new_job()
        store.insert(alone)
        store.insert_many([bulk])
        store.insert(plain)

        # When they are claimed
        claimed = [claim(store, j.id) for j in (alone, bulk, plain)]

        # Then each comes back with the trace it was inserted with
        assert [j.trace if j else "unclaimed" for j in claimed] == [
            {"parent": ENQUEUED}, {"parent": ENQUEUED}, None,
        ]  # fmt: skip

    def test_note_trace_is_kept_for_the_next_attempt_of_the_same_job_only(
        self, store: JobStore
    ) -> None:
        # Given a traced job whose first attempt failed and went back to the queue
        new = new_job(trace={"parent": ENQUEUED})
        store.insert(new)
        first = claim(store, new.id)
        assert first is not None
        store.requeue(first, delay=0.0, error=error_entry(first))

        # When the attempt's span context is noted, and a stale attempt's note comes late
        kept = {"parent": ENQUEUED, "last": FIRST_ATTEMPT}
        store.note_trace(first, kept)
        store.note_trace(dataclasses.replace(first, attempt=7), {"last": "stale"})

        # Then the next attempt reads the first one's, and the stale note changed nothing
        second = claim(store, new.id)
        assert second is not None and second.attempt == 2
        assert second.trace == kept
        # And a job re-published from its row carries it too
        assert store.get_job(new.id).trace == kept
