"""The HTTP API on a test's servers: two users, their tokens and an admin's, a client."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from jobsys.interfaces.api import create_app
from jobsys.interfaces.api.auth import TokenCache
from jobsys.store import roles
from jobsys.store.api_tokens import TokenStore
from jobsys.store.users import User, UserStore
from tests.conftest import Env


@dataclasses.dataclass
class Api:
    env: Env
    client: TestClient
    a: User
    b: User
    admin_token: str
    a_token: str
    b_token: str

    def call(self, method: str, path: str, token: str | None, **kw: Any) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return self.client.request(method, path, headers=headers, **kw)

    def admin(self, method: str, path: str, **kw: Any) -> Any:
        return self.call(method, path, self.admin_token, **kw)

    def as_a(self, method: str, path: str, **kw: Any) -> Any:
        return self.call(method, path, self.a_token, **kw)

    def as_b(self, method: str, path: str, **kw: Any) -> Any:
        return self.call(method, path, self.b_token, **kw)


@pytest.fixture
def api(jobsys_env: Env) -> Iterator[Api]:
    store = jobsys_env.runtime.postgres
    roles.create(store)  # user tokens read as jobsys_api, under row-level security
    users, tokens = UserStore(store), TokenStore(store)
    a, b = users.add("ann@example.com"), users.add("bob@example.com")
    _, admin = tokens.create(name="ops", user_id=None)
    _, a_token = tokens.create(name="ann-app", user_id=a.id)
    _, b_token = tokens.create(name="bob-app", user_id=b.id)
    # raise_server_exceptions=False: a 500 is answered as a client sees it.
    app = create_app(jobsys_env.runtime)
    app.state.tokens = TokenCache(0)  # every request checks its token: a revoke shows at once
    with TestClient(app, raise_server_exceptions=False) as client:
        yield Api(jobsys_env, client, a, b, admin, a_token, b_token)
