"""Pipeline runs belong to their user: a job of one user cannot touch another user's run."""

from __future__ import annotations

import uuid

import pytest

import jobsys
from jobsys.errors import RunMismatchError
from jobsys.pipeline.schedule import sync_job
from jobsys.store import Status
from jobsys.store.status import RunStatus
from jobsys.store.sync import SyncStore
from tests.conftest import Env, StartWorkers
from tests.support.wait import wait_until

pytestmark = pytest.mark.integration


def test_another_users_run_cannot_be_stepped_counted_or_finished(jobsys_env: Env) -> None:
    # Given user B's running run
    sync = SyncStore(jobsys_env.store)
    run_id, started = sync.start_run("user-b", full=False)
    assert started
    follow_up = sync_job(jobsys_env.runtime)

    # When user A records a step, counts one, or fails or finishes it
    attempts = [
        lambda: sync.step("user-a", run_id, "extract", contacts=1),
        lambda: sync.count_step("user-a", run_id, "normalize", "done", 1),
        lambda: sync.finish_run("user-a", run_id, RunStatus.FAILED, "x", follow_up=follow_up),
        lambda: sync.finish_run("user-a", run_id, RunStatus.SUCCEEDED, follow_up=follow_up),
    ]
    for attempt in attempts:
        with pytest.raises(RunMismatchError) as raised:
            attempt()
        # Then each is refused, naming the run and the user
        assert str(run_id) in str(raised.value) and "'user-a'" in str(raised.value)
        assert raised.value.retryable is False

    # And B's run is untouched: still running, no step recorded
    run = sync.get_run(run_id)
    assert run is not None
    assert (run["status"], run["steps"], run["error"]) == ("running", {}, None)
    # And a run id nobody has is refused the same way
    with pytest.raises(RunMismatchError):
        sync.step("user-b", uuid.uuid4(), "extract")
    # While B itself still records and finishes its run
    sync.step("user-b", run_id, "extract", contacts=2)
    assert not sync.finish_run("user-b", run_id, RunStatus.SUCCEEDED, follow_up=follow_up)
    run = sync.get_run(run_id)
    assert run is not None
    assert (run["status"], run["steps"]) == ("succeeded", {"extract": {"contacts": 2}})
    # (finishing an ended run of one's own is not an error: it did nothing)
    assert not sync.finish_run("user-b", run_id, RunStatus.FAILED, follow_up=follow_up)


def test_a_step_job_naming_another_users_run_is_dead_lettered_at_once(
    jobsys_env: Env, start_workers: StartWorkers
) -> None:
    # Given user B's running run
    sync = SyncStore(jobsys_env.store)
    run_id, _ = sync.start_run("user-b", full=False)

    # When user A's pipeline steps name B's run in their payload
    payload = {"run_id": str(run_id)}
    planned = jobsys.enqueue("sync.plan", user_id="user-a", payload=payload)
    counted = jobsys.enqueue("sync.normalize", user_id="user-a", payload=payload)
    start_workers(1)

    # Then each is dead-lettered at its first attempt, naming the run and the user
    for result in (planned, counted):
        job_id = uuid.UUID(result.id)
        job = wait_until(lambda j=job_id: jobsys_env.finished(j), timeout=60, what="the step")
        assert (job.status, job.attempt) == (Status.DEAD, 1)
        letter = jobsys_env.store.dead_letter_of(job_id)
        assert letter is not None
        assert (letter.reason, letter.exc_type, letter.retryable) == (
            "run_mismatch",
            "RunMismatchError",
            False,
        )
        assert str(run_id) in letter.message and "'user-a'" in letter.message
    # And B's run is still running with nothing recorded on it
    run = sync.get_run(run_id)
    assert run is not None
    assert (run["status"], run["steps"]) == ("running", {})
