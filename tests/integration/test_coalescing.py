"""Coalescing: a burst of sync requests during a running sync makes one follow-up run."""

from __future__ import annotations

import json
import uuid

import pytest

import jobsys
from jobsys.pipeline.schedule import sync_job
from jobsys.store.status import RunStatus
from jobsys.store.sync import SyncStore
from tests.conftest import Env, StartWorkers
from tests.support.wait import wait_until

pytestmark = pytest.mark.integration


def sync_jobs(env: Env, user: str) -> list[tuple[str, dict[str, bool]]]:
    with env.store.durable.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT status::text, payload FROM jobs WHERE user_id = %(u)s AND kind = 'sync.user'"
            " ORDER BY created_at",
            {"u": user},
        ).all()
    return [(r[0], r[1]) for r in rows]


def runs_of(env: Env, user: str) -> int:
    with env.store.durable.connect() as conn:
        sql = "SELECT count(*) FROM pipeline_runs WHERE user_id = %(u)s"
        return int(conn.exec_driver_sql(sql, {"u": user}).scalar_one())


def test_a_burst_of_requests_during_a_running_sync_yields_one_follow_up_run(
    jobsys_env: Env, start_workers: StartWorkers
) -> None:
    import jobsys.tasks as tasks  # here, not at collection: it would finalize the app early

    # Given a user whose sync is running
    added = jobsys_env.cli("user", "add", "c@example.com", "--json")
    user = json.loads(added.stdout)["id"]
    sync = SyncStore(jobsys_env.store)
    run_id, started = sync.start_run(user, full=False)
    assert started

    # When 100 sync requests come, one of them full, while no worker runs
    burst = [tasks.sync_user.delay(user) for _ in range(99)] + [
        tasks.sync_user.delay(user, full=True)
    ]

    # Then they all joined one waiting job, which asks for a full sync
    assert len({r.id for r in burst}) == 1
    assert sync_jobs(jobsys_env, user) == [("queued", {"full": True})]

    # And when it runs, the running run is asked for a follow-up, and no run starts
    start_workers(1)
    assert burst[0].get(timeout=60) == {"run_id": str(run_id), "started": False, "follow_up": True}
    # (100 more while the run still runs change nothing more)
    more = [tasks.sync_user.delay(user) for _ in range(100)]
    for result in more:
        wait_until(lambda r=result: jobsys_env.finished(r.job_id), timeout=60, what="a request")
    assert runs_of(jobsys_env, user) == 1
    before = len(sync_jobs(jobsys_env, user))

    # When the run finishes
    assert sync.finish_run(
        user, run_id, RunStatus.SUCCEEDED, follow_up=sync_job(jobsys_env.runtime)
    )

    # Then exactly one follow-up sync was enqueued, full, and it starts one new run
    after = sync_jobs(jobsys_env, user)
    assert len(after) == before + 1 and after[-1][1] == {"full": True}
    wait_until(lambda: runs_of(jobsys_env, user) == 2, timeout=60, what="the follow-up run")
    assert sync.get_run(run_id) is not None
    assert not sync.finish_run(
        user, run_id, RunStatus.SUCCEEDED, follow_up=sync_job(jobsys_env.runtime)
    )


def test_a_sync_asked_by_email_and_by_id_is_one_sync_of_one_user(
    jobsys_env: Env, start_workers: StartWorkers
) -> None:
    import jobsys.tasks as tasks  # here, not at collection: it would finalize the app early

    # Given a user whose sync is running, asked for by id
    added = jobsys_env.cli("user", "add", "Dana@Example.com", "--json")
    user = json.loads(added.stdout)["id"]
    sync = SyncStore(jobsys_env.store)
    run_id, _ = sync.start_run(user, full=False)

    # When a sync is asked for by e-mail (in another case), then by id, in one batch too
    by_email = tasks.sync_user.delay("dana@example.COM", full=True)
    by_id = jobsys.enqueue("sync.user", user_id=user)
    (batched,) = jobsys.enqueue_many("sync.user", [("DANA@example.com", {})])

    # Then they are one job, of the user's id
    assert by_email.id == by_id.id == batched.id
    assert sync_jobs(jobsys_env, user) == [("queued", {"full": True})]
    assert jobsys.get_job(uuid.UUID(by_id.id)).user_id == user

    # And when it runs, it asks the running run for a follow-up: no second run starts
    start_workers(1)
    assert by_id.get(timeout=60) == {"run_id": str(run_id), "started": False, "follow_up": True}
    with jobsys_env.store.durable.connect() as conn:
        owners = conn.exec_driver_sql("SELECT user_id FROM pipeline_runs").scalars().all()
    assert owners == [user]


def test_a_sync_of_nobody_is_refused_at_enqueue(jobsys_env: Env) -> None:
    import jobsys.tasks as tasks  # here, not at collection: it would finalize the app early

    # When a sync is asked for a user id or e-mail nobody has
    for ident in ("u-nobody", "nobody@example.com"):
        with pytest.raises(jobsys.OptionError) as refused:
            tasks.sync_user.delay(ident)
        # Then the error names the user, and nothing is stored
        assert str(refused.value) == f"user_id must name a user (by id or e-mail), got {ident!r}"
    assert jobsys_env.count_rows("jobs") == 0
