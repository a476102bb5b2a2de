from __future__ import annotations

from jobsys import Status
from jobsys.store.status import can_move


def test_terminal_states_go_nowhere() -> None:
    for terminal in (Status.SUCCEEDED, Status.CANCELLED):
        assert not any(can_move(terminal, s) for s in Status)


def test_dead_can_only_be_requeued() -> None:
    assert [s for s in Status if can_move(Status.DEAD, s)] == [Status.QUEUED]


def test_queued_must_be_claimed_before_it_finishes() -> None:
    assert not can_move(Status.QUEUED, Status.SUCCEEDED)
    assert can_move(Status.QUEUED, Status.RUNNING)
