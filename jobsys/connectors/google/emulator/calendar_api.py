"""Calendar v3 ``events.list`` on the primary calendar: full and incremental sync."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from jobsys.connectors.google.emulator.calendar_data import rfc3339
from jobsys.connectors.google.emulator.events import EventQuery, decode_query
from jobsys.connectors.google.emulator.replies import Reply, bad_request, google_error, json_reply
from jobsys.connectors.google.emulator.request import ApiRequest
from jobsys.connectors.google.emulator.world import UserState


def list_events(user: UserState, request: ApiRequest, _: dict[str, str]) -> Reply:
    """``events.list``: pages by id; the last page carries ``nextSyncToken``.

    An invalid or expired ``syncToken`` is answered 410 ``fullSyncRequired``.
    """
    if request.flag("singleEvents"):
        return bad_request("the emulator lists recurring events unexpanded only (singleEvents)")
    try:
        size = request.int_arg("maxResults", 250, 2500)
    except ValueError:
        return bad_request("maxResults must be an integer")
    store = user.calendar
    query: EventQuery | None
    if request.arg("pageToken"):
        query = decode_query(request.arg("pageToken"))
        if query is None:
            return bad_request("invalid pageToken")
    elif request.arg("syncToken"):
        since = store.since_token(request.arg("syncToken"))
        if since is None:
            return _gone()
        query = EventQuery("", store.seq, since, True)
    else:
        query = EventQuery("", store.seq, None, request.flag("showDeleted"))
    items, next_page = store.page(query, size)
    body: dict[str, Any] = {
        "kind": "calendar#events",
        "summary": user.email,
        "timeZone": "UTC",
        "updated": rfc3339(datetime.now(UTC)),
        "accessRole": "owner",
        "items": items,
    }
    if next_page:
        body["nextPageToken"] = next_page
    else:
        body["nextSyncToken"] = store.token(query.snapshot)
    return json_reply(body)


def _gone() -> Reply:
    message = "Sync token is no longer valid, a full sync is required."
    return google_error(410, "fullSyncRequired", message)
