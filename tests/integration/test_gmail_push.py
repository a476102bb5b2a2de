"""Gmail push: the emulator's notification on new mail starts an incremental sync that lands it;
a burst of notifications makes at most two runs. The API is served by uvicorn on loopback.
"""

from __future__ import annotations

import base64
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import httpx2 as httpx
import pytest
import uvicorn

from jobsys import enqueue
from jobsys.config import Settings
from jobsys.engine.runtime import Runtime
from jobsys.interfaces.api import create_app
from jobsys.store import Status
from jobsys.store.users import UserStore
from tests.conftest import Env, StartWorkers
from tests.integration.pipeline_support import (
    Pipeline,
    pipeline_factory,  # noqa: F401  (fixture)
    raw_message,
)
from tests.support.valkey import free_port
from tests.support.wait import wait_until

TOPIC = "projects/jobsys-test/topics/gmail"
TOKEN = "push-secret-0123456789"
MakePipeline = Callable[..., Pipeline]


@pytest.fixture
def push_api(jobsys_env: Env) -> Iterator[str]:
    """The HTTP API on this test's servers, with a push token, served on a free port."""
    rt = Runtime(Settings.from_variables({**jobsys_env.environ, "JOBSYS_PUSH_TOKEN": TOKEN}))
    port = free_port()
    config = uvicorn.Config(create_app(rt), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="api", daemon=True)
    thread.start()
    wait_until(lambda: server.started, timeout=30, what="the API to listen")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        rt.close()


def _watched(p: Pipeline, start_workers: StartWorkers, api: str) -> tuple[str, str]:
    """One user synced in full, its mailbox watched, the topic pushed to the API."""
    start_workers(2, env={**p.worker_env, "JOBSYS_GMAIL_PUSH_TOPIC": TOPIC})
    ((email, user_id),) = p.users.items()
    assert p.run(user_id, full=True)["status"] == "succeeded"
    p.emulator.subscribe(TOPIC, f"{api}/api/google/push?token={TOKEN}")
    watch = enqueue("google.watch", user_id=user_id, payload={})
    done = p.finished_job(uuid.UUID(watch.id))
    assert done.status is Status.SUCCEEDED, done.errors
    assert set(done.result) == {"historyId", "expiration"}
    return email, user_id


def _runs(p: Pipeline, user_id: str) -> list[dict[str, object]]:
    with p.env.store.durable.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT id, status, full_sync FROM pipeline_runs WHERE user_id = %(u)s"
            " ORDER BY created_at",
            {"u": user_id},
        ).mappings()
        return [dict(r) for r in rows]


def test_new_mail_is_pushed_and_lands_through_an_incremental_sync(
    jobsys_env: Env,
    start_workers: StartWorkers,
    pipeline_factory: MakePipeline,  # noqa: F811
    push_api: str,
) -> None:
    p = pipeline_factory(users=1, messages_per_user=5, events_per_user=2)
    email, user_id = _watched(p, start_workers, push_api)
    # When mail arrives
    began = time.monotonic()
    stored = p.emulator.add_message(email, raw_message(1, "peer1@other.example", email))
    # Then the notification's sync lands it
    wait_until(
        lambda: stored.id in {m["gmail_id"] for m in p.sync.messages(user_id)},
        timeout=60,
        what="the pushed message to land",
        interval=0.05,
    )
    print(f"push to landed: {time.monotonic() - began:.2f} s")
    assert p.emulator.world.push.delivered == 1
    runs = _runs(p, user_id)
    assert [r["full_sync"] for r in runs] == [True, False]


def test_a_burst_of_notifications_makes_at_most_two_runs(
    jobsys_env: Env,
    start_workers: StartWorkers,
    pipeline_factory: MakePipeline,  # noqa: F811
    push_api: str,
) -> None:
    p = pipeline_factory(users=1, messages_per_user=5, events_per_user=2)
    email, user_id = _watched(p, start_workers, push_api)
    before = len(_runs(p, user_id))
    # When 50 messages arrive at once, each pushing a notification
    added = [
        p.emulator.add_message(email, raw_message(n, f"peer{n}@other.example", email))
        for n in range(50)
    ]
    hub = p.emulator.world.push
    wait_until(lambda: hub.delivered + hub.failed == 50, timeout=60, what="50 deliveries")
    assert hub.failed == 0
    # Then, once every sync asked for is done, every message landed in at most two runs
    wait_until(lambda: _settled(p), timeout=120, what="the syncs to finish", interval=0.2)
    made = _runs(p, user_id)[before:]
    print(f"50 pushed changes made {len(made)} runs")
    assert 1 <= len(made) <= 2, made
    assert all(r["status"] == "succeeded" for r in made)
    landed = {m["gmail_id"] for m in p.sync.messages(user_id)}
    assert {m.id for m in added} <= landed


def _settled(p: Pipeline) -> bool:
    with p.env.store.durable.connect() as conn:
        busy = conn.exec_driver_sql(
            "SELECT (SELECT count(*) FROM jobs WHERE status IN ('queued', 'running'))"
            " + (SELECT count(*) FROM pipeline_runs WHERE status = 'running')"
        ).scalar_one()
    return busy == 0


def test_the_push_endpoint_refuses_a_wrong_token_and_a_malformed_body(
    jobsys_env: Env, push_api: str
) -> None:
    url = f"{push_api}/api/google/push"
    for token in ("?token=guess", "?token=", ""):
        wrong = httpx.post(f"{url}{token}", json={"message": {"data": ""}}, timeout=10)
        assert (wrong.status_code, wrong.json()["error"]["field"]) == (403, "token"), token
    big = httpx.post(f"{url}?token={TOKEN}", content=b"{" + b" " * 70_000 + b"}", timeout=10)
    assert big.status_code == 413
    bad = httpx.post(f"{url}?token={TOKEN}", json={"message": {"data": "!!"}}, timeout=10)
    assert (bad.status_code, bad.json()["error"]["field"]) == (422, "message.data")
    data = base64.b64encode(b'{"emailAddress": "nobody@example.com", "historyId": 1}').decode()
    unknown = httpx.post(f"{url}?token={TOKEN}", json={"message": {"data": data}}, timeout=10)
    assert unknown.json() == {"sync": None, "ignored": "unknown user"}
    # And a notification the user's cursor is already past asks for nothing
    ann = UserStore(jobsys_env.store).add("ann@example.com")
    with jobsys_env.store.transaction() as conn:
        conn.exec_driver_sql(
            "INSERT INTO sync_cursors (user_id, source, cursor) VALUES (%(u)s, 'gmail', '500')",
            {"u": ann.id},
        )
    data = base64.b64encode(b'{"emailAddress": "ann@example.com", "historyId": 499}').decode()
    old = httpx.post(f"{url}?token={TOKEN}", json={"message": {"data": data}}, timeout=10)
    assert old.json() == {"sync": None, "ignored": "already synced past that change"}
    assert jobsys_env.store.list_jobs() == []
