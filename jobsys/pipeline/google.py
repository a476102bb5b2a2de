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
from jobsys.errors import JobError
from jobsys.pipeline.guarding import BatchSizer, GoogleGuard, guards
from jobsys.pipeline.transient import Persistent
from jobsys.store.tokens import TokenCipher
from jobsys.store.users import UserStore

PROVIDER = "google"


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
    """
    settings, users = rt.settings, UserStore(rt.postgres)
    tokens = cipher(settings)
    stored = users.credential(user_id, PROVIDER)
    if stored.status != "valid":
        raise JobError(
            f"credentials invalid: {stored.status_reason}", reason="auth", retryable=False
        )

    def keep(fresh: RefreshedToken) -> None:
        users.save_credential(
            user_id,
            PROVIDER,
            token=tokens.encrypt(fresh.token),
            refresh_token=None,
            expiry=fresh.expiry,
        )

    refresh = tokens.decrypt(stored.refresh_token) if stored.refresh_token else None
    creds = make_credentials(
        tokens.decrypt(stored.token),
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
        Persistent(GoogleGuard(shared, user_id) if shared else UNGUARDED, tries),
        BatchSizer(shared.batches if shared else None, user_id),
        tries,
    )


@contextlib.contextmanager
def parking_on_auth_failure(rt: Runtime, user_id: str) -> Iterator[None]:
    """An auth failure parks the user (credentials invalid, user paused), then propagates."""
    try:
        yield
    except AuthError as e:
        UserStore(rt.postgres).park(user_id, PROVIDER, str(e))
        raise
