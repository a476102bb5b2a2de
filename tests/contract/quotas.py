"""The store contract: per-user quotas on enqueues, charged where jobs are inserted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from jobsys.errors import QuotaExceeded
from jobsys.store import JobStore, Status
from jobsys.store.quotas import Quota
from tests.contract.base import ContractBase, new_job

NONE = Quota()


def queued(store: JobStore, user: str) -> int:
    return sum(1 for j in store.list_jobs(user_id=user, limit=1000) if j.status is Status.QUEUED)


class QuotaContract(ContractBase):
    """insert and insert_many with a quota, set_limits and user_limits."""

    def test_the_enqueue_over_max_queued_is_refused_and_stores_nothing(
        self, store: JobStore
    ) -> None:
        # Given a user allowed 3 queued jobs, holding 3
        store.set_limits("u1", {"max_queued": 3})
        for _ in range(3):
            store.insert(new_job(user_id="u1", admitted=False), quota=NONE)

        # When a fourth is enqueued
        fourth = new_job(user_id="u1", admitted=False)
        with pytest.raises(QuotaExceeded) as refused:
            store.insert(fourth, quota=NONE)

        # Then the error names the user, the limit and what frees it; nothing was stored
        error = refused.value
        assert (error.user_id, error.limit, error.value, error.used) == ("u1", "max_queued", 3, 3)
        assert "'u1'" in str(error) and "max_queued=3" in str(error)
        assert "frees up as its queued jobs start" in str(error)
        assert queued(store, "u1") == 3
        assert store.job_state(fourth.id) is None

        # And another user, and work not charged (quota None), are not limited by it
        store.insert(new_job(user_id="u2", admitted=False), quota=NONE)
        store.insert(new_job(user_id="u1", admitted=False), quota=None)
        assert queued(store, "u2") == 1 and queued(store, "u1") == 4

    def test_once_a_queued_job_starts_the_user_may_enqueue_again(self, store: JobStore) -> None:
        store.set_limits("u1", {"max_queued": 1})
        first = new_job(user_id="u1")
        store.insert(first, quota=NONE)
        with pytest.raises(QuotaExceeded):
            store.insert(new_job(user_id="u1"), quota=NONE)

        assert store.claim(first.id, "u1", lease=30, worker="w", pid=1) is not None

        store.insert(new_job(user_id="u1"), quota=NONE)
        assert queued(store, "u1") == 1

    def test_a_batch_over_a_quota_stores_nothing_at_all(self, store: JobStore) -> None:
        # Given u2 may hold 2 queued jobs
        store.set_limits("u2", {"max_queued": 2})

        # When one batch asks for 5 of u1's (unlimited) and 3 of u2's
        batch = [new_job(user_id="u1") for _ in range(5)]
        batch += [new_job(user_id="u2") for _ in range(3)]
        with pytest.raises(QuotaExceeded) as refused:
            store.insert_many(batch, quota=NONE)

        # Then nothing of the batch was stored, u1's jobs neither
        assert refused.value.user_id == "u2" and refused.value.asked == 3
        assert "more than the limit allows at once" in str(refused.value)
        assert queued(store, "u1") == 0 and queued(store, "u2") == 0

        # And within the quota, the whole batch is stored
        store.insert_many(batch[:7], quota=NONE)
        assert queued(store, "u1") == 5 and queued(store, "u2") == 2

    def test_max_per_hour_counts_enqueues_and_says_when_it_frees(self, store: JobStore) -> None:
        # Given a user allowed 4 enqueues an hour
        store.set_limits("u1", {"max_per_hour": 4})
        store.insert_many([new_job(user_id="u1") for _ in range(3)], quota=NONE)
        first = new_job(user_id="u1")
        store.insert(first, quota=NONE)
        # (a job that ran does not give its enqueue back)
        assert store.claim(first.id, "u1", lease=30, worker="w", pid=1) is not None

        # When a fifth is enqueued within the hour
        before = datetime.now(UTC)
        with pytest.raises(QuotaExceeded) as refused:
            store.insert(new_job(user_id="u1"), quota=NONE)

        # Then it is refused, with the minute the first enqueues age out
        error = refused.value
        assert (error.limit, error.value, error.used, error.asked) == ("max_per_hour", 4, 4, 1)
        assert error.frees_at is not None
        hour = timedelta(hours=1)
        assert before + hour - timedelta(minutes=2) <= error.frees_at <= before + hour
        assert error.retry_after is not None and 0 < error.retry_after <= 3600
        assert "frees up at" in str(error)

    def test_defaults_limit_every_user_and_an_override_wins(self, store: JobStore) -> None:
        defaults = Quota(max_queued=1)
        store.set_limits("big", {"max_queued": 3})
        store.insert(new_job(user_id="small"), quota=defaults)
        with pytest.raises(QuotaExceeded):
            store.insert(new_job(user_id="small"), quota=defaults)
        store.insert_many([new_job(user_id="big") for _ in range(3)], quota=defaults)
        assert queued(store, "big") == 3

    def test_limits_are_listed_and_set_back_to_their_defaults(self, store: JobStore) -> None:
        store.set_limits("u1", {"max_queued": 5, "weight": 2.0})
        store.set_limits("u1", {"max_per_hour": 7})
        row = store.user_limits()["u1"]
        assert (row["weight"], row["max_queued"], row["max_per_hour"]) == (2.0, 5, 7)

        store.set_limits("u1", {"max_queued": None, "weight": None})
        row = store.user_limits()["u1"]
        assert (row["weight"], row["max_queued"], row["max_per_hour"]) == (1.0, None, 7)

        with pytest.raises(ValueError, match="colour"):
            store.set_limits("u1", {"colour": 1})
