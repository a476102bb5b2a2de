"""Building Gmail and Calendar clients on google-api-python-client.

Nothing here stores tokens: a refreshed access token is handed to the
caller's ``on_refresh`` callback, which stores it (encrypted) where it
belongs. Every call in this package runs ``execute(num_retries=0)``:
retries are jobsys's, which honours Retry-After and charges quota.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar

import google_auth_httplib2  # type: ignore[import-untyped]
import httplib2  # type: ignore[import-untyped]
from google.auth.transport import Request
from google.oauth2.credentials import Credentials
from googleapiclient.discovery import build  # type: ignore[import-untyped]

from jobsys.connectors.google.errors import GoogleError, classify
from jobsys.connectors.google.usage import metered

GMAIL_SCOPES = ("https://www.googleapis.com/auth/gmail.readonly",)
CALENDAR_SCOPES = ("https://www.googleapis.com/auth/calendar.readonly",)
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"
GOOGLE_GMAIL_BATCH_URI = "https://gmail.googleapis.com/batch/gmail/v1"
# The client puts api_endpoint in place of rootUrl + servicePath, so the
# service path has to be part of the endpoint for Calendar.
_CALENDAR_SERVICE_PATH = "/calendar/v3/"

Service = Any  # googleapiclient.discovery.Resource, which ships no type information
T = TypeVar("T")


class Guard(Protocol):
    """What every Google call goes through: quota, breakers, and feedback from the answer."""

    def call(
        self,
        method: str,
        count: int,
        fn: Callable[[], T],
        *,
        part_errors: Callable[[T], Iterable[GoogleError]] | None = None,
    ) -> T:
        """Run ``fn``, which makes ``count`` calls of ``method`` in one HTTP request.

        ``part_errors`` lists the failures inside a successful answer (a batch's parts).
        """
        ...


class Unguarded:
    """Calls straight through: for tools and tests that must see Google's raw behaviour."""

    def call(
        self,
        method: str,
        count: int,
        fn: Callable[[], T],
        *,
        part_errors: Callable[[T], Iterable[GoogleError]] | None = None,
    ) -> T:
        return fn()


UNGUARDED = Unguarded()


@dataclass(frozen=True)
class RefreshedToken:
    """A new access token, for the caller to store."""

    token: str
    expiry: datetime | None


class _NotifyingCredentials(Credentials):
    """User credentials that report every successful refresh to a callback."""

    def __init__(
        self, *args: Any, on_refresh: Callable[[RefreshedToken], None] | None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]
        self._on_refresh = on_refresh

    def refresh(self, request: Request) -> None:
        super().refresh(request)  # type: ignore[no-untyped-call]
        if self._on_refresh is not None:
            self._on_refresh(RefreshedToken(str(self.token), self.expiry))


def make_credentials(
    token: str | None,
    refresh_token: str | None,
    *,
    client_id: str,
    client_secret: str,
    token_uri: str = GOOGLE_TOKEN_URI,
    on_refresh: Callable[[RefreshedToken], None] | None = None,
) -> Credentials:
    """Build OAuth user credentials that refresh through google-auth.

    Parameters:
        token: the current access token (None to refresh before the first call).
        refresh_token: the long-lived refresh token.
        client_id: the OAuth client id.
        client_secret: the OAuth client secret.
        token_uri: the token endpoint (the emulator's ``base_url + "/token"``).
        on_refresh: called with the new token after every successful refresh.

    Returns:
        Credentials to pass to :func:`build_gmail` / :func:`build_calendar`.
    """
    return _NotifyingCredentials(
        token,
        refresh_token=refresh_token,
        token_uri=token_uri,
        client_id=client_id,
        client_secret=client_secret,
        on_refresh=on_refresh,
    )


def build_gmail(
    credentials: Credentials, *, endpoint: str | None = None, timeout: float = 30.0
) -> Service:
    """Build a Gmail v1 service from the bundled discovery document.

    Parameters:
        credentials: from :func:`make_credentials`.
        endpoint: an API base URL (e.g. the emulator's); None for Google.
        timeout: socket timeout in seconds for each HTTP request.

    Raises:
        GoogleError: the service could not be built (classified).

    Returns:
        The Gmail service resource.
    """
    return _build("gmail", "v1", credentials, _root(endpoint, "/"), timeout)


def build_calendar(
    credentials: Credentials, *, endpoint: str | None = None, timeout: float = 30.0
) -> Service:
    """Build a Calendar v3 service from the bundled discovery document.

    Parameters:
        credentials: from :func:`make_credentials`.
        endpoint: an API base URL (e.g. the emulator's); None for Google.
        timeout: socket timeout in seconds for each HTTP request.

    Raises:
        GoogleError: the service could not be built (classified).

    Returns:
        The Calendar service resource.
    """
    return _build("calendar", "v3", credentials, _root(endpoint, _CALENDAR_SERVICE_PATH), timeout)


def gmail_batch_uri(endpoint: str | None = None) -> str:
    """Return the Gmail batch URL for ``endpoint`` (Google's when None).

    ``new_batch_http_request()`` ignores ``api_endpoint``, so batches are
    built with this URL explicitly.
    """
    if endpoint is None:
        return GOOGLE_GMAIL_BATCH_URI
    return endpoint.rstrip("/") + "/batch/gmail/v1"


def _root(endpoint: str | None, service_path: str) -> str | None:
    return None if endpoint is None else endpoint.rstrip("/") + service_path


def _build(
    api: str, version: str, credentials: Credentials, root: str | None, timeout: float
) -> Service:
    http = google_auth_httplib2.AuthorizedHttp(credentials, http=httplib2.Http(timeout=timeout))
    options = {"api_endpoint": root} if root else None
    try:
        return build(
            api,
            version,
            http=http,
            static_discovery=True,
            cache_discovery=False,
            client_options=options,
        )
    except Exception as e:  # building reads a bundled file; anything here is classified
        raise classify(e) from e


def execute(request: Any, *, cursor: bool = False, guard: Guard = UNGUARDED) -> dict[str, Any]:
    """Run one API request without the client's own retries, classifying failures.

    Parameters:
        request: an ``HttpRequest`` from a service method.
        cursor: the request uses a sync cursor (see :func:`errors.classify`).
        guard: spends the method's quota and consults the breakers first.

    Raises:
        GoogleError: any failure, classified.

    Returns:
        The decoded JSON response.
    """
    method = str(request.methodId)
    return guard.call(method, 1, metered(method, 1, lambda: _execute(request, cursor)))


def _execute(request: Any, cursor: bool) -> dict[str, Any]:
    try:
        response = request.execute(num_retries=0)
    except Exception as e:
        raise classify(e, cursor=cursor) from e
    if not isinstance(response, dict):
        raise classify(TypeError(f"expected a JSON object, got {type(response).__name__}"))
    return response
