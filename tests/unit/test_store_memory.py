"""The store contract on the in-memory store (no services)."""

from __future__ import annotations

from typing import Any

import pytest

from jobsys.store.memory import MemoryStore
from jobsys.store.status import MOVES
from tests.store_contract import MOVE_DRIVERS, StoreContract

AUDIT_FIELDS = ("actor", "action", "job_id", "user_id", "detail")


class TestMemoryStore(StoreContract):
    @pytest.fixture
    def store(self) -> MemoryStore:
        return MemoryStore()

    def audit_log(self, store: Any) -> list[dict[str, Any]]:
        return [{k: e[k] for k in AUDIT_FIELDS} for e in store.audit_events]


def test_every_move_has_a_driver_in_the_contract() -> None:
    # A new transition in status.MOVES needs a store call that makes it, tested by the contract.
    assert set(MOVE_DRIVERS) == set(MOVES)
