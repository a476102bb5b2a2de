"""Normalization, extraction and processing over stored rows (the phases are pure)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from jobsys.connectors.phases.extract import Interaction, extract
from jobsys.connectors.phases.normalize import (
    Address,
    Attendee,
    EventError,
    Invite,
    MessageError,
    NormalizedEvent,
    NormalizedMessage,
    normalize_event,
    normalize_message,
)
from jobsys.connectors.phases.process import digest, rank
from jobsys.store.sync import SyncStore


def normalize_batch(
    sync: SyncStore, user_id: str, message_ids: Sequence[str], event_ids: Sequence[str]
) -> dict[str, int]:
    """Normalize stored raw rows; a message that cannot be parsed is kept with its error."""
    messages = [_message_row(r) for r in sync.raw_messages(user_id, message_ids)]
    events = [_event_row(body) for body in sync.raw_events(user_id, event_ids)]
    sync.save_normalized(
        user_id, messages=messages, events=events, message_ids=message_ids, event_ids=event_ids
    )
    errors = sum(1 for m in messages if m["error"]) + sum(1 for e in events if e["error"])
    return {"messages": len(messages), "events": len(events), "errors": errors}


def _message_row(raw: dict[str, Any]) -> dict[str, Any]:
    parsed = normalize_message(
        raw["gmail_id"], raw["thread_id"], raw["raw"], raw["label_ids"], raw.get("internal_date")
    )
    if isinstance(parsed, MessageError):
        return {
            "gmail_id": parsed.gmail_id,
            "thread_id": parsed.thread_id,
            "subject": None,
            "from_addr": None,
            "from_name": None,
            "from_addrs": [],
            "to_addrs": [],
            "cc_addrs": [],
            "sent_at": None,
            "labels": list(raw["label_ids"]),
            "text_body": None,
            "error": parsed.error,
            "defects": [],
            "invites": [],
        }
    return {
        "gmail_id": parsed.gmail_id,
        "thread_id": parsed.thread_id,
        "subject": parsed.subject,
        "from_addr": parsed.from_addr,
        "from_name": parsed.from_name,
        "from_addrs": _addresses_json(parsed.senders),
        "to_addrs": _addresses_json(parsed.to),
        "cc_addrs": _addresses_json(parsed.cc),
        "sent_at": parsed.sent_at,
        "labels": list(parsed.labels),
        "text_body": parsed.text_body,
        "error": None,
        "defects": list(parsed.defects),
        "invites": [_invite_json(i) for i in parsed.invites],
    }


def _addresses_json(found: tuple[Address, ...]) -> list[dict[str, str]]:
    return [{"addr": a.addr, "name": a.name} for a in found]


def _addresses(rows: list[dict[str, str]]) -> tuple[Address, ...]:
    return tuple(Address(a["addr"], a["name"]) for a in rows)


def _attendee_json(a: Attendee) -> dict[str, Any]:
    return {
        "addr": a.addr,
        "name": a.name,
        "response_status": a.response_status,
        "organizer": a.organizer,
        "self": a.self,
        "resource": a.resource,
    }


def _invite_json(invite: Invite) -> dict[str, Any]:
    # jsonb holds no datetimes: times travel as ISO 8601 strings.
    return {
        "uid": invite.uid,
        "method": invite.method,
        "status": invite.status,
        "sequence": invite.sequence,
        "summary": invite.summary,
        "start_at": _iso(invite.start_at),
        "end_at": _iso(invite.end_at),
        "all_day": invite.all_day,
        "organizer": invite.organizer,
        "attendees": [_attendee_json(a) for a in invite.attendees],
    }


def _invite(row: dict[str, Any]) -> Invite:
    return Invite(
        uid=row["uid"],
        method=row["method"],
        status=row["status"],
        sequence=row["sequence"],
        summary=row["summary"],
        start_at=_from_iso(row["start_at"]),
        end_at=_from_iso(row["end_at"]),
        all_day=row["all_day"],
        organizer=row["organizer"],
        attendees=tuple(Attendee(**a) for a in row["attendees"]),
    )


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _from_iso(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def _event_row(body: dict[str, Any]) -> dict[str, Any]:
    parsed = normalize_event(body)
    if isinstance(parsed, EventError):
        return {
            "event_id": parsed.event_id or str(body.get("id", "")),
            "summary": None,
            "status": "error",
            "start_at": None,
            "end_at": None,
            "all_day": False,
            "attendees": [],
            "organizer": None,
            "recurring_event_id": None,
            "error": parsed.error,
            "ical_uid": None,
        }
    return {
        "event_id": parsed.event_id,
        "summary": parsed.summary,
        "status": parsed.status,
        "start_at": parsed.start_at,
        "end_at": parsed.end_at,
        "all_day": parsed.all_day,
        "attendees": [_attendee_json(a) for a in parsed.attendees],
        "organizer": parsed.organizer,
        "recurring_event_id": parsed.recurring_event_id,
        "error": None,
        "ical_uid": parsed.ical_uid,
    }


def _messages(sync: SyncStore, user_id: str) -> list[NormalizedMessage]:
    return [
        NormalizedMessage(
            gmail_id=r["gmail_id"],
            thread_id=r["thread_id"],
            subject=r["subject"] or "",
            from_addr=r["from_addr"] or "",
            from_name=r["from_name"] or "",
            senders=_addresses(r["from_addrs"]),
            to=_addresses(r["to_addrs"]),
            cc=_addresses(r["cc_addrs"]),
            sent_at=r["sent_at"],
            labels=tuple(r["labels"]),
            text_body=r["text_body"] or "",
            message_id=None,
            in_reply_to=None,
            references=(),
            invites=tuple(_invite(i) for i in r["invites"]),
        )
        for r in sync.messages(user_id)
        if not r["error"]
    ]


def _events(sync: SyncStore, user_id: str) -> list[NormalizedEvent]:
    return [
        NormalizedEvent(
            event_id=r["event_id"],
            summary=r["summary"] or "",
            status=r["status"],
            start_at=r["start_at"],
            end_at=r["end_at"],
            all_day=r["all_day"],
            attendees=tuple(Attendee(**a) for a in r["attendees"]),
            organizer=r["organizer"],
            recurring_event_id=r["recurring_event_id"],
            recurrence=(),
            ical_uid=r["ical_uid"],
        )
        for r in sync.events(user_id)
        if not r["error"]
    ]


def extract_user(sync: SyncStore, user_id: str, email: str) -> dict[str, int]:
    found = extract(email, _messages(sync, user_id), _events(sync, user_id))
    contacts = [{"addr": c.addr, "display_name": c.display_name} for c in found.contacts]
    interactions = [
        {
            "addr": i.addr,
            "kind": i.kind,
            "direction": i.direction,
            "at": i.at,
            "source_id": i.source_id,
        }
        for i in found.interactions
    ]
    sync.save_extraction(user_id, contacts, interactions)
    return {"contacts": len(contacts), "interactions": len(interactions)}


def process_user(sync: SyncStore, user_id: str, email: str) -> dict[str, int]:
    now = datetime.now(UTC)
    interactions = [
        Interaction(
            addr=r["addr"],
            kind=r["kind"],
            direction=r["direction"],
            at=r["at"],
            source_id=r["source_id"],
        )
        for r in sync.interactions(user_id)
    ]
    scores = rank(interactions, now)
    summary = digest(email, scores, _messages(sync, user_id), _events(sync, user_id), now)
    rows = [
        {
            "addr": s.addr,
            "score": s.score,
            "rank": s.rank,
            "messages_out": s.messages_out,
            "messages_in": s.messages_in,
            "meetings": s.meetings,
            "last_at": s.last_at,
        }
        for s in scores
    ]
    sync.save_scores(user_id, rows, summary)
    return {"contacts_ranked": len(rows)}
