"""Guards around Google, end to end: real workers, the real client, the emulator, Redis.

Scenarios: two workers share one user's quota; an outage trips the provider
breaker and one trial closes it; a revoked token opens only that user's
breaker; the batch size rises and falls (asserted as a sequence); a Redis
restart in the middle of a sync loses nothing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from jobsys import Runtime, enqueue
from jobsys.config import Settings
from jobsys.connectors.google import gmail
from jobsys.guards.breaker import breaker_states
from jobsys.pipeline import ingest
from jobsys.pipeline.google import session
from jobsys.store import Status
from tests.conftest import Env, StartWorkers
from tests.integration.pipeline_support import (
    Pipeline,
    assert_matches_truth,
    pipeline_factory,  # noqa: F401  (fixture)
)
from tests.support.wait import wait_until

pytestmark = pytest.mark.integration
MakePipeline = Callable[..., Pipeline]


def quota_env(units_per_second: float, burst: float) -> dict[str, str]:
    """The guards' per-user Gmail limit, set to the emulator's."""
    return {
        "JOBSYS_GMAIL_USER_UNITS_PER_SECOND": str(units_per_second),
        "JOBSYS_GMAIL_USER_BURST_UNITS": str(burst),
    }


def gmail_counts(p: Pipeline, email: str) -> tuple[int, int, int]:
    """(requests, answered 429, units charged) of the user's Gmail calls."""
    per_method = p.emulator.stats()["users"].get(email, {})
    gm = [c for m, c in per_method.items() if m.startswith("gmail.")]
    return (
        sum(c["requests"] for c in gm),
        sum(c["throttled"] for c in gm),
        sum(c["units"] for c in gm),
    )


def states(client: redis.Redis) -> dict[str, Any]:
    return {b.name: b for b in breaker_states(client)}


def test_two_workers_syncing_one_user_share_one_quota_budget(
    jobsys_env: Env,
    start_workers: StartWorkers,
    pipeline_factory: MakePipeline,  # noqa: F811
) -> None:
    # Given one user whose Gmail quota is 100 units/s (burst 200) at the emulator,
    # the same limit in jobsys, and three single-process workers: one for each of the
    # user's three ingestion jobs (the pipeline's two and the extra one), so the two
    # Gmail ingestions never wait for the Calendar one to free a worker
    rate, burst = 100, 200
    p = pipeline_factory(
        users=1,
        messages_per_user=150,
        events_per_user=4,
        gmail_units_per_second=rate,
        gmail_burst_units=burst,
    )
    # A batch of 40 messages.get (200 units) needs the whole burst free; while the
    # other ingestion keeps spending, it may wait past the default 10 s for that
    # (the limiter does not queue callers) on a loaded machine: let it wait here
    # rather than be postponed, which would restart it after the first one ended.
    env = {
        **p.worker_env,
        **quota_env(rate, burst),
        "JOBSYS_INGEST_USER_CONCURRENCY": "3",
        "JOBSYS_QUOTA_MAX_WAIT": "60",
    }
    start_workers(3, concurrency=1, env=env)
    ((email, user_id),) = p.users.items()

    # When the user's full sync runs, and a second full Gmail ingestion of the same
    # user runs beside it on the other worker (both spend the one budget); its per-user
    # limit is read where it is enqueued, so here too with the workers' setting
    run_id = p.start(user_id, full=True)
    here = Runtime(Settings.from_variables({**jobsys_env.environ, **env}))
    try:
        step = {"run_id": str(run_id), "full": True}
        extra = enqueue("sync.ingest_gmail", user_id=user_id, payload=step, runtime=here).job_id
    finally:
        here.close()
    run = p.wait_run(run_id)
    assert p.finished_job(extra).status is Status.SUCCEEDED

    # Then the emulator saw the quota respected: at most 1% of requests answered 429
    requests, throttled, charged = gmail_counts(p, email)
    assert throttled <= 0.01 * requests, (throttled, requests)
    # And both ingestions ran at once, on the two workers
    jobs = [j for j in jobsys_env.store.list_jobs(limit=100) if j.kind == "sync.ingest_gmail"]
    assert len(jobs) == 2 and len({j.worker for j in jobs}) == 2
    assert all(j.started_at and j.finished_at for j in jobs)
    first, second = sorted(jobs, key=lambda j: j.started_at or 0)
    assert second.started_at and first.finished_at and second.started_at < first.finished_at
    start = min(j.started_at for j in jobs if j.started_at)
    end = max(j.finished_at for j in jobs if j.finished_at)
    # And together they took no longer than the units they needed / the rate, + 10%;
    # no shorter than the quota allows either (the budget was what bounded them)
    took = (end - start).total_seconds()
    assert took <= charged / rate * 1.1, (took, charged)
    assert took >= (charged - burst) / rate * 0.9, (took, charged)
    # And the sync itself is right
    assert run["status"] == "succeeded", run
    assert_matches_truth(p, email)


