"""The store contract: concurrency keys, held at promotion."""

from __future__ import annotations

import time
from typing import Any

from jobsys.store import JobStore, NewJob
from tests.contract.base import ContractBase, error_entry, new_job


def keyed(store: JobStore, n: int, key: str, limit: int, **changes: Any) -> list[NewJob]:
    jobs = [
        new_job(admitted=False, concurrency_key=key, concurrency=limit, **changes) for _ in range(n)
    ]
    for job in jobs:
        store.insert(job)
    return jobs


def ids(store: JobStore, queue: str = "default", slots: int = 10) -> list[Any]:
    return [r["id"] for r in store.promote(queue, slots).rows]


def promoted_within(store: JobStore, seconds: float) -> list[Any]:
    """The first promotion that finds jobs: a user whose jobs all waited for their keys
    is looked at again shortly, not at once (``KEY_RECHECK``)."""
    deadline = time.monotonic() + seconds
    while True:
        found = ids(store)
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.02)


class KeysContract(ContractBase):
    """promote never puts more jobs of one key in the broker than its concurrency."""

    def test_one_job_of_a_key_at_a_time_and_the_next_when_the_holder_ends(
        self, store: JobStore
    ) -> None:
        # Given five jobs sharing a key of concurrency 1, and one job without a key
        jobs = keyed(store, 5, "gmail:u1", 1)
        plain = new_job(admitted=False)
        store.insert(plain)

        # When slots for all of them are promoted, twice
        first, second = ids(store), ids(store)

        # Then one keyed job went, with the plain one; nothing more while it holds the key
        assert sorted(first, key=str) == sorted([jobs[0].id, plain.id], key=str)
        assert second == []
        assert [store.dispatched(j.id) for j in jobs] == [True] + [False] * 4

        # And once the holder ran, the next one goes
        holder = store.claim(jobs[0].id, "u1", lease=30, worker="w", pid=1)
        assert holder is not None and ids(store) == []  # running still holds it
        assert store.succeed(holder, {"ok": True})
        assert promoted_within(store, 2.0) == [jobs[1].id]

    def test_a_holder_that_ends_lets_its_keys_next_job_go_at_the_next_promotion(
        self, store: JobStore
    ) -> None:
        # Given a key of concurrency 1 held by u1's job, and u2's job of that key found
        # waiting by a promotion that looks at waiting users again only after an hour
        holder_job, waiter = (
            keyed(store, 1, "shared", 1)[0],
            new_job(user_id="u2", admitted=False, concurrency_key="shared", concurrency=1),
        )
        store.insert(waiter)
        assert [r["id"] for r in store.promote("default", 10, recheck=3600).rows] == [holder_job.id]
        assert store.promote("default", 10, recheck=3600).rows == []

        # When the holder ends and says its key is free
        holder = store.claim(holder_job.id, "u1", lease=30, worker="w", pid=1)
        assert holder is not None and store.succeed(holder, {"ok": True})
        store.key_freed("u1", holder_job.id)

        # Then the other user's job of the key goes at the next promotion
        assert [r["id"] for r in store.promote("default", 10, recheck=3600).rows] == [waiter.id]

    def test_a_holder_that_ends_wakes_every_user_waiting_for_its_key(self, store: JobStore) -> None:
        # Given a key of concurrency 3 held by three of u1's jobs, and one job each of
        # three other users found waiting for it (looked at again only after an hour)
        holders = keyed(store, 3, "wide", 3)
        waiters = keyed(store, 1, "wide", 3, user_id="u2") + keyed(
            store, 1, "wide", 3, user_id="u3"
        )
        waiters += keyed(store, 1, "wide", 3, user_id="u4")
        first = store.promote("default", 10, recheck=3600).rows
        assert sorted(r["id"] for r in first) == sorted(j.id for j in holders)
        assert store.promote("default", 10, recheck=3600).rows == []

        # When the three holders end and the last one says its key is free
        for job in holders:
            holder = store.claim(job.id, "u1", lease=30, worker="w", pid=1)
            assert holder is not None and store.succeed(holder, {"ok": True})
        store.key_freed("u1", holders[-1].id)

        # Then all three waiting users' jobs go at the next promotion
        rows = store.promote("default", 10, recheck=3600).rows
        assert sorted(r["user_id"] for r in rows) == ["u2", "u3", "u4"]

    def test_a_key_of_concurrency_three_lets_three_go(self, store: JobStore) -> None:
        keyed(store, 5, "k3", 3)
        assert len(ids(store)) == 3
        assert ids(store) == []

    def test_a_user_held_up_by_a_key_leaves_the_slots_to_others(self, store: JobStore) -> None:
        # Given a user whose key is held, with more jobs of it waiting
        keyed(store, 4, "busy", 1, user_id="held")
        assert len(ids(store, slots=1)) == 1

        # When another user's jobs wait too and two slots free
        others = [new_job(user_id="other", admitted=False) for _ in range(3)]
        for job in others:
            store.insert(job)
        rows = store.promote("default", 2).rows

        # Then both go to the other user
        assert [r["user_id"] for r in rows] == ["other", "other"]

    def test_a_revived_keyed_job_waits_for_its_key_in_the_backlog(self, store: JobStore) -> None:
        # Given two jobs of one key of concurrency 1: the first buried, the second
        # promoted and running, so holding the key
        first, second = keyed(store, 2, "gmail:u1", 1)
        assert ids(store) == [first.id]
        dead = store.claim(first.id, "u1", lease=30, worker="w", pid=1)
        assert dead is not None
        entry = error_entry(dead)
        letter = store.bury(
            dead, error=entry, traceback="", reason="bug", retryable=True, actor="w"
        )
        assert letter is not None
        assert promoted_within(store, 2.0) == [second.id]
        holder = store.claim(second.id, "u1", lease=30, worker="w", pid=1)
        assert holder is not None

        # When the dead one is retried from the dead-letter queue
        revived = store.revive(store.get_dead_letter(letter), actor="op")

        # Then it waits in the backlog (no claim of a message for it succeeds) while
        # the key is held, and is promoted once the holder ended
        assert revived is not None and not store.dispatched(first.id)
        assert store.claim(first.id, "u1", lease=30, worker="w", pid=1) is None
        assert ids(store) == []
        assert store.succeed(holder, {"ok": True})
        assert promoted_within(store, 2.0) == [first.id]
