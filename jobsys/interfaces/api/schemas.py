"""The API's request and response bodies (the OpenAPI schema is built from them)."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from jobsys.interfaces.api.errors import ApiError
from jobsys.store.listing import Cursor

_STRICT = ConfigDict(extra="forbid")
T = TypeVar("T")

# Text PostgreSQL can store and compare: no NUL, a bounded length.
Name = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[^\x00]*$")]
LetterId = Annotated[int, Path(ge=1, le=2**63 - 1, description="a dead letter's id")]


class ErrorDetail(BaseModel):
    type: str
    message: str
    field: str | None = None
    problems: list[dict[str, str]] | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail


_ERROR = {"model": ErrorBody}
# Every route may answer these; the OpenAPI schema says so (and what the body is).
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {**_ERROR, "description": text}
    for code, text in {
        401: "no token, or an unknown or revoked one",
        403: "the token may not make this call",
        404: "no such row, or another user's",
        409: "the row's state does not allow it",
        400: "the body is not JSON",
        413: "the body is too large",
        422: "a field breaks its rule (each one named)",
        429: "over a quota (Retry-After says when to try again)",
        503: "PostgreSQL or Redis unreachable",
    }.items()
}


class NewJobBody(BaseModel):
    model_config = _STRICT

    kind: Name = Field(description="a registered job kind")
    payload: dict[str, Any] = Field(default_factory=dict, description="the kind's fields")
    priority: int | None = Field(default=None, ge=0, le=9, description="0 normal .. 9 urgent")
    unique_key: Name | None = None
    delay: float = Field(default=0.0, ge=0, le=366 * 86400, description="seconds before it runs")
    user_id: Name | None = Field(default=None, description="admin tokens only")


class Created(BaseModel):
    id: str
    status: str


class JobOut(BaseModel):
    id: str
    user_id: str
    kind: str
    queue: str
    priority: int
    payload: dict[str, Any]
    status: str
    attempt: int
    max_attempts: int
    unique_key: str | None
    run_after: datetime
    cancel_requested: bool
    result: Any = None
    errors: list[dict[str, Any]]
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page")


class CancelOut(BaseModel):
    id: str
    status: str


class SyncBody(BaseModel):
    model_config = _STRICT

    full: bool = Field(default=False, description="ignore stored cursors and list everything")


class SyncOut(BaseModel):
    job_id: str
    user_id: str
    full: bool
    running_run: str | None = Field(description="the user's run already running, if any")


class RunOut(BaseModel):
    id: str
    user_id: str
    status: str
    full_sync: bool
    steps: dict[str, Any]
    error: str | None
    created_at: datetime
    finished_at: datetime | None
    follow_up: str | None
    jobs: list[dict[str, Any]] | None = None


class LetterOut(BaseModel):
    id: int
    job_id: str
    user_id: str
    kind: str
    queue: str
    payload: dict[str, Any]
    exc_type: str
    message: str
    traceback: str | None = None
    reason: str
    retryable: bool
    attempts: list[dict[str, Any]]
    worker: str | None
    first_attempt_at: datetime | None
    created_at: datetime
    retried_at: datetime | None


class RetryOut(BaseModel):
    letter_id: int
    job_id: str


class BulkRetryBody(BaseModel):
    model_config = _STRICT

    kind: Name | None = None
    user_id: Name | None = None
    reason: Name | None = None
    limit: int = Field(default=100, ge=1, le=10_000)


class BulkRetryOut(BaseModel):
    retried: list[RetryOut]
    skipped: list[dict[str, Any]]


class WorkerOut(BaseModel):
    name: str
    hostname: str
    pid: int
    queues: list[str]
    concurrency: int
    status: str
    started_at: datetime
    heartbeat_at: datetime


class TickOut(BaseModel):
    due: int
    enqueued: int
    coalesced: int
    batches: int
    seconds: float
    jobs: list[dict[str, str]]


R = TypeVar("R")


def page_of(found: list[R], limit: int, out: Callable[[R], T]) -> Page[T]:
    """A page of rows fetched with ``limit``: a full page has a cursor after its last row."""
    last = found[-1] if len(found) == limit else None
    cursor = encode_cursor(*_key(last)) if last is not None else None
    return Page[T](items=[out(row) for row in found], next_cursor=cursor)


def _key(row: Any) -> tuple[datetime, str]:
    if isinstance(row, dict):
        return row["created_at"], str(row["id"])
    return row.created_at, str(row.id)


def encode_cursor(created_at: datetime, ident: str) -> str:
    raw = json.dumps([created_at.isoformat(), ident]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(value: str | None) -> Cursor | None:
    if value is None:
        return None
    if len(value) > 500:
        raise ApiError(422, "invalid_request", "not a cursor this API gave: too long", "cursor")
    try:
        padded = value + "=" * (-len(value) % 4)
        at, ident = json.loads(base64.urlsafe_b64decode(padded.encode()))
        when = datetime.fromisoformat(at)
        if when.tzinfo is None:
            raise ValueError("no time zone")
        return Cursor(when, str(ident))
    except (ValueError, TypeError, RecursionError, binascii.Error) as e:
        message = f"not a cursor this API gave: {type(e).__name__}"
        raise ApiError(422, "invalid_request", message, "cursor") from e


class PushMessage(BaseModel):
    data: str = Field(description='base64 of {"emailAddress", "historyId"}')
    messageId: str | None = None
    publishTime: str | None = None


class PushEnvelope(BaseModel):
    """Pub/Sub's push body."""

    message: PushMessage
    subscription: str | None = None


class PushOut(BaseModel):
    sync: str | None = Field(description="the sync job the notification asked for (or joined)")
    ignored: str | None = Field(default=None, description="why nothing was asked for")


class ReadyOut(BaseModel):
    ready: bool
    checks: dict[str, str] = Field(description="postgres, redis: ok, or what is wrong")