def test_an_outage_trips_the_provider_breaker_and_one_trial_closes_it(
    jobsys_env: Env,
    start_workers: StartWorkers,
    pipeline_factory: MakePipeline,  # noqa: F811
) -> None:
    # Given two users, two workers, and a provider breaker that opens after 3
    # failures in a row and tries again after 4 s
    p = pipeline_factory(users=2, messages_per_user=20, events_per_user=6)
    env = {**p.worker_env, "JOBSYS_BREAKER_FAIL_MAX": "3", "JOBSYS_BREAKER_RESET_TIMEOUT": "4"}
    start_workers(2, env=env)

    # When the emulator answers every API request 503 for 3 s while every user syncs
    samples: list[tuple[float, int]] = []
    with sampling(p, samples):
        p.emulator.set_faults(outage_seconds=3)
        runs = p.run_all(full=True)

    # Then the breaker went open -> half-open -> closed, opened by 3 failures
    history = list(reversed(states(jobsys_env.redis)["google"].history))
    path = [h["state"] for h in history]
    path = [s for i, s in enumerate(path) if i == 0 or s != path[i - 1]]
    assert path == ["open", "half-open", "closed"], history
    opened = next(h for h in history if h["state"] == "open")
    trial = next(h for h in history if h["state"] == "half-open")
    assert opened["failures"] >= 3
    # And no call reached the emulator between its opening and the one trial,
    # which came only after the reset timeout (pybreaker keeps whole seconds)
    assert trial["at"] - opened["at"] >= 3.0
    quiet = [n for t, n in samples if opened["at"] + 0.3 <= t <= trial["at"] - 0.05]
    assert len(quiet) > 20 and len(set(quiet)) == 1, quiet
    # And exactly one caller made the trial
    assert [h["state"] for h in history].count("half-open") == 1
    # And every pipeline completed after the outage, with the truth, nothing dead
    for email in p.users:
        assert runs[email]["status"] == "succeeded", runs[email]
        assert_matches_truth(p, email)
    assert jobsys_env.store.list_dead_letters() == []


def test_a_revoked_token_opens_only_that_users_breaker(
    jobsys_env: Env,
    start_workers: StartWorkers,
    pipeline_factory: MakePipeline,  # noqa: F811
) -> None:
    # Given three users, one of whom revoked jobsys's access
    p = pipeline_factory(users=3, messages_per_user=10, events_per_user=4)
    start_workers(2, env=p.worker_env)
    revoked, *others = list(p.users)
    p.emulator.revoke(revoked)

    # When every user syncs
    runs = p.run_all(full=True)

    # Then that user's breaker is open, every other breaker closed without failures
    found = states(jobsys_env.redis)
    assert found[f"google:user:{p.users[revoked]}"].state == "open"
    for email in others:
        mine = found[f"google:user:{p.users[email]}"]
        assert (mine.state, mine.failures) == ("closed", 0)
        assert runs[email]["status"] == "succeeded"
    assert (found["google"].state, found["google"].failures) == ("closed", 0)
    assert runs[revoked]["status"] == "failed"


@pytest.fixture
def in_process(jobsys_env: Env) -> Iterator[Callable[[Pipeline, dict[str, str]], None]]:
    """Point this process's pipeline (settings, guards) at a pipeline's emulator."""

    def point(p: Pipeline, env: dict[str, str]) -> None:
        jobsys_env.reconfigure(**p.worker_env, **env)

    yield point


