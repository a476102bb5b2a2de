"""Postponing is bounded: a job postponed past its limit is dead, and its pipeline run fails."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.conftest import Env, StartWorkers
from tests.integration.pipeline_support import (
    Pipeline,
    pipeline_factory,  # noqa: F401  (fixture)
)
from tests.support.wait import wait_until

pytestmark = pytest.mark.integration
MakePipeline = Callable[..., Pipeline]


def test_an_ingestion_postponed_past_the_limit_fails_its_run_with_that_reason(
    jobsys_env: Env,
    start_workers: StartWorkers,
    pipeline_factory: MakePipeline,  # noqa: F811
) -> None:
    # Given a Google that answers every request 429, and a limit of 3 s of postponing
    p = pipeline_factory(users=1, messages_per_user=3, events_per_user=2)
    (user_id,) = p.users.values()
    p.emulator.set_faults(throttle_next=1_000_000)
    limits = {"JOBSYS_MAX_POSTPONE": "3", "JOBSYS_PIPELINE_REPAIR_AFTER": "2"}
    start_workers(1, env={**p.worker_env, **limits})

    # When the user syncs
    run = p.run(user_id)

    # Then the run is not left running: it failed on a step postponed too long
    assert run["status"] == "failed"
    steps = run["error"].removeprefix("dead step(s): ").split(", ")
    assert steps and {s.split(" ")[1] for s in steps} == {"(postponed_too_long)"}, run["error"]
    # And each ingestion step was postponed (counted), then dead-lettered for it
    ingests = [j for j in jobsys_env.store.list_jobs(user_id=user_id) if "ingest" in j.kind]
    assert sorted(j.kind for j in ingests) == ["sync.ingest_calendar", "sync.ingest_gmail"]
    for ingest in ingests:
        job = wait_until(lambda i=ingest.id: jobsys_env.finished(i), timeout=60, what="a step")
        assert job.status.value == "dead" and job.postponements >= 1, job
        assert job.postponed_since is not None
        letter = jobsys_env.store.dead_letter_of(job.id)
        assert letter is not None
        assert (letter.reason, letter.retryable) == ("postponed_too_long", False)
        assert f"postponed {job.postponements} times since " in letter.message
        assert "limit of 3 s; last postponed for quota" in letter.message
