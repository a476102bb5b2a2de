"""Keyed canvas members on real workers: held back by their key, still in their chord.

Overlap is read from the recorded order of start and end events (Redis lists the
handlers or a hook append to), never from wall-clock times.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
from celery import chord

from jobsys.store import Status
from tests.conftest import Env, StartWorkers
from tests.integration.pipeline_support import (
    Pipeline,
    assert_matches_truth,
    pipeline_factory,  # noqa: F401  (fixture)
)
from tests.integration.test_keys import events, most_at_once
from tests.support import kinds
from tests.support.wait import wait_until

pytestmark = pytest.mark.integration
MakePipeline = Callable[..., Pipeline]
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


def spans_of_user(env: Env, user_id: str) -> list[str]:
    """The recorded handler starts and ends of the user's ingestion jobs, in order."""
    ingestions = {
        str(j.id)
        for kind in ("sync.ingest_gmail", "sync.ingest_calendar")
        for j in env.store.list_jobs(user_id=user_id, kind=kind)
    }
    spans = [s.decode() for s in env.redis.lrange(kinds.SPANS, 0, -1)]
    return [s for s in spans if s.rsplit(":", 1)[-1] in ingestions]


def test_a_users_ingestions_run_one_at_a_time_with_a_per_user_limit_of_one(
    jobsys_env: Env,
    start_workers: StartWorkers,
    pipeline_factory: MakePipeline,  # noqa: F811
) -> None:
    # Given one ingestion at a time per user, two nodes of two processes each (room for
    # both of a user's ingestions at once), and Google answering slowly
    p = pipeline_factory(users=2, messages_per_user=30, events_per_user=8)
    p.emulator.set_faults(latency=0.2)
    env = {**p.worker_env, "JOBSYS_INGEST_USER_CONCURRENCY": "1", "JOBSYS_TEST_SPANS": "1"}
    start_workers(2, concurrency=2, env=env)

    # When every user is synced in full (the workers enqueue the ingestions)
    runs = p.run_all(full=True)

    # Then every run succeeded, with the right data
    assert {email: run["status"] for email, run in runs.items()} == dict.fromkeys(
        p.users, "succeeded"
    )
    for email in p.users:
        assert_matches_truth(p, email)
    # And no user ever had two ingestions running at once (by the recorded order)
    for user_id in p.users.values():
        spans = spans_of_user(jobsys_env, user_id)
        assert len(spans) == 4, spans  # Gmail's and Calendar's, each started and ended once
        assert most_at_once(spans) == 1, spans
    # And the limit postponed nothing: each ingestion ran on its first attempt
    ingestions = [
        j
        for kind in ("sync.ingest_gmail", "sync.ingest_calendar")
        for j in jobsys_env.store.list_jobs(kind=kind)
    ]
    assert len(ingestions) == 4
    assert {(j.status, j.attempt, j.postponements) for j in ingestions} == {
        (Status.SUCCEEDED, 1, 0)
    }
