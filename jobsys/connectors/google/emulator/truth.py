"""Ground truth for tests: what a correct sync must end up with, as plain dicts.

Times are aware UTC datetimes. An all-day event's ``start``/``end`` are its
dates at 00:00 UTC (``end`` exclusive, as Calendar gives it). A cancelled
instance of a series has its original start and no end.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any, TypedDict

from jobsys.connectors.google.emulator.mailbox import StoredMessage


class TruthMessage(TypedDict):
    """One message as a normalizer should find it."""

    id: str
    thread_id: str
    message_id: str
    subject: str
    sender: str | None
    sender_name: str
    senders: list[str]
    to: list[str]
    cc: list[str]
    sent_at: datetime | None
    internal_date: datetime
    labels: list[str]
    in_reply_to: str


class TruthAttendee(TypedDict):
    """One attendee and their answer."""

    email: str
    response_status: str


class TruthEvent(TypedDict):
    """One event as a normalizer should find it."""

    id: str
    summary: str
    status: str
    all_day: bool
    start: datetime | None
    end: datetime | None
    organizer: str | None
    attendees: list[TruthAttendee]
    recurrence: list[str]
    recurring_event_id: str | None


def message_truth(stored: StoredMessage) -> TruthMessage:
    """Describe a stored message."""
    facts = stored.facts
    return TruthMessage(
        id=stored.id,
        thread_id=stored.thread_id,
        message_id=facts.message_id,
        subject=facts.subject,
        sender=facts.sender.email if facts.sender else None,
        sender_name=facts.sender.name if facts.sender else "",
        senders=[p.email for p in facts.senders],
        to=[p.email for p in facts.to],
        cc=[p.email for p in facts.cc],
        sent_at=facts.sent_at.astimezone(UTC) if facts.sent_at else None,
        internal_date=datetime.fromtimestamp(stored.internal_date_ms / 1000, UTC),
        labels=list(stored.labels),
        in_reply_to=facts.in_reply_to,
    )


def event_truth(event: dict[str, Any]) -> TruthEvent:
    """Describe a stored Calendar event resource."""
    start = event.get("start") or event.get("originalStartTime") or {}
    attendees = [
        TruthAttendee(email=a["email"], response_status=a.get("responseStatus", "needsAction"))
        for a in event.get("attendees", [])
    ]
    return TruthEvent(
        id=event["id"],
        summary=event.get("summary", ""),
        status=event["status"],
        all_day="date" in start,
        start=_when(start),
        end=_when(event.get("end") or {}),
        organizer=(event.get("organizer") or {}).get("email"),
        attendees=sorted(attendees, key=lambda a: a["email"]),
        recurrence=list(event.get("recurrence", [])),
        recurring_event_id=event.get("recurringEventId"),
    )


def _when(value: dict[str, str]) -> datetime | None:
    if "dateTime" in value:
        return datetime.fromisoformat(value["dateTime"]).astimezone(UTC)
    if "date" in value:
        day = date.fromisoformat(value["date"])
        return datetime(day.year, day.month, day.day, tzinfo=UTC)
    return None
