"""Whose quota a 429 or quota 403 is about, from Google's error reason."""

from __future__ import annotations

import json

import pytest

from jobsys.connectors.google.errors import QuotaError, from_response
from jobsys.pipeline.guarding import quota_scope


def answer(status: int, reason: str) -> QuotaError:
    body = json.dumps({"error": {"errors": [{"reason": reason}], "message": "limit"}})
    error = from_response(status, {"retry-after": "2"}, body)
    assert isinstance(error, QuotaError)
    return error


@pytest.mark.parametrize(
    ("status", "reason", "scope"),
    [
        (429, "userRateLimitExceeded", "user"),
        (403, "userRateLimitExceeded", "user"),
        (429, "rateLimitExceeded", "project"),
        (403, "quotaExceeded", "project"),
        (403, "dailyLimitExceeded", "project"),
    ],
)
def test_the_reason_names_the_scope(status: int, reason: str, scope: str) -> None:
    assert quota_scope(answer(status, reason)) == scope


def test_a_bare_429_is_taken_as_the_users() -> None:
    # No JSON reason (a proxy's 429, say): the user's key is the narrower hold
    error = from_response(429, {}, b"Too Many Requests")
    assert isinstance(error, QuotaError)
    assert quota_scope(error) == "user"
