"""``POST /api/google/push``: Gmail's notifications, as a Pub/Sub push subscription sends them.

Pub/Sub does not send a bearer token; the subscription's endpoint URL carries
the shared secret (``?token=`` = ``JOBSYS_PUSH_TOKEN``). The token is checked
before the body is read, and the body is bounded: this is the endpoint that
faces the internet. A 2xx acknowledges the message; anything else makes Pub/Sub
deliver it again later.
"""

from __future__ import annotations

import hmac
import json
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from jobsys.interfaces.api import schemas as s
from jobsys.interfaces.api.auth import RuntimeDep
from jobsys.interfaces.api.errors import ApiError
from jobsys.pipeline import push

router = APIRouter(tags=["google"], responses=s.ERRORS)

MAX_BODY = 64 * 1024  # a Gmail notification is a few hundred bytes
_BODY_DOC = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": s.PushEnvelope.model_json_schema()}},
    }
}


@router.post("/api/google/push", response_model=s.PushOut, openapi_extra=_BODY_DOC)
async def google_push(
    request: Request,
    rt: RuntimeDep,
    token: Annotated[str, Query(max_length=200, description="the subscription's secret")] = "",
) -> s.PushOut:
    """Request an incremental sync of the notified mailbox's user (coalesced)."""
    expected = rt.settings.push_token
    if expected is None:
        raise ApiError(403, "forbidden", "push is not configured (JOBSYS_PUSH_TOKEN)")
    if not token or not hmac.compare_digest(token.encode(), expected.get_secret_value().encode()):
        raise ApiError(403, "forbidden", "wrong push token", "token")
    try:
        notice = push.parse(await _envelope(request))
    except ValueError as e:
        raise ApiError(422, "invalid_request", str(e), "message.data") from e
    return s.PushOut.model_validate(await run_in_threadpool(push.notified, rt, notice))


async def _envelope(request: Request) -> dict[str, Any]:
    """The JSON body, read up to :data:`MAX_BODY` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        raise ApiError(413, "too_large", f"a push body is at most {MAX_BODY} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise ApiError(413, "too_large", f"a push body is at most {MAX_BODY} bytes")
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as e:
        raise ApiError(422, "invalid_request", f"not JSON: {e}", "body") from e
    if not isinstance(data, dict):
        raise ApiError(422, "invalid_request", "the body must be a JSON object", "body")
    return data
