"""Cross-tenant isolation over hypothesis-driven sequences of API calls.

Bob (his token, or an admin's for what only an admin makes) creates jobs, dead
letters and runs; Ann's token calls every endpoint with Bob's ids and lists with
any filter. Whatever the sequence: each of Bob's ids answers Ann 404, no listing
shows her a row of Bob's, and nothing of Bob's changes because of her calls.
"""

from __future__ import annotations

import uuid
from typing import Any, ClassVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    rule,
    run_state_machine_as_test,
)

from jobsys.store.sync import SyncStore
from tests.contract.base import dead
from tests.integration.api_support import Api

STATUSES = st.sampled_from([None, "queued", "running", "succeeded", "dead", "cancelled"])
KINDS = st.sampled_from([None, "test.echo", "unit.echo", "sync.user"])


class Tenants(RuleBasedStateMachine):
    api: ClassVar[Api]  # set by the test: the API on its servers
    bob_jobs = Bundle("bob_jobs")
    bob_letters = Bundle("bob_letters")
    bob_runs = Bundle("bob_runs")

    def __init__(self) -> None:
        super().__init__()
        self.bob_job_states: dict[str, str] = {}

    @rule(target=bob_jobs, value=st.integers(0, 9))
    def bob_enqueues(self, value: int) -> str:
        body = {"kind": "test.echo", "payload": {"value": value}}
        made = self.api.as_b("POST", "/api/jobs", json=body)
        assert made.status_code == 201, made.text
        job_id: str = made.json()["id"]
        self.bob_job_states[job_id] = "queued"
        return job_id

    @rule(target=bob_letters)
    def bob_has_a_dead_letter(self) -> int:
        return dead(self.api.env.store, user_id=self.api.b.id)[1]

    @rule(target=bob_runs)
    def bob_has_a_run(self) -> str:
        run_id, _ = SyncStore(self.api.env.store).start_run(self.api.b.id, full=False)
        return str(run_id)

    @rule(value=st.integers(0, 9))
    def ann_enqueues(self, value: int) -> None:
        body = {"kind": "test.echo", "payload": {"value": value}}
        assert self.api.as_a("POST", "/api/jobs", json=body).status_code == 201

    @rule(job_id=bob_jobs, action=st.sampled_from(["GET", "cancel"]))
    def ann_reaches_for_a_job(self, job_id: str, action: str) -> None:
        path = f"/api/jobs/{job_id}" + ("/cancel" if action == "cancel" else "")
        _not_found(self.api.as_a("GET" if action == "GET" else "POST", path))

    @rule(letter=bob_letters, retry=st.booleans())
    def ann_reaches_for_a_letter(self, letter: int, retry: bool) -> None:
        path = f"/api/dlq/{letter}" + ("/retry" if retry else "")
        _not_found(self.api.as_a("POST" if retry else "GET", path))

    @rule(run_id=bob_runs)
    def ann_reaches_for_a_run(self, run_id: str) -> None:
        _not_found(self.api.as_a("GET", f"/api/runs/{run_id}"))

    @rule(ident=st.sampled_from(["id", "email"]), what=st.sampled_from(["sync", "runs"]))
    def ann_reaches_for_the_user(self, ident: str, what: str) -> None:
        user = self.api.b.id if ident == "id" else self.api.b.email
        method = "POST" if what == "sync" else "GET"
        _not_found(self.api.as_a(method, f"/api/users/{user}/{what}"))

    @rule(status=STATUSES, kind=KINDS, ask_bob=st.booleans(), limit=st.integers(1, 5))
    def ann_lists_jobs(
        self, status: str | None, kind: str | None, ask_bob: bool, limit: int
    ) -> None:
        params = _params(
            status=status, kind=kind, limit=limit, user=self.api.b.id if ask_bob else None
        )
        _only(self.api.a.id, _walk(self.api, "/api/jobs", params))

    @rule(ask_bob=st.booleans(), reason=st.sampled_from([None, "bug", "other"]))
    def ann_lists_letters(self, ask_bob: bool, reason: str | None) -> None:
        params = _params(reason=reason, user=self.api.b.id if ask_bob else None, limit=3)
        _only(self.api.a.id, _walk(self.api, "/api/dlq", params))

    @rule(ask_bob=st.booleans())
    def ann_retries_letters_by_filter(self, ask_bob: bool) -> None:
        body = {"user_id": self.api.b.id} if ask_bob else {}
        answer = self.api.as_a("POST", "/api/dlq/retry", json=body).json()
        assert answer["retried"] == [] or not ask_bob
        for done in answer["retried"]:
            assert self.api.env.store.get_dead_letter(done["letter_id"]).user_id == self.api.a.id

    @invariant()
    def bobs_rows_are_untouched(self) -> None:
        for job_id, status in self.bob_job_states.items():
            assert self.api.env.store.get_job(uuid.UUID(job_id)).status.value == status
        with self.api.env.store.transaction() as conn:
            retried = conn.exec_driver_sql(
                "SELECT count(*) FROM dead_letters WHERE user_id = %(u)s"
                " AND retried_at IS NOT NULL",
                {"u": self.api.b.id},
            ).scalar_one()
        assert retried == 0


def test_a_user_token_never_reaches_another_users_rows(api: Api) -> None:
    Tenants.api = api
    run_state_machine_as_test(
        Tenants,
        settings=settings(
            max_examples=12,
            stateful_step_count=15,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        ),
    )


def _not_found(answer: Any) -> None:
    assert answer.status_code == 404, (answer.request.url, answer.text)
    assert answer.json()["error"]["type"] == "not_found"


def _params(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def _walk(api: Api, path: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Every item of every page."""
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        page = api.as_a("GET", path, params={**params, **({"cursor": cursor} if cursor else {})})
        assert page.status_code == 200, page.text
        items += page.json()["items"]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            return items


def _only(owner: str, items: list[dict[str, Any]]) -> None:
    assert {i["user_id"] for i in items} <= {owner}, items
