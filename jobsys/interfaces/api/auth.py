"""Who is calling: a bearer token, an admin's or one user's.

A user token sees and acts on its own user's rows only. Another user's row
answers 404, as a row that does not exist would: existence is not leaked. Its
reads (:func:`listing`) and its writes (:func:`writes`) run as ``jobsys_api``
for its user, so the database's row-level security holds it there too.
"""

from __future__ import annotations

import contextlib
import time
from contextlib import AbstractContextManager
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from jobsys.engine.runtime import Runtime
from jobsys.interfaces.api.errors import ApiError
from jobsys.store import tenancy
from jobsys.store.api_tokens import ApiToken, TokenStore, digest
from jobsys.store.gateway import Store
from jobsys.store.listing import Listing

_bearer = HTTPBearer(auto_error=False, description="a token from `jobsys token create`")


async def runtime_of(request: Request) -> Runtime:
    # async: a plain attribute read needs no trip through the thread pool.
    rt: Runtime = request.app.state.runtime
    return rt


RuntimeDep = Annotated[Runtime, Depends(runtime_of)]


class TokenCache:
    """Tokens authenticated in the last ``ttl`` seconds, by secret digest.

    Every request would otherwise pay a query; a revoked token is refused at the
    latest ``ttl`` seconds later (``JOBSYS_API_TOKEN_CACHE``; 0 asks every time).
    """

    def __init__(self, ttl: float, size: int = 10_000) -> None:
        self.ttl, self.size = ttl, size
        self._found: dict[bytes, tuple[float, ApiToken]] = {}

    def lookup(self, rt: Runtime, secret: str) -> ApiToken | None:
        key, now = digest(secret), time.monotonic()
        hit = self._found.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        token = TokenStore(rt.postgres).authenticate(secret)
        if token is not None and self.ttl > 0:
            if len(self._found) >= self.size:
                self._found.clear()  # bounded; a refill costs one query per token
            self._found[key] = (now + self.ttl, token)
        return token


async def principal(
    request: Request,
    rt: RuntimeDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> ApiToken:
    if credentials is None:
        raise ApiError(401, "unauthenticated", "an Authorization: Bearer token is required")
    cache: TokenCache = request.app.state.tokens
    # async: a cached token costs no trip through the thread pool; a miss (one
    # indexed query per token and cache period) blocks the loop briefly.
    token = cache.lookup(rt, credentials.credentials)
    if token is None:
        raise ApiError(401, "unauthenticated", "unknown or revoked token")
    return token


Caller = Annotated[ApiToken, Depends(principal)]


def admin(caller: Caller) -> ApiToken:
    if not caller.admin:
        raise ApiError(403, "forbidden", "this call needs an admin token")
    return caller


Admin = Annotated[ApiToken, Depends(admin)]


def listing(caller: ApiToken, rt: Runtime) -> Listing:
    """Reads for this caller: a user token's run under row-level security as its user,
    on ``JOBSYS_API_DATABASE_URL``'s login when it is set."""
    if caller.admin:
        return Listing(rt.postgres)
    return Listing(api_store(caller, rt), user_id=caller.user_id)


def writes(caller: ApiToken, rt: Runtime) -> AbstractContextManager[object]:
    """The block in which this caller writes: a user token's own rows are written as
    ``jobsys_api`` for its user, on the store its reads use, and commit together when
    the block ends (what follows a write runs after that); an admin token's cross-tenant."""
    if caller.admin:
        return contextlib.nullcontext()
    if caller.user_id is None:
        raise ApiError(403, "forbidden", "this token names no user")
    return tenancy.acting_as(api_store(caller, rt), caller.user_id)


def api_store(caller: ApiToken, rt: Runtime) -> Store:
    """Where this caller's reads and own-row writes go: ``JOBSYS_API_DATABASE_URL``'s
    login for a user token."""
    url = rt.settings.api_database_url
    if caller.admin or not url:
        return rt.postgres
    return rt.state(_API_STORE, lambda _: Store(url))


_API_STORE = "api-database"


def sees(caller: ApiToken, user_id: str) -> bool:
    return caller.admin or caller.user_id == user_id


def own(caller: ApiToken, user_id: str, what: str, ident: object) -> None:
    """Raise the 404 a missing row gives when the row is another user's."""
    if not sees(caller, user_id):
        raise ApiError(404, "not_found", f"no {what} with id {ident}")
