"""Gmail push: watches that make Gmail publish mailbox changes, and what a notification does.

A notification (Pub/Sub's push of ``{"emailAddress", "historyId"}``) asks for an
incremental sync of that user. ``sync.user`` coalesces: a burst of notifications
joins the one sync still waiting, or records one follow-up on the running run.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from pydantic import BaseModel

from jobsys.connectors.google.gmail import watch
from jobsys.engine.context import JobContext
from jobsys.engine.enqueue import enqueue
from jobsys.engine.runtime import Runtime
from jobsys.engine.task import job
from jobsys.errors import JobError, JobNotFoundError
from jobsys.pipeline.google import parking_on_auth_failure, session
from jobsys.pipeline.schedule import SYNC_KIND
from jobsys.store.sync import SyncStore
from jobsys.store.users import UserStore


class Notice(BaseModel):
    """What a Gmail notification says: whose mailbox changed, and up to which history id."""

    email: str
    history_id: int


class NoPayload(BaseModel):
    model_config = {"extra": "forbid"}


@job(kind="google.watch", payload=NoPayload, queue="ingest", max_attempts=5)
def watch_mailbox(ctx: JobContext, payload: NoPayload) -> dict[str, str]:
    """Ask Gmail to publish the user's mailbox changes to ``JOBSYS_GMAIL_PUSH_TOPIC``."""
    rt = ctx.runtime
    topic = rt.settings.gmail_push_topic
    if topic is None:
        raise JobError("JOBSYS_GMAIL_PUSH_TOPIC is not set", reason="config", retryable=False)
    with parking_on_auth_failure(rt, ctx.user_id):
        google = session(rt, ctx.user_id)
        return watch(google.gmail, topic, guard=google.guard)


def parse(envelope: dict[str, Any]) -> Notice:
    """The notice inside a Pub/Sub push body.

    Raises:
        ValueError: the body is not a Gmail notification (the message says what is wrong).
    """
    message = envelope.get("message")
    if not isinstance(message, dict) or not isinstance(message.get("data"), str):
        raise ValueError("message.data: a base64 string is required")
    try:
        data = json.loads(base64.b64decode(message["data"], validate=True))
    except (binascii.Error, ValueError) as e:
        raise ValueError(f"message.data: not base64 of a JSON object ({e})") from e
    if not isinstance(data, dict):
        raise ValueError("message.data: not a JSON object")
    try:
        return Notice(email=str(data["emailAddress"]), history_id=int(data["historyId"]))
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"message.data: emailAddress and historyId are required ({e})") from e


def notified(rt: Runtime, notice: Notice) -> dict[str, Any]:
    """Ask for an incremental sync of the notice's user, unless its cursor is past the notice.

    The sync waits ``JOBSYS_PUSH_DELAY`` in the backlog: the notifications of a burst
    of mail join it there (``sync.user`` coalesces) instead of making a run each.
    """
    try:
        user = UserStore(rt.postgres).get(notice.email)
    except JobNotFoundError:
        return {"sync": None, "ignored": "unknown user"}
    if user.paused:
        return {"sync": None, "ignored": "user paused"}
    cursor = SyncStore(rt.postgres).cursor(user.id, "gmail")
    if cursor is not None and cursor.isdigit() and int(cursor) >= notice.history_id:
        return {"sync": None, "ignored": "already synced past that change"}
    payload = {"full": False}
    asked = enqueue(
        SYNC_KIND, user_id=user.id, payload=payload, delay=rt.settings.push_delay, runtime=rt
    )
    return {"sync": asked.id}
