"""A user's Google services, built from their encrypted credentials."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from typing import Any

from jobsys.config import Settings
from jobsys.connectors.google.clients import (
    UNGUARDED,
    Guard,
    RefreshedToken,
    build_calendar,
    build_gmail,
    gmail_batch_uri,
    make_credentials,
)
from jobsys.connectors.google.errors import AuthError
from jobsys.engine.runtime import Runtime
from jobsys.errors import ConfigError, JobError, JobNotFoundError
from jobsys.pipeline.guarding import BatchSizer, GoogleGuard, guards
from jobsys.pipeline.traced import traced
from jobsys.pipeline.transient import Persistent
from jobsys.store.tokens import TokenCipher
from jobsys.store.users import Credential, UserStore

PROVIDER = "google"


class UnusableCredentials(JobError):
    """The user's credential is missing, or no configured ``APP_ENCRYPTION_KEY`` decrypts it.

    Permanent until an operator acts (stores tokens, fixes the key): the user
    is parked at the first attempt rather than retried.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message, reason="credentials", retryable=False)


@dataclasses.dataclass(frozen=True)
class Session:
    gmail: Any
    calendar: Any
    batch_uri: str
    guard: Guard
    batches: BatchSizer
    transient_tries: int = 1  # tries of a batch part answered 5xx (see ``transient``)


def cipher(settings: Settings) -> TokenCipher:
    key = settings.encryption_key
    return TokenCipher(key.get_secret_value() if key else None)


def session(rt: Runtime, user_id: str) -> Session:
    """Gmail and Calendar for ``user_id``; a refreshed token is stored encrypted.

    Raises:
        JobError: the user's credentials are known to be invalid (reason ``auth``).
        UnusableCredentials: none is stored, or the key cannot decrypt it.
    """
    settings, users = rt.settings, UserStore(rt.postgres)
    stored = _credential(users, user_id)
    try:
        tokens = cipher(settings)
        access = tokens.decrypt(stored.token)
        refresh = tokens.decrypt(stored.refresh_token) if stored.refresh_token else None
    except ConfigError as e:
        raise UnusableCredentials(str(e)) from e

    def keep(fresh: RefreshedToken) -> None:
        users.save_credential(
            user_id,
            PROVIDER,
            token=tokens.encrypt(fresh.token),
            refresh_token=None,
            expiry=fresh.expiry,
        )

    creds = make_credentials(
        access,
        refresh,
        client_id=settings.google_client_id,
        client_secret=settings.google_client_secret.get_secret_value(),
        token_uri=settings.google_token_uri,
        on_refresh=keep,
    )
    endpoint = settings.google_api_endpoint
    shared = guards(rt) if settings.guards else None
    tries = settings.google_transient_tries
    return Session(
        build_gmail(creds, endpoint=endpoint),
        build_calendar(creds, endpoint=endpoint),
        gmail_batch_uri(endpoint),
        Persistent(traced(GoogleGuard(shared, user_id) if shared else UNGUARDED), tries),
        BatchSizer(shared.batches if shared else None, user_id),
        tries,
    )


def _credential(users: UserStore, user_id: str) -> Credential:
    try:
        stored = users.credential(user_id, PROVIDER)
    except JobNotFoundError as e:
        raise UnusableCredentials(str(e)) from e
    if stored.status != "valid":
        raise JobError(
            f"credentials invalid: {stored.status_reason}", reason="auth", retryable=False
        )
    return stored


@contextlib.contextmanager
def parking_on_auth_failure(rt: Runtime, user_id: str) -> Iterator[None]:
    """An auth failure parks the user (credentials invalid, user paused), then propagates.

    So does a credential that is missing or that the key cannot decrypt; the
    credential itself is not marked invalid then (the fault may be the key's).
    """
    try:
        yield
    except AuthError as e:
        UserStore(rt.postgres).park(user_id, PROVIDER, str(e))
        raise
    except UnusableCredentials as e:
        UserStore(rt.postgres).park(user_id, PROVIDER, str(e), invalidate=False)
        raise
