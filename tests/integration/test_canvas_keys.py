"""Keyed canvas members on real workers: held back by their key, still in their chord.

Overlap is read from the recorded order of start and end events (Redis lists the
handlers or a hook append to), never from wall-clock times.
"""

from __future__ import annotations

import uuid

import pytest
from celery import chord

from jobsys.store import Status
from tests.conftest import Env, StartWorkers
from tests.integration.test_keys import events, most_at_once
from tests.support import kinds
from tests.support.wait import wait_until

pytestmark = pytest.mark.integration
HOOKED = {"JOBSYS_TEST_HOOKS": "1"}


def members(env: Env) -> list[tuple[int, int, int, Status]]:
    """(attempt, postponements, errors, status) of every keyed member's row."""
    jobs = env.store.list_jobs(kind="test.keyed_member", limit=100)
    return [(j.attempt, j.postponements, len(j.errors), j.status) for j in jobs]


def keyed_chord(key: str, n: int, *, failing: str | None = None) -> uuid.UUID:
    """Apply chord(n keyed members of one user, chord_end) from this process; the
    member tagged ``failing`` fails its first attempt."""
    header = [
        kinds.keyed_member.si(
            "u1", key=key, tag=str(i), seconds=0.03, failures=int(str(i) == failing)
        )
        for i in range(n)
    ]
    result = chord(header, kinds.chord_end.si("u1", key=key)).apply_async()
    return uuid.UUID(result.id)


def test_a_chord_of_keyed_members_runs_them_one_at_a_time_then_its_callback_once(
    jobsys_env: Env, start_workers: StartWorkers
) -> None:
    # Given a node of 4 pool processes
    start_workers(1, concurrency=4)

    # When a chord of 12 members sharing a key of concurrency 1 is applied, with a callback
    keyed_chord("c", 12)

    # Then every member ran once, never two at a time, and the callback ran after them all
    wait_until(lambda: "callback" in events(jobsys_env, "c"), timeout=90, what="the callback")
    order = events(jobsys_env, "c")
    assert most_at_once(order[:-1]) == 1
    assert sorted(e for e in order if e.startswith("start:")) == sorted(
        f"start:{i}" for i in range(12)
    )
    assert order[-1] == "callback" and len(order) == 25
    # And waiting for the key spent no attempt and postponed nothing
    assert members(jobsys_env) == [(1, 0, 0, Status.SUCCEEDED)] * 12
    # And the callback is one job, run once
    (end,) = jobsys_env.store.list_jobs(kind="test.chord_end")
    wait_until(lambda: jobsys_env.finished(end.id), timeout=10, what="the callback's row")
    end = jobsys_env.store.get_job(end.id)
    assert (end.status, end.attempt) == (Status.SUCCEEDED, 1)
    assert events(jobsys_env, "c").count("callback") == 1


def test_a_keyed_chord_member_that_fails_once_is_retried_through_the_backlog(
    jobsys_env: Env, start_workers: StartWorkers
) -> None:
    # Given a node of 4 pool processes whose engine events are recorded
    start_workers(1, concurrency=4, env=HOOKED)

    # When a chord of 4 members of one key (concurrency 1) runs, member 2 failing once
    keyed_chord("r", 4, failing="2")

    # Then the chord completes: its callback runs once, after every member succeeded
    wait_until(lambda: "callback" in events(jobsys_env, "r"), timeout=90, what="the callback")
    order = events(jobsys_env, "r")
    assert order[-1] == "callback" and order.count("callback") == 1
    assert most_at_once(order[:-1]) == 1
    assert order.count("start:2") == 2 and len(order) == 11
    # And the failed member ran twice, its retry published by admission, not at once
    (failed,) = [
        j for j in jobsys_env.store.list_jobs(kind="test.keyed_member") if j.payload["tag"] == "2"
    ]
    assert (failed.status, failed.attempt, failed.postponements) == (Status.SUCCEEDED, 2, 0)
    assert [e["reason"] for e in failed.errors] == ["flaky"]
    dispatched = [e for _, e in kinds.hook_events(jobsys_env.redis, failed.id) if "dispatch" in e]
    assert dispatched == ["dispatch:admit", "dispatch:admit"]
