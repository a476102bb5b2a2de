"""Sync pipeline, issue scenarios 1-3: full sync, incremental delta, expired cursors."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.conftest import Env, StartWorkers
from tests.integration.pipeline_support import (
    Pipeline,
    assert_matches_truth,
    change_mailbox_and_calendar,
    never_listed,
    pipeline_factory,  # noqa: F401  (fixture)
)

pytestmark = pytest.mark.integration
MakePipeline = Callable[..., Pipeline]


def assert_converged(p: Pipeline, email: str) -> None:
    """Something was synced, without parse errors, and it equals the emulator's truth."""
    messages = p.sync.messages(p.users[email])
    assert messages, "nothing was synced"
    assert [m["error"] for m in messages if m["error"]] == []
    assert_matches_truth(p, email)


def test_a_full_sync_stores_exactly_the_emulators_messages_and_events(
    jobsys_env: Env,
    start_workers: StartWorkers,
    pipeline_factory: MakePipeline,  # noqa: F811
) -> None:
    # Given three users with mail and calendars, and two workers
    p = pipeline_factory(users=3, messages_per_user=25, events_per_user=10)
    start_workers(2, env=p.worker_env)

    # When every user is synced in full
    runs = p.run_all(full=True)

    # Then every run succeeded and each user's rows equal the ground truth
    assert {email: run["status"] for email, run in runs.items()} == dict.fromkeys(
        p.users, "succeeded"
    )
    for email in p.users:
        assert_converged(p, email)
    assert p.duplicates() == {}
    assert jobsys_env.store.list_dead_letters() == []


def test_an_incremental_sync_fetches_only_the_delta_and_converges(
    jobsys_env: Env,
    start_workers: StartWorkers,
    pipeline_factory: MakePipeline,  # noqa: F811
) -> None:
    # Given two users synced in full, and whole events cancelled before that sync
    # (a full listing never shows them, so they stay unknown: excluded below)
    p = pipeline_factory(users=2, messages_per_user=20, events_per_user=8)
    start_workers(2, env=p.worker_env)
    p.run_all(full=True)
    hidden = {email: never_listed(p.emulator.truth_events(email)) for email in p.users}

    # When mail arrives and is deleted and events change, then every user syncs again
    changed, quiet = list(p.users)
    change_mailbox_and_calendar(p, changed, tag=1)
    p.emulator.reset_stats()
    runs = p.run_all()

    # Then both runs were incremental and succeeded
    for run in runs.values():
        assert run["status"] == "succeeded", run
        assert run["steps"]["ingest_gmail"]["mode"] == "incremental"
        assert run["steps"]["ingest_calendar"]["mode"] == "incremental"

    # And only the delta was fetched: one history page, the two new messages, one events page
    assert p.api_calls(changed) == {
        "gmail.users.history.list": 1,
        "gmail.users.messages.get": 2,
        "calendar.events.list": 1,
    }
    assert p.api_calls(quiet) == {"gmail.users.history.list": 1, "calendar.events.list": 1}
    assert runs[changed]["steps"]["ingest_gmail"] == {
        "mode": "incremental",
        "added": 2,
        "deleted": 1,
    }
    assert runs[changed]["steps"]["ingest_calendar"] == {"mode": "incremental", "changed": 2}

    # And the rows equal the new truth: the cancelled event is now a cancelled stub,
    # the deleted message is gone, nothing is duplicated
    for email in p.users:
        assert_matches_truth(p, email, hidden=hidden[email])
    assert p.duplicates() == {}
    assert jobsys_env.store.list_dead_letters() == []


def test_expired_cursors_fall_back_to_a_full_resync_without_duplicates(
    jobsys_env: Env,
    start_workers: StartWorkers,
    pipeline_factory: MakePipeline,  # noqa: F811
) -> None:
    # Given two users synced in full, then changes, then both cursors of one user expired
    p = pipeline_factory(users=2, messages_per_user=20, events_per_user=8)
    start_workers(2, env=p.worker_env)
    p.run_all(full=True)
    expired, kept = list(p.users)
    change_mailbox_and_calendar(p, expired, tag=10)
    change_mailbox_and_calendar(p, kept, tag=20)
    p.emulator.expire_cursors(expired)
    before = p.sync.cursor(p.users[expired], "gmail"), p.sync.cursor(p.users[expired], "calendar")
    p.emulator.reset_stats()

    # When both users sync incrementally
    runs = p.run_all()

    # Then the expired user's Gmail 404 and Calendar 410 each degraded to a full listing
    assert runs[expired]["status"] == "succeeded", runs[expired]
    assert runs[expired]["steps"]["ingest_gmail"]["mode"] == "full"
    assert runs[expired]["steps"]["ingest_calendar"]["mode"] == "full"
    calls = p.api_calls(expired)
    assert calls["gmail.users.history.list"] == 1  # the 404
    assert calls["gmail.users.messages.list"] == 1
    assert calls["gmail.users.messages.get"] == 2  # only the messages it did not have
    assert calls["calendar.events.list"] == 2  # the 410, then the full listing
    after = p.sync.cursor(p.users[expired], "gmail"), p.sync.cursor(p.users[expired], "calendar")
    assert None not in after and after[0] != before[0] and after[1] != before[1]

    # And the other user stayed incremental
    assert runs[kept]["steps"]["ingest_gmail"]["mode"] == "incremental"
    assert runs[kept]["steps"]["ingest_calendar"]["mode"] == "incremental"

    # And the resynced user converged to what a full listing shows, without duplicates
    assert_converged(p, expired)
    assert p.duplicates() == {}
    assert jobsys_env.store.list_dead_letters() == []

    # And the next sync is incremental again from the fresh cursors
    p.emulator.reset_stats()
    again = p.run(p.users[expired])
    assert again["steps"]["ingest_gmail"]["mode"] == "incremental"
    assert again["steps"]["ingest_calendar"]["mode"] == "incremental"
    assert "gmail.users.messages.list" not in p.api_calls(expired)
    assert_converged(p, expired)
