"""Issue 13: the project's corpus synced end to end lands as the standard parser reads it.

Every corpus message (tests/support/corpus) is delivered to an emulator mailbox
next to generated mail, and the user is synced by real workers: 100% of the
corpus must land with subject, From, To, Cc and sent_at equal to the standard
reading (or to the improvement the case states), no batch may fail even once,
and syncing again — in full, then incrementally — must change nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest

from tests.conftest import Env, StartWorkers
from tests.integration.pipeline_support import (
    Pipeline,
    message_facts,
    pipeline_factory,  # noqa: F401  (fixture)
    truth_message_facts,
)
from tests.support.corpus import CASES, Reading

pytestmark = pytest.mark.integration
MakePipeline = Callable[..., Pipeline]


def _reading(row: dict[str, Any]) -> Reading:
    def people(column: str) -> tuple[tuple[str, str], ...]:
        return tuple((a["addr"], a["name"]) for a in row[column])

    return Reading(
        subject=row["subject"],
        senders=people("from_addrs"),
        to=people("to_addrs"),
        cc=people("cc_addrs"),
        sent_at=row["sent_at"],
    )


def _landed(p: Pipeline, user_id: str, ids: dict[str, str], arrived: dict[str, datetime]) -> int:
    """How many corpus messages landed as expected (asserting each, to name a failure)."""
    rows = {r["gmail_id"]: r for r in p.sync.messages(user_id)}
    landed = 0
    for case in CASES:
        row = rows[ids[case.name]]
        assert row["error"] is None, (case.name, row["error"])
        assert _reading(row) == case.expected(arrived[case.name]), case.name
        landed += 1
    return landed


def _snapshot(p: Pipeline, user_id: str) -> tuple[Any, ...]:
    """Everything the pipeline derives for the user, in a comparable form."""
    return (
        p.sync.messages(user_id),
        p.sync.events(user_id),
        p.sync.contacts(user_id),
        p.sync.interactions(user_id),
    )


def test_the_corpus_lands_as_read_and_syncing_again_changes_nothing(
    jobsys_env: Env,
    start_workers: StartWorkers,
    pipeline_factory: MakePipeline,  # noqa: F811
) -> None:
    # Given one mailbox of generated mail plus every corpus message
    p = pipeline_factory(users=1, messages_per_user=30, events_per_user=6)
    email, user_id = next(iter(p.users.items()))
    ids = {case.name: p.emulator.add_message(email, case.raw).id for case in CASES}
    truth = {t["id"]: t for t in p.emulator.truth_messages(email)}
    arrived = {name: truth[gmail_id]["internal_date"] for name, gmail_id in ids.items()}
    start_workers(1, env=p.worker_env)

    # When the user is synced in full
    run = p.run(user_id, full=True)

    # Then the run succeeded and no normalization job failed, even once
    assert run["status"] == "succeeded", run
    normalize = [j for j in jobsys_env.store.list_jobs(limit=1000) if j.kind == "sync.normalize"]
    assert normalize and all(j.attempt == 1 and j.errors == [] for j in normalize)
    assert jobsys_env.store.list_dead_letters() == []

    # And 100% of the corpus landed as read
    assert _landed(p, user_id, ids, arrived) == len(CASES) >= 60

    # And where no improvement is claimed, the rows equal the emulator's own truth
    plain = {ids[c.name] for c in CASES if not c.better}
    generated = set(truth) - set(ids.values())
    facts = message_facts(p.sync.messages(user_id))
    expected = truth_message_facts(list(truth.values()))
    for gmail_id in plain | generated:
        assert facts[gmail_id] == expected[gmail_id], gmail_id

    # When the user is synced again, in full and then incrementally
    before = _snapshot(p, user_id)
    again = p.run(user_id, full=True)
    incremental = p.run(user_id)

    # Then nothing changed
    assert again["status"] == incremental["status"] == "succeeded"
    assert incremental["steps"]["ingest_gmail"]["mode"] == "incremental"
    assert _snapshot(p, user_id) == before
    assert p.duplicates() == {}
    assert jobsys_env.store.list_dead_letters() == []
