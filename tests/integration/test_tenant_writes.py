"""A user token's writes run as ``jobsys_api`` for its user (``store/tenancy.py``).

The HTTP tests run the API on two logins: its main one may read every table and
write none, and its ``JOBSYS_API_DATABASE_URL`` one is a member of ``jobsys_api``.
A user token's enqueue, cancel, retry and sync then succeed only if their writes
went through the role, where the policies' WITH CHECK holds them to the user.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg2
import psycopg2.errors
import psycopg2.extensions
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.engine import make_url

from jobsys.config import Settings
from jobsys.engine.dispatch import Dispatch
from jobsys.engine.enqueue import new_job, spec_of
from jobsys.engine.hooks import Hook, Recorded
from jobsys.engine.runtime import Runtime
from jobsys.interfaces.api import create_app
from jobsys.interfaces.api.auth import TokenCache
from jobsys.store import NewJob, Status, Store, roles, tenancy
from tests.conftest import Env
from tests.contract.base import dead
from tests.integration.api_support import Api
from tests.support.querylog import Recording

A, B = "user-a", "user-b"


def _job(env: Env, user: str, value: int = 1) -> NewJob:
    rt = env.runtime
    return new_job(rt, spec_of(rt, "test.echo"), user, {"value": value})


def _jobs_of(env: Env, user: str) -> list[str]:
    return [str(j.id) for j in env.store.list_jobs(user_id=user)]


def _audit(env: Env) -> list[tuple[str, str | None]]:
    sql = sa.text("SELECT action, user_id FROM audit_events ORDER BY id")
    with env.store.transaction() as conn:
        return [(r[0], r[1]) for r in conn.execute(sql)]


# -- the seam ------------------------------------------------------------------


def test_a_scope_runs_as_the_api_role_for_its_user_and_then_lets_go(jobsys_env: Env) -> None:
    store = jobsys_env.runtime.postgres
    roles.create(store)
    asked = "SELECT current_user AS role, current_setting('jobsys.user_id', true) AS user_id"
    # When a statement runs in A's scope
    with tenancy.acting_as(store, A) as scope:
        inside = scope.one(asked, {})
    # Then it ran as jobsys_api for A; the same connection afterwards is the login again
    assert inside == {"role": roles.API_ROLE, "user_id": A}
    after = store.hot_durable.one(asked, {})
    assert after is not None and after["role"] != roles.API_ROLE and not after["user_id"]
    status = store.hot_durable.connection().info.transaction_status
    assert status == psycopg2.extensions.TRANSACTION_STATUS_IDLE


def test_an_enqueue_and_its_audit_event_are_one_commit_in_two_round_trips(
    jobsys_env: Env,
) -> None:
    # Given a store that records what it sends, as the API's
    roles.create(jobsys_env.store)
    api_store = Store(jobsys_env.database_url, pool_size=1, connection_factory=Recording)
    Recording.sent.clear()
    new = _job(jobsys_env, A)
    try:
        # When A's job and its audit event are written in A's scope (the engine's store
        # is asked: the scope takes its own-row statements)
        with tenancy.acting_as(api_store, A):
            jobsys_env.runtime.store.insert(new)
            jobsys_env.runtime.store.audit("token:1:a", "job.created", job_id=new.id, user_id=A)
    finally:
        api_store.dispose()
    # Then two queries went out: the role and the user with the insert, the event with
    # the one COMMIT
    first, second = Recording.sent
    assert first.startswith(b"BEGIN;\nSET LOCAL ROLE jobsys_api;\nSELECT set_config(")
    assert b"INSERT INTO jobs" in first and b"COMMIT" not in first
    assert b"INSERT INTO audit_events" in second and second.endswith(b";\nCOMMIT")
    assert _jobs_of(jobsys_env, A) == [str(new.id)]
    assert ("job.created", A) in _audit(jobsys_env)


def test_the_policies_refuse_another_users_rows_whatever_the_caller_asks(
    jobsys_env: Env,
) -> None:
    store, engine = jobsys_env.runtime.postgres, jobsys_env.runtime.store
    roles.create(store)
    bobs = _job(jobsys_env, B)
    engine.insert(bobs)
    bobs_dead, letter = dead(jobsys_env.store, user_id=B)
    # A job for B inserted in A's scope: refused by the insert's WITH CHECK
    with pytest.raises(psycopg2.errors.InsufficientPrivilege, match="row-level security"):
        with tenancy.acting_as(store, A):
            engine.insert(_job(jobsys_env, B))
    # A's own job whose audit event names B: the event is refused, and the job with it
    mine = _job(jobsys_env, A)
    with pytest.raises(psycopg2.errors.InsufficientPrivilege, match="row-level security"):
        with tenancy.acting_as(store, A):
            engine.insert(mine)
            engine.audit("token:1:a", "job.created", job_id=mine.id, user_id=B)
    assert _jobs_of(jobsys_env, A) == []
    # B's job and dead letter are out of reach: nothing to cancel, nothing to revive
    with tenancy.acting_as(store, A):
        assert engine.request_cancel(bobs.id, actor="token:1:a") is None
        assert engine.revive(jobsys_env.store.get_dead_letter(letter), actor="a") is None
    assert jobsys_env.store.get_job(bobs.id).status is Status.QUEUED
    assert jobsys_env.store.get_job(bobs_dead.id).status is Status.DEAD
    assert jobsys_env.store.get_dead_letter(letter).retried_at is None
    assert set(_jobs_of(jobsys_env, B)) == {str(bobs.id), str(bobs_dead.id)}
    assert [a for a in _audit(jobsys_env) if a[0] != "job.dead"] == []


def test_db_roles_brings_the_api_roles_grants_up_to_date(jobsys_env: Env) -> None:
    store = jobsys_env.store
    roles.create(store)
    assert roles.missing(store) == []
    # Given roles made before an enqueue needed the scheduling tables
    with store.transaction() as conn:
        conn.execute(sa.text(f"REVOKE ALL ON fair_users FROM {roles.API_ROLE}"))
    assert roles.missing(store) == [f"{roles.API_ROLE}'s grants"]
    # When `jobsys db roles` runs again (twice: it is idempotent)
    roles.create(store)
    roles.create(store)
    # Then nothing is missing, and --print gives the grants too
    assert roles.missing(store) == []
    assert f"GRANT SELECT ON fair_queues TO {roles.API_ROLE}" in roles.statements()


# -- the HTTP API on a main login that may write nothing ----------------------


@dataclasses.dataclass
class TenantApp:
    api: Api
    rt: Runtime
    client: TestClient

    def call(self, token: str, method: str, path: str, **kw: Any) -> Any:
        return self.client.request(method, path, headers={"Authorization": f"Bearer {token}"}, **kw)


MakeApp = Callable[..., TenantApp]


@pytest.fixture
def tenant_app(api: Api) -> Iterator[MakeApp]:
    suffix = uuid.uuid4().hex[:8]
    reader, member = f"jobsys_reader_{suffix}", f"jobsys_api_login_{suffix}"
    with api.env.store.transaction() as conn:
        conn.execute(sa.text(f"CREATE ROLE {member} LOGIN IN ROLE {roles.API_ROLE}"))
        conn.execute(sa.text(f"CREATE ROLE {reader} LOGIN"))
        conn.execute(sa.text(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {reader}"))
    url = make_url(api.env.database_url).set(password=None)
    made: list[Runtime] = []

    def make(**variables: str) -> TenantApp:
        rt = Runtime(
            Settings.from_variables(
                {
                    **api.env.environ,
                    "JOBSYS_DATABASE_URL": url.set(username=reader).render_as_string(False),
                    "JOBSYS_API_DATABASE_URL": url.set(username=member).render_as_string(False),
                    **variables,
                }
            )
        )
        made.append(rt)
        app = create_app(rt)
        app.state.tokens = TokenCache(0)
        return TenantApp(api, rt, TestClient(app, raise_server_exceptions=False))

    try:
        yield make
    finally:
        for rt in made:
            rt.close()
        with api.env.store.transaction() as conn:
            conn.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = ANY(:r)"
                ),
                {"r": [reader, member]},
            )
            conn.execute(sa.text(f"DROP OWNED BY {reader}"))
            conn.execute(sa.text(f"DROP ROLE {reader}"))
            conn.execute(sa.text(f"DROP ROLE {member}"))


def test_a_user_tokens_enqueue_is_written_as_the_api_role_only(tenant_app: MakeApp) -> None:
    app = tenant_app()
    api = app.api
    # Given the API's main login cannot write jobs, while its API login is in jobsys_api
    with pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
        with app.rt.postgres.transaction() as conn:
            conn.execute(sa.text("DELETE FROM audit_events"))
    # When Ann's token posts a job
    made = app.call(api.a_token, "POST", "/api/jobs", json={"kind": "test.echo"})
    # Then it is stored for her, with its audit event
    assert made.status_code == 201, made.text
    job_id = made.json()["id"]
    assert _jobs_of(api.env, api.a.id) == [job_id]
    assert ("job.created", api.a.id) in _audit(api.env)
    # And an admin token's enqueue is still the main login's, cross-tenant: here refused
    body = {"kind": "test.echo", "user_id": api.b.id}
    assert app.call(api.admin_token, "POST", "/api/jobs", json=body).status_code == 500


def test_a_user_token_cancels_retries_and_syncs_its_own_rows_under_the_role(
    tenant_app: MakeApp,
) -> None:
    app = tenant_app()
    api, store = app.api, app.api.env.store
    job_id = app.call(api.a_token, "POST", "/api/jobs", json={"kind": "test.echo"}).json()["id"]
    _, first = dead(store, user_id=api.a.id)
    _, second = dead(store, user_id=api.a.id, kind="unit.other")
    bobs_job, bobs_letter = dead(store, user_id=api.b.id)
    # Cancel, one retry, a bulk retry
    cancelled = app.call(api.a_token, "POST", f"/api/jobs/{job_id}/cancel")
    assert cancelled.json() == {"id": job_id, "status": "cancelled"}
    assert app.call(api.a_token, "POST", f"/api/dlq/{first}/retry").status_code == 200
    bulk = app.call(api.a_token, "POST", "/api/dlq/retry", json={}).json()
    assert [r["letter_id"] for r in bulk["retried"]] == [second]
    assert store.get_dead_letter(first).retried_at is not None
    # A sync requested twice: the second joins the first (a full sync wins)
    syncs = [
        app.call(api.a_token, "POST", f"/api/users/{api.a.id}/sync", json={"full": full})
        for full in (False, True)
    ]
    assert [s.status_code for s in syncs] == [202, 202], syncs[1].text
    assert syncs[0].json()["job_id"] == syncs[1].json()["job_id"]
    assert store.get_job(uuid.UUID(syncs[0].json()["job_id"])).payload == {"full": True}
    actions = [a for a, user in _audit(api.env) if user == api.a.id]
    for action in ("job.created", "job.cancel", "dlq.retry", "sync.requested"):
        assert action in actions
    assert actions.count("sync.requested") == 2
    # Bob's rows answer 404 and stay as they were
    for method, path in (
        ("POST", f"/api/jobs/{bobs_job.id}/cancel"),
        ("POST", f"/api/dlq/{bobs_letter}/retry"),
        ("POST", f"/api/users/{api.b.id}/sync"),
    ):
        answer = app.call(api.a_token, method, path)
        assert answer.status_code == 404, (path, answer.text)
    assert store.get_job(bobs_job.id).status is Status.DEAD
    assert store.get_dead_letter(bobs_letter).retried_at is None


def test_a_users_quota_is_checked_and_charged_under_the_role(tenant_app: MakeApp) -> None:
    app = tenant_app()
    api = app.api
    api.env.store.set_limits(api.a.id, {"max_per_hour": 1})
    body = {"kind": "test.echo"}
    assert app.call(api.a_token, "POST", "/api/jobs", json=body).status_code == 201
    over = app.call(api.a_token, "POST", "/api/jobs", json=body)
    assert over.status_code == 429, over.text
    assert len(_jobs_of(api.env, api.a.id)) == 1
    with api.env.store.transaction() as conn:
        charged = conn.execute(sa.text("SELECT user_id, n FROM quota_usage")).all()
    assert [tuple(r) for r in charged] == [(api.a.id, 1)]


class _Witness(Hook):
    """What a publish and an outcome's hooks see: the user's scope, and the job's row as
    another connection reads it (committed or not)."""

    def __init__(self, env: Env) -> None:
        self.env = env
        self.seen: list[tuple[str, bool, str | None]] = []

    def before_dispatch(self, dispatch: Dispatch) -> Dispatch:
        state = self.env.store.job_state(dispatch.job_id)
        status = state[0].value if state is not None else None
        self.seen.append(("dispatch", tenancy.current() is None, status))
        return dispatch

    def after_record(self, recorded: Recorded) -> None:
        status = self.env.store.get_job(recorded.job.id).status.value
        self.seen.append(("record", tenancy.current() is None, status))


def test_what_follows_a_write_runs_once_committed_and_outside_the_role(
    tenant_app: MakeApp,
) -> None:
    # Given the API with admission off (an enqueue publishes at once) and a witness hook
    app = tenant_app(JOBSYS_ADMISSION="false")
    api = app.api
    witness = _Witness(api.env)
    app.rt.hooks.add(witness)
    _, letter = dead(api.env.store, user_id=api.a.id)
    # When Ann enqueues, retries her dead letter and cancels the job (queued: no worker runs)
    made = app.call(api.a_token, "POST", "/api/jobs", json={"kind": "test.echo"})
    assert made.status_code == 201, made.text
    assert app.call(api.a_token, "POST", f"/api/dlq/{letter}/retry").status_code == 200
    job_id = made.json()["id"]
    assert app.call(api.a_token, "POST", f"/api/jobs/{job_id}/cancel").status_code == 200
    # Then each publish and the cancel's hooks ran after the commit, outside her scope
    assert witness.seen == [
        ("dispatch", True, "queued"),
        ("dispatch", True, "queued"),
        ("record", True, "cancelled"),
    ]
