"""``POST /api/google/push``: Gmail's notifications, as a Pub/Sub push subscription sends them.

Pub/Sub does not send a bearer token; the subscription's endpoint URL carries
the shared secret (``?token=`` = ``JOBSYS_PUSH_TOKEN``). A 2xx acknowledges the
message; anything else makes Pub/Sub deliver it again later.
"""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query

from jobsys.interfaces.api import schemas as s
from jobsys.interfaces.api.auth import RuntimeDep
from jobsys.interfaces.api.errors import ApiError
from jobsys.pipeline import push

router = APIRouter(tags=["google"], responses=s.ERRORS)


@router.post("/api/google/push", response_model=s.PushOut)
def google_push(
    rt: RuntimeDep,
    envelope: Annotated[dict[str, Any], Body(description="Pub/Sub's body: message.data, ...")],
    token: Annotated[str, Query(max_length=200, description="the subscription's secret")] = "",
) -> s.PushOut:
    """Request an incremental sync of the notified mailbox's user (coalesced)."""
    expected = rt.settings.push_token
    if expected is None:
        raise ApiError(403, "forbidden", "push is not configured (JOBSYS_PUSH_TOKEN)")
    if not hmac.compare_digest(token.encode(), expected.get_secret_value().encode()):
        raise ApiError(403, "forbidden", "wrong push token", "token")
    try:
        notice = push.parse(envelope)
    except ValueError as e:
        raise ApiError(422, "invalid_request", str(e), "message.data") from e
    return s.PushOut.model_validate(push.notified(rt, notice))
