"""HTTP replies of the emulator, and Google's JSON error shape.

Handlers return a :class:`Reply` instead of writing to a socket so that the
same code answers a plain request and one part of a batch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

_STATUS_TEXT = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    410: "GONE",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}
REASON_PHRASES = {
    200: "OK",
    204: "No Content",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    410: "Gone",
    413: "Content Too Large",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


@dataclass(frozen=True)
class Reply:
    """One HTTP answer: status, body bytes and extra headers."""

    status: int
    body: bytes = b""
    content_type: str = "application/json; charset=UTF-8"
    headers: dict[str, str] = field(default_factory=dict)


def json_reply(data: Any, status: int = 200) -> Reply:
    """Answer ``data`` as JSON.

    Parameters:
        data: anything :func:`json.dumps` accepts.
        status: the HTTP status.

    Returns:
        The reply.
    """
    return Reply(status, json.dumps(data).encode("utf-8"))


def google_error(
    code: int,
    reason: str,
    message: str,
    *,
    domain: str = "global",
    headers: dict[str, str] | None = None,
) -> Reply:
    """Answer an error the way Google APIs do (``{"error": {...}}``).

    Parameters:
        code: the HTTP status.
        reason: the machine-readable reason, e.g. ``userRateLimitExceeded``.
        message: the human-readable message.
        domain: Google's error domain, e.g. ``usageLimits``.
        headers: extra response headers such as ``Retry-After``.

    Returns:
        The reply.
    """
    error = {
        "error": {
            "code": code,
            "message": message,
            "errors": [{"message": message, "domain": domain, "reason": reason}],
            "status": _STATUS_TEXT.get(code, "UNKNOWN"),
        }
    }
    body = json.dumps(error).encode("utf-8")
    return Reply(code, body, headers=dict(headers or {}))


def not_found(message: str = "Requested entity was not found.") -> Reply:
    """Answer 404 with Google's ``notFound`` reason."""
    return google_error(404, "notFound", message)


def bad_request(message: str) -> Reply:
    """Answer 400 with Google's ``invalidArgument`` reason."""
    return google_error(400, "invalidArgument", message)
