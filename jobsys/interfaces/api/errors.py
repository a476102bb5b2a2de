"""One error shape for every failure: ``{"error": {"type", "message", "field"?}}``.

The table below maps jobsys's error tree to HTTP statuses; anything not in it is
a 500 whose body says only "internal error" (the traceback goes to the log).
"""

from __future__ import annotations

import math
from typing import Any

import psycopg2
import sqlalchemy as sa
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from jobsys import errors as e

log = structlog.get_logger("jobsys.api")

# What a client is told instead of the error's own text, which may name hosts,
# users or settings (the log keeps the text).
PUBLIC_MESSAGE = {
    "unavailable": "a server jobsys needs is unavailable; try again shortly",
    "config": "the server is misconfigured",
}
# (error class, HTTP status, type); the first match wins, so subclasses go first.
STATUS_OF: tuple[tuple[type[Exception], int, str], ...] = (
    (e.QuotaExceeded, 429, "quota_exceeded"),
    (e.PayloadError, 422, "invalid_payload"),
    (e.OptionError, 422, "invalid_option"),
    (e.UnknownKindError, 422, "unknown_kind"),
    (e.JobNotFoundError, 404, "not_found"),
    (e.InvalidTransitionError, 409, "conflict"),
    (e.DuplicateJobError, 409, "duplicate"),
    (e.DuplicateUserError, 409, "duplicate"),
    (e.StoreUnavailableError, 503, "unavailable"),
    (e.ConfigError, 500, "config"),
)


class ApiError(Exception):
    """An API-level refusal (auth, scope) with its status, type and message."""

    def __init__(self, status: int, type_: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.type, self.message, self.field = status, type_, message, field


def body(type_: str, message: str, field: str | None = None, **extra: Any) -> dict[str, Any]:
    error: dict[str, Any] = {"type": type_, "message": message}
    if field is not None:
        error["field"] = field
    return {"error": {**error, **extra}}


def install(app: FastAPI) -> None:
    """Register the handlers that give every failure the one shape."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(e.JobsysError, _jobsys_error)
    app.add_exception_handler(sa.exc.DataError, _unstorable)
    app.add_exception_handler(psycopg2.DataError, _unstorable)
    app.add_exception_handler(Exception, _unexpected)


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return JSONResponse(body(exc.type, exc.message, exc.field), exc.status, headers=headers)


async def _invalid_request(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = [
        {"field": ".".join(str(p) for p in err["loc"]), "message": err["msg"]}
        for err in exc.errors()
    ]
    message = "; ".join(f"{p['field']}: {p['message']}" for p in problems)
    first = problems[0]["field"] if problems else None
    return JSONResponse(body("invalid_request", message, first, problems=problems), 422)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    type_ = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return JSONResponse(body(type_, str(exc.detail)), exc.status_code, headers=exc.headers)


async def _jobsys_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, e.JobsysError)
    for cls, status, type_ in STATUS_OF:
        if isinstance(exc, cls):
            message = PUBLIC_MESSAGE.get(type_)
            if message is not None:
                log.error("api.failed", path=request.url.path, error=str(exc))
            text = message or str(exc)
            return JSONResponse(body(type_, text, _field(exc)), status, headers=_headers(exc))
    return await _unexpected(request, exc)


async def _unstorable(request: Request, exc: Exception) -> JSONResponse:
    # A value valid JSON yet not storable (jsonb refuses \u0000): the caller's to fix.
    orig = exc.orig if isinstance(exc, sa.exc.DataError) else exc
    cause = (str(orig).strip() or "invalid value").splitlines()[0]
    message = f"a value PostgreSQL cannot store: {cause}"
    return JSONResponse(body("invalid_request", message), 422)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error("api.unexpected", path=request.url.path, exc_info=exc)
    return JSONResponse(body("internal", "internal error"), 500)


def _field(exc: e.JobsysError) -> str | None:
    if isinstance(exc, e.OptionError):
        return exc.field
    if isinstance(exc, e.PayloadError):
        return "payload"
    if isinstance(exc, e.UnknownKindError):
        return "kind"
    return None


def _headers(exc: e.JobsysError) -> dict[str, str] | None:
    if isinstance(exc, e.QuotaExceeded):
        # max_queued frees as queued jobs start: a minute is a fair first retry.
        wait = exc.retry_after if exc.retry_after is not None else 60.0
        return {"Retry-After": str(max(1, math.ceil(wait)))}
    return None
