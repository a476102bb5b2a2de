"""Sync pipeline, issue scenarios 7-8: a worker node lost mid-run, and concurrent syncs."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from jobsys import Status
from jobsys.tasks import sync_user
from tests.conftest import Env, StartWorkers
from tests.integration.pipeline_support import (
    Pipeline,
    assert_matches_truth,
    pipeline_factory,  # noqa: F401  (fixture)
)
from tests.support.wait import wait_until

pytestmark = pytest.mark.integration
MakePipeline = Callable[..., Pipeline]


def assert_all_match_truth(p: Pipeline) -> None:
    for email in p.users:
        assert_matches_truth(p, email)
    assert p.duplicates() == {}


def gmail_ingestion_running(env: Env, nodes: set[str]) -> tuple[uuid.UUID, str]:
    """Wait for a Gmail ingestion running on one of ``nodes``: its job id and node."""

    def running() -> tuple[uuid.UUID, str] | None:
        for job in env.store.list_jobs(status=Status.RUNNING, kind="sync.ingest_gmail"):
            if job.worker in nodes:
                return job.id, job.worker
        return None

    found = wait_until(running, timeout=60, what="Gmail ingestion to run")
    assert found is not None
    return found


def test_a_run_completes_when_the_node_running_its_ingestion_is_killed(
    jobsys_env: Env,
    start_workers: StartWorkers,
    pipeline_factory: MakePipeline,  # noqa: F811
) -> None:
    # Given two worker nodes, slow Google answers, and two users' syncs under way
    p = pipeline_factory(users=2, messages_per_user=40, events_per_user=6)
    p.emulator.set_faults(latency=1.0)
    env = {**p.worker_env, "JOBSYS_PIPELINE_REPAIR_AFTER": "3"}
    nodes = {w.node: w for w in start_workers(2, concurrency=1, env=env)}
    run_ids = {email: p.start(user_id, full=True) for email, user_id in p.users.items()}

    job_id, node = gmail_ingestion_running(jobsys_env, set(nodes))

    # When that node (main process and pool) is killed with SIGKILL mid-ingestion
    nodes.pop(node).kill_node()
    p.emulator.clear_faults()

    # Then both runs still succeed on the surviving node
    for email, run_id in run_ids.items():
        run = p.wait_run(run_id, timeout=150)
        assert run["status"] == "succeeded", (email, run)

    # And the killed attempt was recorded as lost and run again elsewhere
    job = jobsys_env.store.get_job(job_id)
    assert job.status is Status.SUCCEEDED
    assert [(e["reason"], e["worker"]) for e in job.errors][:1] == [("worker_lost", node)]
    (survivor,) = nodes
    assert job.worker == survivor

    # And every user's data equals the truth, once, with no job left dead
    assert_all_match_truth(p)
    assert jobsys_env.store.list_dead_letters() == []


def test_an_ingestion_killed_with_its_node_gives_its_users_key_to_the_next_attempt(
    jobsys_env: Env,
    start_workers: StartWorkers,
    pipeline_factory: MakePipeline,  # noqa: F811
) -> None:
    # Given one ingestion at a time per user (the ingestions' concurrency key), and a
    # user's Gmail ingestion holding that key on one of two nodes (Google slow)
    p = pipeline_factory(users=1, messages_per_user=40, events_per_user=6)
    p.emulator.set_faults(latency=1.0)
    env = {**p.worker_env, "JOBSYS_INGEST_USER_CONCURRENCY": "1"}
    nodes = {w.node: w for w in start_workers(2, concurrency=1, env=env)}
    ((email, user_id),) = p.users.items()
    run_id = p.start(user_id, full=True)

    job_id, node = gmail_ingestion_running(jobsys_env, set(nodes))

    # When that node is killed with SIGKILL: its row still says running, holding the key
    nodes.pop(node).kill_node()
    p.emulator.clear_faults()

    # Then the recovery of its attempt frees the key, the next attempt runs in the
    # run's chord, and the run succeeds
    run = p.wait_run(run_id, timeout=90)
    assert run["status"] == "succeeded", (email, run)
    job = jobsys_env.store.get_job(job_id)
    assert (job.status, job.attempt) == (Status.SUCCEEDED, 2)
    assert [e["reason"] for e in job.errors] == ["worker_lost"]
    # And the user's Calendar ingestion waited for the key in the backlog: it was
    # never postponed for want of a slot
    (calendar,) = jobsys_env.store.list_jobs(user_id=user_id, kind="sync.ingest_calendar")
    assert (calendar.status, calendar.attempt, calendar.postponements) == (Status.SUCCEEDED, 1, 0)
    assert_all_match_truth(p)


def test_a_run_whose_chord_the_broker_lost_is_resumed_without_the_long_wait(
    jobsys_env: Env,
    start_workers: StartWorkers,
    pipeline_factory: MakePipeline,  # noqa: F811
) -> None:
    # Given a resume of stalled runs only after 600 s of quiet, two nodes, and a run
    # whose Calendar ingestion is done while its (slow) Gmail ingestion still runs
    p = pipeline_factory(users=1, messages_per_user=40, events_per_user=6)
    p.emulator.set_faults(latency=1.0)
    env = {**p.worker_env, "JOBSYS_PIPELINE_REPAIR_AFTER": "600"}
    start_workers(2, concurrency=1, env=env)
    ((email, user_id),) = p.users.items()
    run_id = p.start(user_id, full=True)

    def halfway() -> bool:
        done = {j.kind: j.status for j in jobsys_env.store.list_jobs(user_id=user_id)}
        return (
            done.get("sync.ingest_calendar") is Status.SUCCEEDED
            and done.get("sync.ingest_gmail") is Status.RUNNING
        )

    wait_until(halfway, timeout=60, what="Calendar done while Gmail runs", interval=0.05)

    # When the broker loses everything, the chord's count of finished members with it
    jobsys_env.redis.flushdb()
    flushed = datetime.now(UTC)
    p.emulator.clear_faults()

    # Then the run is resumed and succeeds, long before 600 s of quiet
    run = p.wait_run(run_id, timeout=90)
    assert run["status"] == "succeeded", (email, run)
    (gmail,) = jobsys_env.store.list_jobs(user_id=user_id, kind="sync.ingest_gmail")
    assert gmail.finished_at is not None and gmail.finished_at > flushed  # after the flush
    plans = jobsys_env.store.list_jobs(user_id=user_id, kind="sync.plan")
    assert [j.status for j in plans] == [Status.SUCCEEDED]  # one plan: resumed, not doubled
    assert_all_match_truth(p)


def test_two_syncs_of_one_user_asked_at_once_make_one_run_and_duplicate_nothing(
    jobsys_env: Env,
    start_workers: StartWorkers,
    pipeline_factory: MakePipeline,  # noqa: F811
) -> None:
    # Given a user, and sync_user sent twice for it at once (once asking for a full sync)
    p = pipeline_factory(users=2, messages_per_user=20, events_per_user=6)
    p.emulator.set_faults(latency=0.3)
    email, user_id = next(iter(p.users.items()))
    requests = [
        uuid.UUID(sync_user.delay(user_id).id),
        uuid.UUID(sync_user.delay(user_id, full=True).id),
    ]

    # Then the second joined the first, still waiting, and made it a full sync
    assert requests[0] == requests[1]

    # When two workers run it
    start_workers(2, concurrency=2, env=p.worker_env)
    result = p.finished_job(requests[0]).result

    # Then it started one full run, and no follow-up run after it
    assert (result["started"], result["follow_up"]) == (True, False)
    run_id = uuid.UUID(result["run_id"])
    run = p.wait_run(run_id)
    assert (run["status"], run["full_sync"], run["follow_up"]) == ("succeeded", True, None)

    # And the run's steps ran once each
    kinds = Counter(j["kind"] for j in p.sync.jobs_of_run(user_id, run_id))
    assert kinds == {
        "sync.ingest_gmail": 1,
        "sync.ingest_calendar": 1,
        "sync.plan": 1,
        "sync.normalize": 1,
        "sync.extract": 1,
        "sync.process": 1,
    }

    # And the user's data equals the truth once, and derived rows were not doubled
    assert_matches_truth(p, email)
    assert p.duplicates() == {}
    contacts = [c["addr"] for c in p.sync.contacts(user_id)]
    assert len(contacts) == len(set(contacts))
    assert jobsys_env.store.list_dead_letters() == []

    # And a sync after the run ended starts a new run, still without duplicates
    second = p.run(user_id)
    assert second["id"] != run_id and second["status"] == "succeeded"
    assert p.duplicates() == {}
