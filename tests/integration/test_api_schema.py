"""schemathesis against ``/openapi.json``: no server error, every response as the schema says.

Run with an admin token and with a user token, on a database holding a job, a
dead letter and a run of that user's (so generated ids sometimes hit a row).
"""

from __future__ import annotations

import os
from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from jobsys.store.sync import SyncStore
from tests.contract.base import dead
from tests.integration.api_support import Api

# The property: no server error, and every response as the schema says. Not
# "schema-valid data is accepted": a well-formed job of an unknown kind is still refused.
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
# Few examples per operation: the suite's budget; the property is the same at any count.
EXAMPLES = int(os.environ.get("JOBSYS_SCHEMA_EXAMPLES", "25"))


def _check_every_operation(api: Api, token: str) -> int:
    """Run each operation's generated cases; return how many cases ran."""
    api.as_a("POST", "/api/jobs", json={"kind": "test.echo"})
    dead(api.env.store, user_id=api.a.id)
    SyncStore(api.env.store).start_run(api.a.id, full=False)
    schema = schemathesis.openapi.from_asgi("/openapi.json", api.client.app)
    ran = 0
    for found in schema.get_all_operations():
        operation = found.ok()

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
        def check(case: Any) -> None:
            nonlocal ran
            ran += 1
            case.call_and_validate(headers={"Authorization": f"Bearer {token}"}, checks=CHECKS)

        check()
    return ran


def test_admin_token(api: Api) -> None:
    assert _check_every_operation(api, api.admin_token) > 100


def test_user_token(api: Api) -> None:
    assert _check_every_operation(api, api.a_token) > 100