def test_the_batch_size_rises_when_clean_and_halves_on_429s(
    jobsys_env: Env,
    pipeline_factory: MakePipeline,  # noqa: F811
    in_process: Callable[[Pipeline, dict[str, str]], None],
) -> None:
    # Given a user with 700 messages, a generous quota, and batches of 10..100 growing
    # by 10 (the latency rule is the unit tests'; here any latency lets them grow)
    p = pipeline_factory(
        users=1,
        messages_per_user=700,
        events_per_user=1,
        gmail_units_per_second=5000,
        gmail_burst_units=10000,
    )
    in_process(p, {**quota_env(5000, 10000), "JOBSYS_BATCH_LATENCY_TARGET": "60"})
    ((email, user_id),) = p.users.items()
    google = session(jobsys_env.runtime, user_id)
    try:
        fetch_twice(p, google, email, user_id)
    finally:
        google.gmail.close()
        google.calendar.close()


def fetch_twice(p: Pipeline, google: Any, email: str, user_id: str) -> None:
    ids = [ref.id for ref in gmail.list_message_ids(google.gmail, guard=google.guard)]
    assert len(ids) == 700
    sync = p.sync

    # When every message is fetched from a clean emulator
    ingest.fetch_messages(sync, google, user_id, ids)

    # Then each batch was 10 larger than the last, up to 100 (the last is what was left)
    sizes = p.emulator.stats()["batches"][email]
    assert sizes == [10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 100, 50]

    # When the next 300 are fetched while the emulator answers 3 parts with 429
    p.emulator.reset_stats()
    p.emulator.set_faults(throttle_next=3)
    ingest.fetch_messages(sync, google, user_id, ids[:300])

    # Then the batch after the throttled one was half as large, and grew again;
    # the 3 throttled messages were fetched again, first, after their Retry-After
    sizes = p.emulator.stats()["batches"][email]
    assert sizes == [100, 50, 60, 70, 23]
    gets = p.emulator.stats()["users"][email]["gmail.users.messages.get"]
    assert (gets["requests"], gets["errors"]) == (303, 3)
    assert len(sync.known_message_ids(user_id)) == 700


def test_a_redis_restart_mid_sync_loses_nothing_and_the_guards_recover(
    jobsys_env: Env,
    start_workers: StartWorkers,
    pipeline_factory: MakePipeline,  # noqa: F811
) -> None:
    # Given three users whose quota makes a full sync take several seconds
    rate, burst = 200, 400
    p = pipeline_factory(
        users=3,
        messages_per_user=300,
        events_per_user=6,
        gmail_units_per_second=rate,
        gmail_burst_units=burst,
    )
    env = {**p.worker_env, **quota_env(rate, burst), "JOBSYS_PIPELINE_REPAIR_AFTER": "8"}
    start_workers(2, env=env)
    started = {email: p.start(uid, full=True) for email, uid in p.users.items()}

    # When, in the middle of ingestion, Redis restarts as its clients see it (no
    # persistence): every key gone, scripts forgotten, connections cut, and the
    # server unresponsive for 2 s
    wait_until(
        lambda: jobsys_env.count_rows("raw_messages") >= 100,
        timeout=60,
        what="ingestion to be under way",
        interval=0.1,
    )
    assert jobsys_env.count_rows("raw_messages") < 600
    restart_redis(jobsys_env.broker_url)

    # Then the guards are soon back in Redis, sharing state again
    wait_until(
        lambda: any(jobsys_env.redis.scan_iter("jobsys:rl:gmail-user:*")),
        timeout=10,
        what="the rate limiter to be back in Redis",
        interval=0.05,
    )

    # And every run still completes with exactly the truth, nothing dead or duplicated
    for email, run_id in started.items():
        run = p.wait_run(run_id, timeout=180)
        assert run["status"] == "succeeded", run
        assert_matches_truth(p, email)
    assert p.duplicates() == {}
    assert jobsys_env.store.list_dead_letters() == []
    assert states(jobsys_env.redis)["google"].state == "closed"


def restart_redis(url: str) -> None:
    admin = redis.Redis.from_url(url)
    admin.flushdb()
    admin.script_flush()
    admin.client_kill_filter(_type="normal", skipme=True)
    admin.client_pause(2000)
    admin.close()


class sampling:
    """Record (time, API requests the emulator answered) every 50 ms."""

    def __init__(self, p: Pipeline, samples: list[tuple[float, int]]) -> None:
        self._p, self._samples = p, samples
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            users = self._p.emulator.stats()["users"]
            total = sum(c["requests"] for per in users.values() for c in per.values())
            self._samples.append((time.time(), total))
            self._stop.wait(0.05)

    def __enter__(self) -> None:
        self._thread.start()

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
