"""Calendar reads for ingestion: full and incremental ``events.list``.

A full listing pages through every event and ends with a ``nextSyncToken``;
an incremental one passes that token back and gets every change since,
cancelled events included. An expired token (410) raises
:class:`ExpiredCursorError`: the caller falls back to a full sync.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jobsys.connectors.google.clients import UNGUARDED, Guard, Service, execute
from jobsys.connectors.google.errors import GoogleError


@dataclass(frozen=True)
class EventPage:
    """One page of ``events.list``; the last page has ``next_sync_token``."""

    events: tuple[dict[str, Any], ...]
    next_page_token: str | None
    next_sync_token: str | None


@dataclass(frozen=True)
class EventSync:
    """Every event (or change) of one listing, and the cursor to store after it."""

    events: tuple[dict[str, Any], ...]
    next_sync_token: str
    incremental: bool


def list_events_page(
    calendar: Service,
    *,
    sync_token: str | None = None,
    page_token: str | None = None,
    calendar_id: str = "primary",
    page_size: int = 250,
    show_deleted: bool = False,
    guard: Guard = UNGUARDED,
) -> EventPage:
    """Read one page of ``events.list`` (recurring events unexpanded).

    Parameters:
        calendar: the Calendar service.
        sync_token: the stored cursor for an incremental listing, None for full.
        page_token: where to continue, None for the first page.
        calendar_id: the calendar, ``primary`` by default.
        page_size: ``maxResults`` (Calendar caps it at 2500).
        show_deleted: include cancelled events in a full listing.

    Raises:
        ExpiredCursorError: ``sync_token`` is invalid or expired (410).
        GoogleError: any other classified failure.

    Returns:
        The page.
    """
    kwargs: dict[str, object] = {
        "calendarId": calendar_id,
        "maxResults": page_size,
        "singleEvents": False,
    }
    if sync_token:
        kwargs["syncToken"] = sync_token
    elif show_deleted:
        kwargs["showDeleted"] = True
    if page_token:
        kwargs["pageToken"] = page_token
    request = calendar.events().list(**kwargs)
    data = execute(request, cursor=sync_token is not None, guard=guard)
    return EventPage(
        tuple(data.get("items", [])), data.get("nextPageToken"), data.get("nextSyncToken")
    )


def list_events(
    calendar: Service,
    *,
    sync_token: str | None = None,
    calendar_id: str = "primary",
    page_size: int = 250,
    guard: Guard = UNGUARDED,
) -> EventSync:
    """Read every page of a full (no token) or incremental (token) listing.

    Parameters:
        calendar: the Calendar service.
        sync_token: the stored cursor, None for a full listing.
        calendar_id: the calendar, ``primary`` by default.
        page_size: ``maxResults`` per page.

    Raises:
        ExpiredCursorError: ``sync_token`` is invalid or expired (410).
        GoogleError: any other classified failure, or a last page without a sync token.

    Returns:
        The events and the next cursor.
    """
    events: list[dict[str, Any]] = []
    page_token: str | None = None
    while True:
        page = list_events_page(
            calendar,
            sync_token=sync_token,
            page_token=page_token,
            calendar_id=calendar_id,
            page_size=page_size,
            guard=guard,
        )
        events.extend(page.events)
        page_token = page.next_page_token
        if page_token:
            continue
        if not page.next_sync_token:
            raise GoogleError("the last events.list page carried no nextSyncToken")
        return EventSync(tuple(events), page.next_sync_token, sync_token is not None)
