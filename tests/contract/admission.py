"""The store contract: the backlog, and promoting it fairly into the broker's ready buffer."""

from __future__ import annotations

from collections import Counter
from typing import Any

from jobsys.store import JobStore, NewJob
from tests.contract.base import ContractBase, claim, new_job


def waiting(store: JobStore, user: str, n: int = 1, **changes: Any) -> list[NewJob]:
    """``n`` jobs of ``user`` inserted into the backlog, one by one."""
    jobs = [new_job(user_id=user, admitted=False, **changes) for _ in range(n)]
    for job in jobs:
        store.insert(job)
    return jobs


def users(rows: list[dict[str, Any]]) -> list[str]:
    return [r["user_id"] for r in rows]


class AdmissionContract(ContractBase):
    """promote, next_due, set_limits, and what the backlog means to the sweeper's queries."""

    def test_backlog_jobs_are_promoted_once_and_published_ones_never(self, store: JobStore) -> None:
        # Given two jobs in the backlog and one its caller published at once
        backlog = waiting(store, "u1", 2)
        store.insert(new_job(user_id="u1"))

        assert [store.dispatched(j.id) for j in backlog] == [False, False]

        # When more slots than jobs are promoted, twice
        first = store.promote("default", 10)
        second = store.promote("default", 10)

        # Then the backlog jobs came out once, the published one never
        assert sorted(r["id"] for r in first.rows) == sorted(j.id for j in backlog)
        assert not first.full and second.rows == []
        assert {r["kind"] for r in first.rows} == {"unit.echo"}
        assert [store.dispatched(j.id) for j in backlog] == [True, True]

    def test_a_job_waiting_in_the_backlog_is_claimed_only_once_promoted(
        self, store: JobStore
    ) -> None:
        # Given a due job in the backlog, and a stale copy of a message delivered for it
        (job,) = waiting(store, "u1")

        # Then that copy's claim is refused, by id or by user and id
        assert claim(store, job.id) is None
        assert claim(store, job.id, user_id="u1") is None
        assert store.get_job(job.id).attempt == 0

        # Once promoted (its own message published), its claim succeeds
        assert [r["id"] for r in store.promote("default", 1).rows] == [job.id]
        claimed = claim(store, job.id, user_id="u1")
        assert claimed is not None and claimed.attempt == 1

    def test_a_full_promotion_says_more_may_wait(self, store: JobStore) -> None:
        waiting(store, "u1", 3)
        assert store.promote("default", 2).full
        assert len(store.promote("default", 2).rows) == 1

    def test_a_light_user_is_served_next_behind_a_heavy_users_backlog(
        self, store: JobStore
    ) -> None:
        # Given a heavy user with 20 jobs waiting, 4 of them already promoted
        waiting(store, "heavy", 20)
        assert users(store.promote("default", 4).rows) == ["heavy"] * 4
        # When a light user enqueues one job and two slots free
        waiting(store, "light", 1)
        rows = store.promote("default", 2).rows

        # Then the light user's job is one of the two
        assert sorted(users(rows)) == ["heavy", "light"]

    def test_weights_share_the_slots_in_their_ratio(self, store: JobStore) -> None:
        # Given two users with long backlogs, weights 1 and 3
        waiting(store, "one", 40)
        waiting(store, "three", 40)
        store.set_limits("three", {"weight": 3.0})

        # When 40 slots are promoted, 4 at a time
        got: Counter[str] = Counter()
        for _ in range(10):
            got.update(users(store.promote("default", 4).rows))

        # Then they went 1:3
        assert got == {"one": 10, "three": 30}
        assert store.user_limits()["three"]["weight"] == 3.0

    def test_urgent_jobs_come_first_whoever_waits(self, store: JobStore) -> None:
        # Given a flood from one user and an urgent job from another
        waiting(store, "flood", 10)
        (urgent,) = waiting(store, "u2", 1, priority=9)

        # Then the next slot is the urgent job's
        assert [r["id"] for r in store.promote("default", 1).rows] == [urgent.id]

    def test_a_flood_of_urgent_jobs_leaves_a_quarter_of_each_promotion_to_the_rest(
        self, store: JobStore
    ) -> None:
        # Given one user's flood of 40 urgent jobs (a name that sorts first, so ties in
        # the fair share go its way), and two users' two ordinary jobs each
        waiting(store, "0hurry", 40, priority=9)
        waiting(store, "a", 2)
        waiting(store, "b", 2)

        # When 8 slots are promoted three times
        rounds = [users(store.promote("default", 8).rows) for _ in range(3)]

        # Then each promotion gave 6 slots to urgent jobs, and the other 2 went round
        # the three waiting users, the flooder included: 2 each over the three
        assert [len(got) for got in rounds] == [8, 8, 8]
        assert all(got[:6] == ["0hurry"] * 6 for got in rounds)
        assert Counter(u for got in rounds for u in got[6:]) == {"0hurry": 2, "a": 2, "b": 2}

        # And once nobody else waits, urgent jobs take every slot
        assert users(store.promote("default", 8).rows) == ["0hurry"] * 8

    def test_a_users_jobs_come_out_in_priority_order(self, store: JobStore) -> None:
        waiting(store, "u1", 2, priority=0)
        (high,) = waiting(store, "u1", 1, priority=5)
        assert store.promote("default", 1).rows[0]["id"] == high.id

    def test_a_delayed_job_waits_in_the_backlog_until_due(self, store: JobStore) -> None:
        # Given a job delayed by 30 s
        (job,) = waiting(store, "u1", 1, delay=30.0)

        # Then it is not promoted, and the backlog says when it is due
        assert store.promote("default", 5).rows == []
        assert store.next_due("default") == store.get_job(job.id).run_after
        assert store.next_due("other") is None

    def test_a_cancelled_backlog_job_is_never_promoted(self, store: JobStore) -> None:
        (job,) = waiting(store, "u1", 1)
        store.request_cancel(job.id, actor="test")
        assert store.promote("default", 5).rows == []
        assert store.next_due("default") is None

    def test_backlog_jobs_are_not_lost_messages(self, store: JobStore) -> None:
        # Given one job in the backlog and one published
        waiting(store, "u1", 1)
        published = new_job(user_id="u1")
        store.insert(published)

        # Then only the published one can have lost its message, even on a broker reset
        stale = store.stale_queued(everything=True, lost_after=-1, queues=None)
        assert [r["id"] for r in stale] == [published.id]

    def test_insert_many_joins_the_backlog_by_user(self, store: JobStore) -> None:
        # Given three users' jobs inserted at once into the backlog
        batch = [new_job(user_id=u, admitted=False) for u in ("a", "a", "a", "b", "c")]
        store.insert_many(batch)

        # When three slots are promoted
        rows = store.promote("default", 3).rows

        # Then each user got one, and only their queue's backlog was touched
        assert sorted(users(rows)) == ["a", "b", "c"]
        assert store.promote("cpu", 3).rows == []

    def test_a_user_that_starts_waiting_joins_at_the_queues_clock(self, store: JobStore) -> None:
        # Given a user served alone for a while (ten jobs promoted)
        waiting(store, "early", 20)
        for _ in range(10):
            store.promote("default", 1)

        # When another user starts waiting with a long backlog too
        waiting(store, "late", 20)
        got = users([r for _ in range(6) for r in store.promote("default", 1).rows])

        # Then they share from now on: the newcomer has no credit for the past
        assert Counter(got) == {"early": 3, "late": 3}, got

    def test_time_alone_is_not_held_against_a_user_once_the_queue_was_idle(
        self, store: JobStore
    ) -> None:
        # Given a user served alone until its backlog ran out
        waiting(store, "busy", 10)
        store.promote("default", 10)
        assert store.promote("default", 1).rows == []

        # When another user starts waiting, then the first one again
        waiting(store, "other", 10)
        waiting(store, "busy", 10)
        got = users([r for _ in range(6) for r in store.promote("default", 1).rows])

        # Then they alternate: the first is not made to wait out its past
        assert Counter(got) == {"busy": 3, "other": 3}

    def test_released_jobs_go_back_to_the_backlog(self, store: JobStore) -> None:
        # Given two promoted jobs whose publish failed
        waiting(store, "u1", 2)
        rows = store.promote("default", 2).rows
        store.release(rows)

        # Then they are promoted again
        assert sorted(r["id"] for r in store.promote("default", 5).rows) == sorted(
            r["id"] for r in rows
        )

    def test_a_promotion_marks_exactly_the_jobs_it_returns(self, store: JobStore) -> None:
        # Given two users' backlogs
        jobs = waiting(store, "a", 10) + waiting(store, "b", 10)

        # When a few small promotions run
        returned = [r["id"] for _ in range(3) for r in store.promote("default", 3).rows]

        # Then the jobs marked dispatched are those it returned, no more
        assert len(returned) == 9
        assert {j.id for j in jobs if store.dispatched(j.id)} == set(returned)

    def test_a_job_waiting_past_the_aging_time_goes_ahead_of_its_users_higher_ones(
        self, store: JobStore
    ) -> None:
        # Given a user's low-priority job, then two of priority 5
        (low,) = waiting(store, "u1", 1, priority=0)
        waiting(store, "u1", 2, priority=5)

        # When promoted before the low one has aged, it waits behind the others
        assert store.promote("default", 1, aging=3600).rows[0]["priority"] == 5

        # Then once it waited past the aging time (0 s here), it goes first
        assert [r["id"] for r in store.promote("default", 1, aging=0).rows] == [low.id]

    def test_a_catch_up_serves_one_job_of_each_user_behind_the_clock(self, store: JobStore) -> None:
        # Given a heavy user whose 30 promoted jobs put it ahead of the queue's clock
        waiting(store, "heavy", 50)
        assert len(store.promote("default", 30).rows) == 30
        assert store.promote("default", 5, behind=True).rows == []

        # When two light users start waiting, one with three jobs
        waiting(store, "light-1", 1)
        waiting(store, "light-2", 3)
        promotion = store.promote("default", 10, behind=True)

        # Then the catch-up took one job from each light user, none of the heavy's, all
        # for the front of the buffer
        assert sorted(users(promotion.rows)) == ["light-1", "light-2"]
        assert promotion.ahead == {r["id"] for r in promotion.rows}
        assert store.promote("default", 10, behind=True).rows == []
        # And light-2, charged for it, shares the next promotion with the heavy user
        assert sorted(users(store.promote("default", 2).rows)) == ["heavy", "light-2"]

    def test_a_catch_up_is_at_most_its_slots(self, store: JobStore) -> None:
        for i in range(5):
            waiting(store, f"u{i}", 2)
        assert len(store.promote("default", 3, behind=True).rows) == 3

    def test_a_promotion_puts_the_first_job_of_each_user_behind_the_clock_ahead(
        self, store: JobStore
    ) -> None:
        # Given a heavy user ahead of the queue's clock (30 jobs promoted)
        waiting(store, "heavy", 50)
        first = store.promote("default", 30)
        assert first.ahead == {first.rows[0]["id"]}  # it joined at the clock itself

        # When a light user starts waiting with three jobs, and a promotion runs
        waiting(store, "light", 3)
        promotion = store.promote("default", 4)

        # Then it shares the slots, and only the light user's first job goes ahead
        assert sorted(users(promotion.rows)) == ["heavy", "light", "light", "light"]
        light = next(r for r in promotion.rows if r["user_id"] == "light")
        assert promotion.ahead == {light["id"]}
