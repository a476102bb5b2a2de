"""The engine's seams with real workers: hooks across processes, results from PostgreSQL,
cancel and revoke, unknown kinds, direct calls, and what a retry costs the database."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from celery import signals
from celery.exceptions import Retry

import jobsys
from jobsys import JobCancelled, JobContext, JobDeadError, PayloadError, Status, job
from jobsys.config import Settings
from jobsys.engine.executor import execute
from jobsys.engine.runtime import Runtime, using
from jobsys.store import Store
from tests.conftest import Env, StartWorkers
from tests.support import kinds
from tests.support.querylog import Recording, verbs
from tests.support.wait import wait_until

pytestmark = pytest.mark.integration
HOOKED = {"JOBSYS_TEST_HOOKS": "1"}


@job(kind="test.only_here")
def only_here(ctx: JobContext) -> None:
    """Registered in the test process only: no worker knows this kind."""


def test_a_hook_sees_every_transition_of_a_job_that_retries_twice_then_succeeds(
    jobsys_env: Env, start_workers: StartWorkers
) -> None:
    # Given two worker nodes whose runtimes carry a recording hook, and the same hook here
    start_workers(2, concurrency=1, env=HOOKED)
    jobsys_env.runtime.hooks.add(kinds.RecordingHook())

    # When a job that fails twice is enqueued
    result = kinds.flaky.delay("user-1", key="hooked", failures=2)
    assert result.get(timeout=60) == {"calls": 3}

    # Then the hook saw each step, in order, from dispatch to success
    events = kinds.hook_events(jobsys_env.redis, result.job_id)
    assert [e for _, e in events] == [
        "dispatch:admit",
        "claim:1",
        "run:1",
        "record:retried:1",
        "dispatch:admit",
        "claim:2",
        "run:2",
        "record:retried:2",
        "dispatch:admit",
        "claim:3",
        "run:3",
        "record:succeeded:3",
    ]
    # And everything happened in worker processes: a node's promoter admitted the job,
    # and each retry when its backoff was over
    assert all(pid != os.getpid() for pid, _ in events)


def test_results_read_the_job_row(jobsys_env: Env, start_workers: StartWorkers) -> None:
    # Given results of jobs enqueued three ways before any worker runs
    echoed = kinds.echo.delay("user-1", value=7)
    queued = jobsys.enqueue("test.echo", user_id="user-2", payload={"value": 8})
    (bulk,) = jobsys.enqueue_many("test.echo", [("user-3", {"value": 9})])
    assert [r.status for r in (echoed, queued, bulk)] == ["PENDING"] * 3
    assert not echoed.ready()

    # When a worker runs them
    start_workers(1)

    # Then get() returns what each handler returned, and the state is the row's
    assert echoed.get(timeout=30) == {"echo": 7, "attempt": 1}
    assert queued.get(timeout=30) == {"echo": 8, "attempt": 1}
    assert bulk.get(timeout=30) == {"echo": 9, "attempt": 1}
    assert (echoed.status, echoed.ready(), echoed.successful()) == ("SUCCESS", True, True)
    assert echoed.result == {"echo": 7, "attempt": 1}
    assert jobsys.get_job(echoed.id).status is Status.SUCCEEDED


def test_get_raises_a_dead_jobs_error(jobsys_env: Env, start_workers: StartWorkers) -> None:
    # Given a job whose handler keeps failing, out of its 3 attempts
    jobsys_env.redis.set("doomed:broken", 1)
    result = kinds.broken.delay("user-1", key="doomed")
    start_workers(1)

    # When its result is waited for
    with pytest.raises(JobDeadError) as raised:
        result.get(timeout=60)

    # Then the error is the dead job's, with its dead letter
    (letter,) = jobsys_env.store.list_dead_letters()
    assert raised.value.exc_type == "RuntimeError"
    assert raised.value.reason == "bug"
    assert raised.value.dead_letter == letter.id
    assert "still broken on attempt 3" in str(raised.value)
    assert (result.status, result.failed()) == ("FAILURE", True)
    assert isinstance(result.result, JobDeadError)


def _started(env: Env, key: str) -> bool:
    return env.redis.llen(f"{key}:started") > 0


def test_jobsys_cancel_stops_a_running_job_at_its_next_heartbeat(
    jobsys_env: Env, start_workers: StartWorkers
) -> None:
    # Given a running job that heartbeats every 50 ms for 30 s
    start_workers(1)
    result = kinds.patient.delay("user-1", key="cancel-me", seconds=30)
    wait_until(lambda: _started(jobsys_env, "cancel-me"), timeout=30, what="the job to start")

    # When it is cancelled from the command line
    done = jobsys_env.cli("cancel", result.id)
    assert done.returncode == 0, done.stderr
    assert "cancel requested" in done.stdout

    # Then it stops as cancelled, on its first attempt, without finishing its work
    job = wait_until(lambda: jobsys_env.finished(result.job_id), timeout=15, what="the stop")
    assert (job.status, job.attempt) == (Status.CANCELLED, 1)
    assert jobsys_env.redis.get("cancel-me:finished") is None
    assert result.status == "REVOKED"
    with pytest.raises(JobCancelled):
        result.get(timeout=1)


def test_a_celery_revoke_stops_a_running_job_and_cancels_a_queued_one(
    jobsys_env: Env, start_workers: StartWorkers
) -> None:
    # Given a one-process worker running a long job, and a second job queued behind it
    start_workers(1, concurrency=1)
    running = kinds.patient.delay("user-1", key="first", seconds=30)
    wait_until(lambda: _started(jobsys_env, "first"), timeout=30, what="the first job to start")
    queued = kinds.patient.delay("user-2", key="second", seconds=1)

    # When Flower's Revoke button is pressed for each (it broadcasts Celery's revoke)
    jobsys.app.control.revoke(queued.id)
    wait_until(
        lambda: jobsys_env.store.get_job(queued.job_id).status is Status.CANCELLED,
        timeout=15,
        what="the queued job to be cancelled",
    )
    jobsys.app.control.revoke(running.id)

    # Then the running job stops at its next heartbeat, and the queued one never starts
    job = wait_until(lambda: jobsys_env.finished(running.job_id), timeout=15, what="the stop")
    assert job.status is Status.CANCELLED
    assert jobsys_env.redis.get("first:finished") is None
    wait_until(
        lambda: jobsys_env.queue_length() == 0 and jobsys_env.unacked() == 0,
        timeout=15,
        what="the revoked message to be consumed",
    )
    assert not _started(jobsys_env, "second")
    assert jobsys_env.store.get_job(queued.job_id).status is Status.CANCELLED


def test_a_job_whose_kind_no_worker_knows_is_dead_lettered_after_bounded_deliveries(
    jobsys_env: Env, start_workers: StartWorkers
) -> None:
    # Given a worker that does not import the module defining a kind
    (node,) = start_workers(1)

    # When a job of that kind is enqueued
    result = only_here.delay("user-1")

    # Then after three deliveries it is dead, with reason unknown_kind naming the worker
    job = wait_until(lambda: jobsys_env.finished(result.job_id), timeout=30, what="the burial")
    assert job.status is Status.DEAD
    (letter,) = jobsys_env.store.list_dead_letters()
    assert (letter.job_id, letter.reason, letter.retryable) == (
        result.job_id,
        "unknown_kind",
        False,
    )
    assert node.node in letter.message
    assert [a["reason"] for a in letter.attempts] == ["unknown_kind"] * 3
    assert job.attempt == 0  # no attempt ran
    with pytest.raises(JobDeadError, match="unknown_kind"):
        result.get(timeout=1)


def test_calling_a_job_task_runs_its_handler_as_a_plain_function(jobsys_env: Env) -> None:
    # When a job's task is called like a function
    got = kinds.echo("user-1", value=3)

    # Then the handler ran with a validated payload, and nothing was stored or published
    assert got == {"echo": 3, "attempt": 1}
    assert jobsys_env.count_rows("jobs") == 0
    assert jobsys_env.queue_length() == 0
    with pytest.raises(PayloadError, match="failures"):
        kinds.flaky("user-1", key="k", failures="many")


def test_a_retry_issues_no_insert_and_no_select(jobsys_env: Env) -> None:
    # Given a runtime whose store records every statement, and a job that fails once
    store = Store(jobsys_env.database_url, pool_size=1, connection_factory=Recording)
    durable: list[str] = []
    sa.event.listen(store.durable, "before_cursor_execute", lambda *a: durable.append(a[2]))
    settings = Settings.from_variables(jobsys_env.environ)
    with using(Runtime(settings, store=store)) as rt:
        result = jobsys.enqueue("test.flaky", user_id="user-1", payload={"key": "k", "failures": 1})
        # (promoted out of the backlog, as a node's promoter would before publishing it)
        assert [r["id"] for r in store.promote("default", 1).rows] == [result.job_id]
        Recording.sent.clear()
        durable.clear()

        # When its first attempt runs in this process, as a worker would run it
        kinds.flaky.push_request(
            id=result.id, hostname="here@test", kwargs={"key": "k", "failures": 1}
        )
        try:
            with pytest.raises(Retry):
                execute(rt, kinds.flaky, kinds.flaky.spec, "user-1")
        finally:
            kinds.flaky.pop_request()
    store.dispose()

    # Then the claim and the requeue were the only statements: no INSERT of a job, no
    # SELECT of one (the requeue is one statement that also joins the user's fair share)
    assert verbs() == ["UPDATE", "WITH"]
    assert durable == []
    job = jobsys_env.store.get_job(result.job_id)
    assert (job.status, job.attempt, len(job.errors)) == (Status.QUEUED, 1, 1)
    # And the retry waits in the backlog, with no message on the broker
    assert not jobsys_env.store.dispatched(result.job_id)
    assert jobsys_env.queue_length() == 0


def test_a_lost_child_and_a_canvas_publish_through_the_dispatcher(
    jobsys_env: Env, start_workers: StartWorkers
) -> None:
    # Given a worker whose runtime records dispatches
    start_workers(1, concurrency=2, env=HOOKED)

    # When a job kills its own process every attempt, and a chain of jobs runs
    poison = kinds.exits.delay("user-1", key="poison")
    chained = (kinds.echo.si("user-1", value=1) | kinds.echo.si("user-1", value=2)).apply_async()
    wait_until(lambda: jobsys_env.finished(poison.job_id), timeout=40, what="the poison job")
    second = uuid.UUID(chained.id)
    wait_until(lambda: jobsys_env.finished(second), timeout=30, what="the chain")

    # Then the main process recorded the lost child's attempts, and admission published
    # each retry through the dispatcher
    events = [e for _, e in kinds.hook_events(jobsys_env.redis, poison.job_id)]
    assert events.count("record:retried:1") + events.count("record:retried:2") == 2
    assert events.count("dispatch:admit") == 3  # the first publish, then attempts 2 and 3
    # And the chain's second step was dispatched as a canvas member by the worker
    assert [e for _, e in kinds.hook_events(jobsys_env.redis, second)][:1] == ["dispatch:canvas"]


def test_jobs_of_a_run_are_found_through_the_run_index(jobsys_env: Env) -> None:
    # Given the sweeper's query for a run's jobs
    sql = (
        "EXPLAIN SELECT id, kind, status, finished_at FROM jobs"
        " WHERE user_id = 'u' AND payload ->> 'run_id' = 'r' AND payload ? 'run_id'"
    )
    with jobsys_env.store.durable.connect() as conn:
        conn.exec_driver_sql("SET enable_seqscan = off")
        plan = "\n".join(r[0] for r in conn.exec_driver_sql(sql))
        run_indexes = [
            r[0]
            for r in conn.exec_driver_sql(
                "SELECT indexname FROM pg_indexes WHERE indexdef LIKE '%%run_id%%'"
            )
        ]

    # Then the plan reads the run index of the user's partition
    assert "jobs_run_idx" in run_indexes
    assert any(name in plan for name in run_indexes if name != "jobs_run_idx"), plan


MY_JOBS = """
from jobsys import JobContext, job


