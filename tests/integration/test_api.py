"""The HTTP API on real PostgreSQL and Redis: jobs, tokens, scoping, errors, pages, DLQ, runs."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.engine import make_url

from jobsys import enqueue_many
from jobsys.config import Settings
from jobsys.engine.runtime import Runtime
from jobsys.interfaces.api import create_app
from jobsys.interfaces.api.auth import TokenCache
from jobsys.store.api_tokens import TokenStore
from jobsys.store.sync import SyncStore
from jobsys.store.users import UserStore
from tests.contract.base import dead
from tests.integration.api_support import Api
from tests.support.wait import wait_until


def _audit(api: Api) -> list[dict[str, Any]]:
    sql = sa.text("SELECT actor, action, job_id, user_id FROM audit_events ORDER BY id")
    with api.env.store.transaction() as conn:
        return [dict(r) for r in conn.execute(sql).mappings()]


def test_a_user_token_enqueues_for_its_own_user_with_an_audit_event(api: Api) -> None:
    # Given Ann's token
    # When she posts a job
    answer = api.as_a("POST", "/api/jobs", json={"kind": "test.echo", "payload": {"value": 3}})
    # Then it is created for her, queued, and the audit log names her token
    assert answer.status_code == 201, answer.text
    job_id = answer.json()["id"]
    assert answer.json()["status"] == "queued"
    job = api.env.store.get_job(uuid.UUID(job_id))
    assert (job.user_id, job.kind, job.payload) == (api.a.id, "test.echo", {"value": 3})
    token_id = TokenStore(api.env.store).list()[1].id
    assert {
        "actor": f"token:{token_id}:ann-app",
        "action": "job.created",
        "job_id": job.id,
        "user_id": api.a.id,
    } in _audit(api)
    # And she reads it back, with its attempts' errors and result
    shown = api.as_a("GET", f"/api/jobs/{job_id}").json()
    assert (shown["id"], shown["status"], shown["errors"]) == (job_id, "queued", [])


def test_bad_fields_are_named_and_nothing_is_stored(api: Api) -> None:
    cases = [
        ({"kind": "test.echo", "priority": 12}, "body.priority"),
        ({"kind": "test.echo", "colour": "red"}, "body.colour"),
        ({"payload": {}}, "body.kind"),
        ({"kind": "test.echo", "delay": -1}, "body.delay"),
        ({"kind": "no.such.kind"}, "kind"),
        ({"kind": "test.stamp", "payload": {"key": ""}}, "payload"),
    ]
    for body, field in cases:
        answer = api.as_a("POST", "/api/jobs", json=body)
        assert answer.status_code == 422, (body, answer.text)
        error = answer.json()["error"]
        assert error["field"] == field, (body, error)
        assert error["message"] and "Traceback" not in answer.text
    assert api.env.store.list_jobs() == []


def test_text_postgresql_cannot_store_is_refused_not_a_server_error(api: Api) -> None:
    answer = api.as_a(
        "POST", "/api/jobs", json={"kind": "test.echo", "payload": {"value": "a\u0000b"}}
    )
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["field"] == "payload"
    nul_user = api.admin("GET", "/api/jobs", params={"user": "a\x00b"})
    assert nul_user.status_code == 422
    assert api.env.store.list_jobs() == []


def test_a_user_token_may_not_enqueue_pipeline_steps_or_urgent_jobs(api: Api) -> None:
    run = {"run_id": str(uuid.uuid4())}
    step = api.as_a("POST", "/api/jobs", json={"kind": "sync.process", "payload": run})
    assert (step.status_code, step.json()["error"]["field"]) == (422, "kind")
    urgent = api.as_a("POST", "/api/jobs", json={"kind": "test.echo", "priority": 8})
    assert (urgent.status_code, urgent.json()["error"]["field"]) == (422, "priority")
    assert (
        api.as_a("POST", "/api/jobs", json={"kind": "test.echo", "priority": 7}).status_code == 201
    )
    body = {"kind": "test.echo", "priority": 9, "user_id": api.a.id}
    assert api.admin("POST", "/api/jobs", json=body).status_code == 201
    assert len(api.env.store.list_jobs()) == 2


def test_missing_unknown_and_revoked_tokens_are_refused(api: Api) -> None:
    assert api.call("GET", "/api/jobs", None).status_code == 401
    wrong = api.call("GET", "/api/jobs", "jobsys_not-a-token")
    assert wrong.status_code == 401
    assert wrong.json()["error"]["type"] == "unauthenticated"
    assert wrong.headers["WWW-Authenticate"] == "Bearer"
    # When Bob's token is revoked, his next request is refused
    bob = next(t for t in TokenStore(api.env.store).list() if t.name == "bob-app")
    assert api.as_b("GET", "/api/jobs").status_code == 200
    TokenStore(api.env.store).revoke(bob.id)
    assert api.as_b("GET", "/api/jobs").status_code == 401


def test_a_cached_token_is_refused_once_its_cache_entry_expires(api: Api) -> None:
    # Given a cache that trusts a checked token for a moment
    api.client.app.state.tokens = TokenCache(0.5)
    assert api.as_b("GET", "/api/jobs").status_code == 200
    # When the token is revoked, it is refused as soon as the entry expires
    bob = next(t for t in TokenStore(api.env.store).list() if t.name == "bob-app")
    TokenStore(api.env.store).revoke(bob.id)
    wait_until(
        lambda: api.as_b("GET", "/api/jobs").status_code == 401,
        timeout=10,
        what="the revoked token to be refused",
    )


def test_a_user_token_never_reaches_another_users_rows(api: Api) -> None:
    # Given a job, a dead letter and a run of Bob's
    bob_job = api.admin("POST", "/api/jobs", json={"kind": "test.echo", "user_id": api.b.id})
    bob_job_id = bob_job.json()["id"]
    _, letter = dead(api.env.store, user_id=api.b.id)
    run_id, _ = SyncStore(api.env.store).start_run(api.b.id, full=False)
    api.as_a("POST", "/api/jobs", json={"kind": "test.echo"})
    # Then every path given one of Bob's ids answers Ann 404, as for no row at all
    for method, path in [
        ("GET", f"/api/jobs/{bob_job_id}"),
        ("POST", f"/api/jobs/{bob_job_id}/cancel"),
        ("GET", f"/api/dlq/{letter}"),
        ("POST", f"/api/dlq/{letter}/retry"),
        ("GET", f"/api/runs/{run_id}"),
        ("GET", f"/api/users/{api.b.id}/runs"),
        ("POST", f"/api/users/{api.b.id}/sync"),
        ("POST", f"/api/users/{api.b.email}/sync"),
    ]:
        answer = api.as_a(method, path)
        assert answer.status_code == 404, (method, path, answer.text)
        assert answer.json()["error"]["type"] == "not_found"
    # And no listing holds Bob's rows, even when she asks for them
    bobs = f"?user={api.b.id}"
    for path in ["/api/jobs", f"/api/jobs{bobs}", "/api/dlq", f"/api/dlq{bobs}"]:
        items = api.as_a("GET", path).json()["items"]
        assert all(i["user_id"] == api.a.id for i in items), path
    assert api.as_a("GET", "/api/jobs").json()["items"] != []
    # And Bob's job was not cancelled, his letter not retried
    assert api.env.store.get_job(uuid.UUID(bob_job_id)).status.value == "queued"
    assert api.env.store.get_dead_letter(letter).retried_at is None


def test_admin_only_calls_refuse_a_user_token(api: Api) -> None:
    for method, path in [
        ("POST", "/api/jobs/runner"),
        ("GET", "/api/workers"),
        ("GET", "/api/breakers"),
    ]:
        answer = api.as_a(method, path)
        assert answer.status_code == 403, (path, answer.text)
        assert api.admin(method, path).status_code == 200, path
    # A user token enqueues for its own user only; an admin token must name one
    other = api.as_a("POST", "/api/jobs", json={"kind": "test.echo", "user_id": api.b.id})
    assert (other.status_code, other.json()["error"]["field"]) == (403, "user_id")
    nobody = api.admin("POST", "/api/jobs", json={"kind": "test.echo"})
    assert (nobody.status_code, nobody.json()["error"]["field"]) == (422, "user_id")


def test_over_quota_is_429_with_retry_after(api: Api) -> None:
    # Given room for two queued jobs of Ann's
    api.env.store.set_limits(api.a.id, {"max_queued": 2})
    for _ in range(2):
        assert api.as_a("POST", "/api/jobs", json={"kind": "test.echo"}).status_code == 201
    refused = api.as_a("POST", "/api/jobs", json={"kind": "test.echo"})
    assert refused.status_code == 429
    assert refused.json()["error"]["type"] == "quota_exceeded"
    assert int(refused.headers["Retry-After"]) >= 1
    assert len(api.env.store.list_jobs(user_id=api.a.id)) == 2


def test_pages_walk_every_job_once_newest_first(api: Api) -> None:
    made = [
        api.as_a("POST", "/api/jobs", json={"kind": "test.echo", "payload": {"value": i}})
        for i in range(7)
    ]
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = api.as_a("GET", "/api/jobs", params=params).json()
        seen += [i["id"] for i in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(m.json()["id"] for m in made)
    assert pages == 3
    created = [api.env.store.get_job(uuid.UUID(i)).created_at for i in seen]
    assert created == sorted(created, reverse=True)
    bad = api.as_a("GET", "/api/jobs", params={"cursor": "not-a-cursor"})
    assert (bad.status_code, bad.json()["error"]["field"]) == (422, "cursor")


def test_pages_break_ties_of_one_instant_by_id(api: Api) -> None:
    # Given seven jobs stored in one statement (one created_at)
    made = enqueue_many("test.echo", [(api.a.id, {"value": i}) for i in range(7)])
    seen = [i["id"] for i in _pages(api, "/api/jobs", limit=3)]
    assert sorted(seen) == sorted(r.id for r in made)
    assert seen == sorted(seen, key=uuid.UUID, reverse=True)
    # And dead letters page the same way
    letters = [dead(api.env.store, user_id=api.a.id)[1] for _ in range(5)]
    assert [d["id"] for d in _pages(api, "/api/dlq", limit=2)] == letters[::-1]


def test_an_admin_pages_every_users_jobs_of_every_kind_newest_first(api: Api) -> None:
    # Given jobs of two users and three kinds, some stored in one statement (one instant)
    made = [r.id for r in enqueue_many("test.echo", [(api.a.id, {"value": i}) for i in range(4)])]
    made += [r.id for r in enqueue_many("test.noop", [(api.b.id, {}) for _ in range(3)])]
    stamp = {"kind": "test.stamp", "payload": {"key": "k", "tag": "t"}}
    made += [api.as_b("POST", "/api/jobs", json=stamp).json()["id"]]
    made += [api.as_a("POST", "/api/jobs", json={"kind": "test.echo"}).json()["id"]]
    api.as_a("POST", f"/api/jobs/{made[-1]}/cancel")

    # When an admin pages through every user's jobs, two at a time
    seen = [i["id"] for i in _pages(api, "/api/jobs", limit=2, call=api.admin)]

    # Then each job comes once, newest first, ties of one instant in id order
    assert sorted(seen) == sorted(made)
    order = [(api.env.store.get_job(uuid.UUID(i)).created_at, uuid.UUID(i)) for i in seen]
    assert order == sorted(order, reverse=True)
    # And the CLI's listing is the same order; a status filter still applies across users
    assert [str(j.id) for j in api.env.store.list_jobs()] == seen
    assert [str(j.id) for j in api.env.store.list_jobs(limit=3)] == seen[:3]
    cancelled = api.admin("GET", "/api/jobs", params={"status": "cancelled"}).json()["items"]
    assert [i["id"] for i in cancelled] == [made[-1]]


def _pages(api: Api, path: str, *, limit: int, call: Any = None) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params = {"limit": limit, **({"cursor": cursor} if cursor else {})}
        page = (call or api.as_a)("GET", path, params=params).json()
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items


def test_cancel_a_queued_job(api: Api) -> None:
    job_id = api.as_a("POST", "/api/jobs", json={"kind": "test.echo"}).json()["id"]
    answer = api.as_a("POST", f"/api/jobs/{job_id}/cancel")
    assert answer.json() == {"id": job_id, "status": "cancelled"}
    cancels = [e for e in _audit(api) if e["job_id"] == uuid.UUID(job_id)]
    assert any(e["actor"].endswith(":ann-app") and "cancel" in e["action"] for e in cancels)
    again = api.as_a("POST", f"/api/jobs/{job_id}/cancel")
    assert (again.status_code, again.json()["error"]["type"]) == (409, "conflict")
    assert api.as_a("GET", f"/api/jobs/{uuid.uuid4()}").status_code == 404


def test_dead_letters_retried_one_by_one_and_by_filter(api: Api) -> None:
    store = api.env.store
    _, first = dead(store, user_id=api.a.id)
    _, second = dead(store, user_id=api.a.id, kind="unit.other")
    _, third = dead(store, user_id=api.a.id, kind="unit.other")
    _, bobs = dead(store, user_id=api.b.id, kind="unit.other")
    listed = api.as_a("GET", "/api/dlq").json()["items"]
    assert [d["id"] for d in listed] == [third, second, first]
    assert listed[0]["traceback"] is None  # a listing leaves tracebacks out
    assert api.as_a("GET", f"/api/dlq/{first}").json()["traceback"].startswith("Traceback")
    # One letter
    one = api.as_a("POST", f"/api/dlq/{first}/retry")
    assert one.status_code == 200
    again = api.as_a("POST", f"/api/dlq/{first}/retry")
    assert again.status_code == 409
    # By filter: Ann's token retries her 'unit.other' letters, never Bob's
    bulk = api.as_a("POST", "/api/dlq/retry", json={"kind": "unit.other"}).json()
    assert sorted(r["letter_id"] for r in bulk["retried"]) == sorted([second, third])
    assert store.get_dead_letter(bobs).retried_at is None
    retries = [e for e in _audit(api) if e["actor"].endswith(":ann-app")]
    assert len([e for e in retries if "retr" in e["action"] or "reviv" in e["action"]]) == 3
    # And the admin's bulk retry by reason takes Bob's too
    admin_bulk = api.admin("POST", "/api/dlq/retry", json={"reason": "bug"}).json()
    assert [r["letter_id"] for r in admin_bulk["retried"]] == [bobs]


def test_a_sync_request_and_the_users_runs(api: Api) -> None:
    asked = api.as_a("POST", f"/api/users/{api.a.email}/sync", json={"full": True})
    assert asked.status_code == 202, asked.text
    body = asked.json()
    assert (body["user_id"], body["full"], body["running_run"]) == (api.a.id, True, None)
    job = api.env.store.get_job(uuid.UUID(body["job_id"]))
    assert (job.kind, job.user_id) == ("sync.user", api.a.id)
    assert ("sync.requested", api.a.id) in [(e["action"], e["user_id"]) for e in _audit(api)]
    # A run with a step shows its steps and its jobs' states
    sync = SyncStore(api.env.store)
    run_id, _ = sync.start_run(api.a.id, full=True)
    sync.step(api.a.id, run_id, "ingest", pages=2)
    listed = api.as_a("GET", f"/api/users/{api.a.id}/runs").json()["items"]
    assert [r["id"] for r in listed] == [str(run_id)]
    shown = api.as_a("GET", f"/api/runs/{run_id}").json()
    assert shown["status"] == "running" and "ingest" in shown["steps"]
    assert shown["jobs"] == []
    # A paused user's sync is refused with the reason
    UserStore(api.env.store).park(api.a.id, "google", "token revoked")
    paused = api.as_a("POST", f"/api/users/{api.a.id}/sync")
    assert (paused.status_code, paused.json()["error"]["type"]) == (409, "paused")


def test_the_runner_enqueues_each_due_user_once_when_called_twice_at_once(api: Api) -> None:
    # Given due users over several of the scheduler's batches (5 users each)
    users = UserStore(api.env.store)
    for n in range(30):
        users.add(f"user{n}@example.com")
    variables = {**api.env.environ, "JOBSYS_SCHEDULE_BATCH": "5"}
    app = create_app(Runtime(Settings.from_variables(variables)))
    # When two crons call the runner at the same moment
    with TestClient(app) as client:
        auth = {"Authorization": f"Bearer {api.admin_token}"}
        start = threading.Barrier(2)

        def call(_: int) -> Any:
            start.wait()
            return client.post("/api/jobs/runner", headers=auth)

        with ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(call, range(2)))
    # Then between them every due user got one sync
    assert [a.status_code for a in answers] == [200, 200]
    jobs = [j for a in answers for j in a.json()["jobs"]]
    assert len(jobs) == 32
    assert sorted(j["user_id"] for j in jobs) == sorted(u.id for u in users.list())
    assert len(api.env.store.list_jobs(kind="sync.user", limit=1000)) == 32
    assert "schedule.ticked" in [e["action"] for e in _audit(api)]


def test_health_and_readiness(api: Api) -> None:
    assert api.call("GET", "/healthz", None).json() == {"status": "ok"}
    ready = api.call("GET", "/readyz", None)
    assert ready.status_code == 200, ready.text
    assert ready.json() == {"ready": True, "checks": {"postgres": "ok", "redis": "ok"}}


def test_readiness_names_a_database_behind_the_migrations(api: Api) -> None:
    with api.env.store.transaction() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '0008'"))
    ready = api.call("GET", "/readyz", None)
    assert ready.status_code == 503
    assert "jobsys db upgrade" in ready.json()["checks"]["postgres"]


def test_an_unknown_path_has_the_one_error_shape(api: Api) -> None:
    answer = api.as_a("GET", "/api/nothing-here")
    assert answer.status_code == 404
    assert answer.json()["error"]["type"] == "not_found"


def test_user_tokens_read_through_the_api_database_login(api: Api) -> None:
    # Given a login of its own for the API's reads, a member of jobsys_api
    login = f"jobsys_api_login_{uuid.uuid4().hex[:8]}"
    with api.env.store.transaction() as conn:
        conn.execute(sa.text(f"CREATE ROLE {login} LOGIN IN ROLE jobsys_api"))
    url = make_url(api.env.database_url).set(username=login, password=None)
    variables = {**api.env.environ, "JOBSYS_API_DATABASE_URL": url.render_as_string(False)}
    rt = Runtime(Settings.from_variables(variables))
    app = create_app(rt)
    app.state.tokens = TokenCache(0)
    try:
        api.as_b("POST", "/api/jobs", json={"kind": "test.echo"})
        mine = api.as_a("POST", "/api/jobs", json={"kind": "test.echo"}).json()["id"]
        with TestClient(app) as client:
            auth = {"Authorization": f"Bearer {api.a_token}"}
            listed = client.get("/api/jobs", headers=auth).json()["items"]
            assert [j["id"] for j in listed] == [mine]
            assert client.get(f"/api/jobs/{mine}", headers=auth).status_code == 200
            with rt.state("api-database", lambda _: None).transaction() as conn:
                assert conn.execute(sa.text("SELECT current_user")).scalar() == login
    finally:
        rt.close()
        with api.env.store.transaction() as conn:
            conn.execute(sa.text(f"DROP ROLE {login}"))
