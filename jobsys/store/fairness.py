"""Sharing free broker slots between users: start-time fair queuing over virtual time.

Each user waiting in a queue has a virtual time. A slot goes to the waiting
user with the smallest one, whose virtual time then grows by ``1 / weight``:
a user of weight 3 gets three slots for every one of a user of weight 1, and
a user alone gets every slot (the scheme is work-conserving). A user that
starts waiting again starts from the smallest virtual time among the users
already waiting, so time spent idle is not saved up as credit against them.
"""

from __future__ import annotations

import dataclasses
import heapq
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
# Picks each user's next due jobs, at most ``counts[user]`` each and ``total`` in all.
Pick = Callable[[dict[str, int], int], dict[str, list[T]]]
ROUNDS = 3  # of picking in one promotion, when granted users run dry


@dataclasses.dataclass(frozen=True)
class Waiting:
    """A user with due jobs in a queue, as the admission query reads it."""

    user_id: str
    vtime: float
    weight: float = 1.0


@dataclasses.dataclass(frozen=True)
class Allocation:
    """Who gets the free slots: the order of the grants, and each user's new virtual time."""

    order: list[str]
    vtimes: dict[str, float]

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for user in self.order:
            counts[user] = counts.get(user, 0) + 1
        return counts


def allocate(waiting: list[Waiting], slots: int) -> Allocation:
    """Grant ``slots`` slots among ``waiting`` users, smallest virtual time first.

    Ties go to the user listed first (the query lists them by virtual time).
    """
    heap = [(w.vtime, i, w) for i, w in enumerate(waiting)]
    heapq.heapify(heap)
    order: list[str] = []
    vtimes = {w.user_id: w.vtime for w in waiting}
    while heap and len(order) < slots:
        vtime, i, w = heapq.heappop(heap)
        order.append(w.user_id)
        vtimes[w.user_id] = vtime + 1.0 / w.weight
        heapq.heappush(heap, (vtimes[w.user_id], i, w))
    return Allocation(order, vtimes)


def charge(
    waiting: list[Waiting], granted: dict[str, int], vtimes: dict[str, float] | None = None
) -> dict[str, float]:
    """Each user's virtual time after the jobs it was actually granted (fewer when it ran dry).

    ``vtimes`` holds virtual times newer than ``waiting``'s, if any.
    """
    now = vtimes or {}
    return {
        w.user_id: now.get(w.user_id, w.vtime) + granted.get(w.user_id, 0) / w.weight
        for w in waiting
    }


@dataclasses.dataclass(frozen=True)
class Shared:
    """What a promotion granted: jobs in publish order (and the user of each), the users'
    new virtual times, and the virtual start of the last slot served (the queue's clock
    moves there)."""

    jobs: list[Any]
    vtimes: dict[str, float]
    frontier: float | None
    # The user each job went to.
    users: list[str]

    def firsts(self, users: set[str]) -> list[Any]:
        """The first job of each of ``users`` that got one."""
        seen: set[str] = set()
        found = []
        for user, job in zip(self.users, self.jobs, strict=True):
            if user in users and user not in seen:
                seen.add(user)
                found.append(job)
        return found


def share(waiting: list[Waiting], slots: int, pick: Pick[T]) -> Shared:
    """Fill ``slots`` from ``waiting`` users' due jobs, fairly: the jobs in publish order
    (the order their slots were granted) and every waiting user's new virtual time.

    A user granted more slots than it has due jobs leaves the rest to the others,
    over up to ``ROUNDS`` rounds of picking.
    """
    vtimes = {w.user_id: w.vtime for w in waiting}
    jobs: dict[str, list[T]] = {w.user_id: [] for w in waiting}
    order: list[str] = []
    active = waiting
    for _ in range(ROUNDS):
        left = slots - len(order)
        if left <= 0 or not active:
            break
        alloc = allocate([dataclasses.replace(w, vtime=vtimes[w.user_id]) for w in active], left)
        counts = alloc.counts()
        picked = pick(counts, left)
        got = {u: len(found) for u, found in picked.items()}
        for user, found in picked.items():
            jobs[user] += found
        order += _granted(alloc.order, got)
        vtimes.update(charge([w for w in active if w.user_id in counts], got, vtimes))
        # Users that had fewer due jobs than slots are out; the rest may have more.
        active = [w for w in active if got.get(w.user_id, 0) >= counts.get(w.user_id, 0)]
    weight = {w.user_id: w.weight for w in waiting}
    served = {u for u in order}
    frontier = max((vtimes[u] - 1.0 / weight[u] for u in served), default=None)
    return Shared([jobs[u].pop(0) for u in order], vtimes, frontier, order)


def one_each(waiting: list[Waiting], pick: Pick[T]) -> Shared:
    """A catch-up: one slot for each of ``waiting`` (the users at or behind the queue's
    clock), in their order, each charged for the job it got; the clock stays."""
    picked = pick({w.user_id: 1 for w in waiting}, len(waiting))
    got = {user: len(found) for user, found in picked.items()}
    order = [w.user_id for w in waiting if got.get(w.user_id)]
    return Shared([picked[u][0] for u in order], charge(waiting, got), None, order)


def _granted(order: list[str], got: dict[str, int]) -> list[str]:
    """The allocation's order, keeping only the slots a job filled."""
    taken: dict[str, int] = {}
    out = []
    for user in order:
        if taken.get(user, 0) < got.get(user, 0):
            taken[user] = taken.get(user, 0) + 1
            out.append(user)
    return out