@job(kind="mine.hello")
def hello(ctx: JobContext) -> str:
    return "hello"
"""


def test_jobsys_enqueue_imports_a_module_from_the_current_directory(
    jobsys_env: Env, tmp_path: Path
) -> None:
    # Given a module defining a kind in the directory the command runs in
    (tmp_path / "my_cwd_jobs.py").write_text(MY_JOBS)

    # When `jobsys enqueue --import` names it, as `celery -I` would
    done = jobsys_env.cli(
        "enqueue", "mine.hello", "--user", "u1", "--import", "my_cwd_jobs", cwd=tmp_path
    )

    # Then the kind is found and the job stored
    assert done.returncode == 0, done.stderr
    job = jobsys_env.store.get_job(uuid.UUID(done.stdout.strip()))
    assert (job.kind, job.user_id, job.status) == ("mine.hello", "u1", Status.QUEUED)


def test_a_client_script_finds_kinds_through_jobsys_imports(
    jobsys_env: Env, tmp_path: Path
) -> None:
    # Given a module of kinds, and a script that only imports jobsys and enqueues by name
    (tmp_path / "my_env_jobs.py").write_text(MY_JOBS)
    script = "import jobsys\nprint(jobsys.enqueue('mine.hello', user_id='u2').id)\n"
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBSYS_")}
    env.update(jobsys_env.environ, JOBSYS_IMPORTS="my_env_jobs", PYTHONPATH=str(tmp_path))

    # When it runs with JOBSYS_IMPORTS naming the module
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )

    # Then the kind was found and the job stored
    assert done.returncode == 0, done.stderr
    job = jobsys_env.store.get_job(uuid.UUID(done.stdout.strip()))
    assert (job.kind, job.user_id) == ("mine.hello", "u2")


def test_celery_publish_signals_fire_for_a_single_dispatch(jobsys_env: Env) -> None:
    # Given receivers of Celery's publish signals
    seen: list[tuple[str, str]] = []

    def before(headers: dict[str, Any] | None = None, **_: Any) -> None:
        seen.append(("before", str((headers or {}).get("id"))))

    def after(headers: dict[str, Any] | None = None, **_: Any) -> None:
        seen.append(("after", str((headers or {}).get("id"))))

    signals.before_task_publish.connect(before, weak=False)
    signals.after_task_publish.connect(after, weak=False)
    try:
        # When a job is published at once (applied with one of Celery's own options)
        result = kinds.echo.apply_async(("user-1",), {"value": 1}, expires=600)
    finally:
        signals.before_task_publish.disconnect(before)
        signals.after_task_publish.disconnect(after)

    # Then both fired for its message
    assert seen == [("before", result.id), ("after", result.id)]
