"""The store contract: a request of a coalescing kind joins the job waiting in the backlog."""

from __future__ import annotations

from typing import Any

import pytest

from jobsys.store import JobStore
from jobsys.store.records import JoinRace
from tests.contract.base import ContractBase, new_job


def either(waiting: dict[str, Any], requested: dict[str, Any]) -> dict[str, Any]:
    return {"value": max(waiting["value"], requested["value"])}


class CoalesceContract(ContractBase):
    """join, and insert of a second coalescing job while one waits."""

    def test_a_request_joins_the_waiting_job_with_the_merged_payload(self, store: JobStore) -> None:
        # Given a coalescing job waiting in the backlog
        first = new_job(admitted=False, coalesce=True, payload={"value": 1})
        assert store.join(first, either) is None
        store.insert(first)

        # When two more requests come, one with a larger value
        joined = [
            store.join(new_job(admitted=False, coalesce=True, payload={"value": v}), either)
            for v in (5, 2)
        ]

        # Then both joined it, and it carries the merged payload
        assert joined == [first.id, first.id]
        assert store.get_job(first.id).payload == {"value": 5}
        assert len(store.list_jobs(user_id="u1")) == 1

        # And another user's request, or another kind's, does not join it
        assert store.join(new_job(user_id="u2", coalesce=True, admitted=False), either) is None
        other = new_job(kind="unit.other", coalesce=True, admitted=False)
        assert store.join(other, either) is None

    def test_a_second_waiting_job_is_refused_so_the_request_joins_instead(
        self, store: JobStore
    ) -> None:
        store.insert(new_job(admitted=False, coalesce=True))
        with pytest.raises(JoinRace):
            store.insert(new_job(admitted=False, coalesce=True))

    def test_once_promoted_the_job_is_joined_no_more(self, store: JobStore) -> None:
        first = new_job(admitted=False, coalesce=True)
        store.insert(first)
        assert [r["id"] for r in store.promote("default", 5).rows] == [first.id]

        second = new_job(admitted=False, coalesce=True)
        assert store.join(second, either) is None
        store.insert(second)
        assert store.join(new_job(admitted=False, coalesce=True), either) == second.id
