"""Unit-test fixtures: the engine over the in-memory store and broker (no services)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from jobsys.engine.runtime import Runtime
from tests.support.engine import UNIT_APP, UNIT_SETTINGS, Broker, Clock, Engine, Recorder, SpyStore


@pytest.fixture
def engine() -> Iterator[Engine]:
    """A runtime of its own on the unit app, a spied in-memory store and a recording hook.

    The broker's queues are emptied before and after, so each test sees only what it published.
    """
    clock = Clock()
    store = SpyStore(clock)
    hook = Recorder()
    broker = Broker(UNIT_APP)
    broker.purge()
    rt = Runtime(UNIT_SETTINGS, app=UNIT_APP, hooks=[hook], store=store)
    try:
        yield Engine(rt, store, hook, broker, clock)
    finally:
        broker.purge()
