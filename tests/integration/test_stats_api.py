"""``GET /api/stats``: an admin token sees every user's figures; a user token its own only."""

from __future__ import annotations

import pytest

from tests.integration.api_support import (
    Api,
    api,  # noqa: F401  (fixture)
)
from tests.integration.stats_support import Run, Try, seed

pytestmark = pytest.mark.integration


def seed_two_users(given: Api) -> None:
    a, b = given.a.id, given.b.id
    runs = [
        Run(a, "succeeded", ago=60, took=10),
        Run(a, "failed", ago=120, took=20),
        Run(b, "succeeded", ago=3000, took=30),
    ]
    tries = [
        Try(a, "test.echo", "succeeded", took=10, cpu=1, wall=2, requests=4, units=20),
        Try(a, "test.echo", "dead", took=10, reason="bug", cpu=1, wall=2),
        Try(b, "test.flaky", "succeeded", took=500, cpu=3, wall=6, requests=9, units=45),
        Try(b, "test.flaky", "dead", took=5, reason="auth", cpu=1, wall=2),
    ]
    seed(given.env.store, runs, tries)


def test_an_admin_token_sees_every_users_figures(api: Api) -> None:  # noqa: F811
    seed_two_users(api)

    reply = api.admin("GET", "/api/stats", params={"since": "24h"})

    assert reply.status_code == 200, reply.text
    data = reply.json()
    users = {u["user_id"]: (u["runs"], u["success_rate"], u["fresh"]) for u in data["users"]}
    assert users == {api.a.id: (2, 0.5, True), api.b.id: (1, 1.0, False)}
    kinds = {k["kind"]: (k["jobs"], k["cpu_s_per_job"], k["units_per_job"]) for k in data["kinds"]}
    assert kinds == {"test.echo": (2, 1.0, 10.0), "test.flaky": (2, 2.0, 22.5)}
    assert data["fleet"]["jobs"] == 4
    assert data["fleet"]["dead_letter_rate"] == {"auth": 0.25, "bug": 0.25}


def test_a_user_token_sees_its_own_users_figures_only(api: Api) -> None:  # noqa: F811
    seed_two_users(api)

    # Its own user's runs, kinds and fleet figures
    mine = api.as_a("GET", "/api/stats").json()
    assert [u["user_id"] for u in mine["users"]] == [api.a.id]
    assert [(k["kind"], k["jobs"], k["sla_compliance"]) for k in mine["kinds"]] == [
        ("test.echo", 2, 0.5)
    ]
    assert mine["fleet"]["jobs"] == 2
    assert mine["fleet"]["dead_letter_rate"] == {"bug": 0.5}

    # Naming the other user gives nothing of theirs
    theirs = api.as_a("GET", "/api/stats", params={"user": api.b.id}).json()
    assert theirs["users"] == [] and theirs["kinds"] == []
    assert theirs["fleet"]["jobs"] == 0 and theirs["fleet"]["dead_letter_rate"] == {}

    # And the other token, the other user's only
    bobs = api.as_b("GET", "/api/stats").json()
    assert [u["user_id"] for u in bobs["users"]] == [api.b.id]
    assert [k["kind"] for k in bobs["kinds"]] == ["test.flaky"]


@pytest.mark.parametrize(
    ("params", "field"),
    [({"since": "banana"}, "since"), ({"since": "0m"}, "since"), ({"kind": "no.such"}, "kind")],
)
def test_bad_parameters_are_refused_with_one_clear_error(
    api: Api,  # noqa: F811
    params: dict[str, str],
    field: str,
) -> None:
    reply = api.admin("GET", "/api/stats", params=params)

    assert reply.status_code == 422
    error = reply.json()["error"]
    assert error.get("field") == field
    assert next(iter(params.values())) in error["message"]


def test_without_a_token_the_stats_are_refused(api: Api) -> None:  # noqa: F811
    assert api.call("GET", "/api/stats", None).status_code == 401
