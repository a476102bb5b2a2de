"""Errors from Google calls, classified for jobsys's retry logic.

Every error is a :class:`~jobsys.errors.JobsysError` with ``reason``, ``retryable``
and ``retry_after``, the fields the engine reads to decide whether and when to
retry::

    GoogleError            base; ``status`` is the HTTP status when there was one
    ├── AuthError          401; 403 other than rate limits; refresh refused  (auth)
    ├── QuotaError         429; 403 rate/quota reasons; Retry-After          (quota, retryable)
    ├── ExpiredCursorError Gmail history 404, Calendar 410: full sync         (expired_cursor)
    ├── TransientError     5xx, timeouts, connection errors                  (transient, retryable)
    ├── NotFoundError      404 on an item, e.g. a message deleted meanwhile  (not_found)
    └── RequestError       any other 4xx: the request itself is wrong        (bad_input)
"""

from __future__ import annotations

import json
from typing import Any

import google.auth.exceptions
import httplib2  # type: ignore[import-untyped]
from googleapiclient.errors import HttpError  # type: ignore[import-untyped]

from jobsys.errors import JobsysError

_RATE_REASONS = frozenset(
    {"rateLimitExceeded", "userRateLimitExceeded", "quotaExceeded", "dailyLimitExceeded"}
)


class GoogleError(JobsysError):
    """Base of every classified Google error.

    Parameters:
        message: what went wrong.
        status: the HTTP status, if a response was received.
        api_reason: Google's own reason string (e.g. ``userRateLimitExceeded``).
        retry_after: seconds the server asked to wait.
    """

    reason = "google"
    retryable = False

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        api_reason: str = "",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.api_reason = api_reason
        self.retry_after = retry_after


class AuthError(GoogleError):
    """The user's credentials are invalid or lack permission: park the user."""

    reason = "auth"


class QuotaError(GoogleError):
    """A rate or quota limit was hit: retry after ``retry_after``."""

    reason = "quota"
    retryable = True


class ExpiredCursorError(GoogleError):
    """The history id or sync token is too old: fall back to a full sync."""

    reason = "expired_cursor"


class TransientError(GoogleError):
    """A server error, timeout or broken connection: retry with backoff."""

    reason = "transient"
    retryable = True


class NotFoundError(GoogleError):
    """The requested item does not exist (any more)."""

    reason = "not_found"


class RequestError(GoogleError):
    """Google rejected the request as malformed."""

    reason = "bad_input"


def classify(exc: BaseException, *, cursor: bool = False) -> GoogleError:
    """Map an exception from google-api-python-client or google-auth to the tree.

    Parameters:
        exc: what the call raised.
        cursor: the call used a sync cursor, so 404 (Gmail) and 410 (Calendar)
            mean "expired cursor" rather than "not found".

    Returns:
        The classified error (not raised). Unknown exceptions become
        :class:`TransientError` only when they are network errors; others
        are :class:`GoogleError` with ``retryable`` False.
    """
    if isinstance(exc, GoogleError):
        return exc
    if isinstance(exc, HttpError):
        return from_response(exc.status_code, _headers(exc.resp), exc.content, cursor=cursor)
    if isinstance(exc, google.auth.exceptions.RefreshError):
        # google-auth marks refusals (invalid_grant) non-retryable, server trouble retryable.
        if getattr(exc, "retryable", False):
            return TransientError(f"token refresh failed: {exc}")
        return AuthError(f"token refresh refused: {exc}")
    if isinstance(exc, google.auth.exceptions.TransportError | httplib2.HttpLib2Error):
        return TransientError(f"{type(exc).__name__}: {exc}")
    if isinstance(exc, OSError):  # timeouts and refused or reset connections
        return TransientError(f"{type(exc).__name__}: {exc}")
    return GoogleError(f"{type(exc).__name__}: {exc}")


def from_response(
    status: int, headers: dict[str, str], content: bytes | str, *, cursor: bool = False
) -> GoogleError:
    """Classify an HTTP error answer (a plain response or one part of a batch).

    Parameters:
        status: the HTTP status (>= 400).
        headers: the response headers, lower-case names.
        content: the body, Google's ``{"error": {...}}`` JSON when well formed.
        cursor: see :func:`classify`.

    Returns:
        The classified error.
    """
    api_reason, message = _error_detail(content)
    text = f"HTTP {status} {api_reason or ''}: {message}".replace("  ", " ")
    kwargs: dict[str, Any] = {"status": status, "api_reason": api_reason}
    if status == 429 or (status == 403 and api_reason in _RATE_REASONS):
        return QuotaError(text, retry_after=_retry_after(headers), **kwargs)
    if status in (401, 403):
        return AuthError(text, **kwargs)
    if cursor and status in (404, 410):
        return ExpiredCursorError(text, **kwargs)
    if status == 404 or status == 410:
        return NotFoundError(text, **kwargs)
    if status >= 500 or status == 408:
        return TransientError(text, retry_after=_retry_after(headers), **kwargs)
    return RequestError(text, **kwargs)


def _headers(resp: Any) -> dict[str, str]:
    try:
        return {str(k).lower(): str(v) for k, v in dict(resp).items()}
    except (TypeError, ValueError):
        return {}


def _error_detail(content: bytes | str) -> tuple[str, str]:
    try:
        error = json.loads(content)["error"]
    except (ValueError, KeyError, TypeError):
        text = content.decode("utf-8", "replace") if isinstance(content, bytes) else content
        return "", text[:200]
    if not isinstance(error, dict):
        return "", str(error)[:200]
    details = error.get("errors") or [{}]
    reason = details[0].get("reason", "") if isinstance(details[0], dict) else ""
    return str(reason), str(error.get("message", ""))


def _retry_after(headers: dict[str, str]) -> float | None:
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        # An HTTP-date form is legal too; without a parseable number, let backoff decide.
        return None
