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


def charge(waiting: list[Waiting], granted: dict[str, int]) -> dict[str, float]:
    """Each user's virtual time after the jobs it was actually granted (fewer when it ran dry)."""
    return {w.user_id: w.vtime + granted.get(w.user_id, 0) / w.weight for w in waiting}
