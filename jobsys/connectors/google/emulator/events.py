"""One user's primary calendar: events, change sequence and sync tokens.

Each change gets the next sequence number. A sync token names the sequence a
listing covered (plus an epoch): an incremental listing returns every event
changed after it. Expiring bumps the epoch so that every issued token is
answered 410, Calendar's "full sync required".
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from jobsys.connectors.google.emulator.calendar_data import event_id, rfc3339

# Fields Calendar guarantees on a cancelled event; the rest is dropped from answers.
_CANCELLED_KEEP = ("kind", "id", "status", "updated", "recurringEventId", "originalStartTime")


@dataclass(frozen=True)
class EventQuery:
    """Where one listing page starts and what it covers."""

    after_id: str
    snapshot: int
    since: int | None  # None for a full listing
    show_deleted: bool


@dataclass
class EventStore:
    """Events of one calendar. Not thread-safe: the world holds the lock."""

    owner: str
    seq: int = 0
    epoch: int = 0
    events: dict[str, dict[str, Any]] = field(default_factory=dict)
    changed_at: dict[str, int] = field(default_factory=dict)

    def put(self, event: dict[str, Any]) -> dict[str, Any]:
        """Insert or replace an event (an id is assigned when missing) and bump its change."""
        stored = dict(event)
        stored.setdefault("id", event_id(f"{self.owner}:added:{self.seq}"))
        stored.setdefault("status", "confirmed")
        stored.setdefault("kind", "calendar#event")
        if "updated" not in event:
            stored["updated"] = rfc3339(datetime.now(UTC))
        self.seq += 1
        self.events[stored["id"]] = stored
        self.changed_at[stored["id"]] = self.seq
        return stored

    def cancel(self, ident: str) -> dict[str, Any] | None:
        """Mark an event cancelled; None if there is no such event."""
        event = self.events.get(ident)
        if event is None:
            return None
        changed = {**event, "status": "cancelled", "updated": rfc3339(datetime.now(UTC))}
        return self.put(changed)

    def expire_tokens(self) -> None:
        """Invalidate every sync token issued so far."""
        self.epoch += 1

    def token(self, snapshot: int) -> str:
        """Return the sync token for a listing that covered changes up to ``snapshot``."""
        return _pack({"o": self.owner, "e": self.epoch, "s": snapshot})

    def since_token(self, token: str) -> int | None:
        """Return the sequence ``token`` covers, or None when it is invalid or expired."""
        data = _unpack(token)
        if data is None or data.get("o") != self.owner or data.get("e") != self.epoch:
            return None
        seq = data.get("s")
        return seq if isinstance(seq, int) and 0 <= seq <= self.seq else None

    def page(self, query: EventQuery, limit: int) -> tuple[list[dict[str, Any]], str | None]:
        """Return one page (ordered by id) and the next page token, None on the last page."""
        chosen = sorted(
            (
                e
                for e in self.events.values()
                if e["id"] > query.after_id and self._wanted(e, query)
            ),
            key=lambda e: str(e["id"]),
        )
        page = [_visible(e) for e in chosen[:limit]]
        if len(chosen) <= limit:
            return page, None
        nxt = EventQuery(page[-1]["id"], query.snapshot, query.since, query.show_deleted)
        return page, encode_query(nxt)

    def _wanted(self, event: dict[str, Any], query: EventQuery) -> bool:
        if query.since is not None:
            # Incremental: every change after the token, deletions included.
            return self.changed_at[event["id"]] > query.since
        if event["status"] != "cancelled" or query.show_deleted:
            return True
        # Cancelled instances of a series are listed even without showDeleted.
        return "recurringEventId" in event


def _visible(event: dict[str, Any]) -> dict[str, Any]:
    if event["status"] != "cancelled":
        return dict(event)
    return {k: event[k] for k in _CANCELLED_KEEP if k in event}


def encode_query(query: EventQuery) -> str:
    """Encode a page position as an opaque page token."""
    return _pack(
        {"a": query.after_id, "s": query.snapshot, "f": query.since, "d": query.show_deleted}
    )


def decode_query(token: str) -> EventQuery | None:
    """Decode a page token; None when it is not one of ours."""
    data = _unpack(token)
    if data is None:
        return None
    try:
        return EventQuery(str(data["a"]), int(data["s"]), data["f"], bool(data["d"]))
    except (KeyError, TypeError, ValueError):
        return None


def _pack(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data, sort_keys=True).encode()).decode().rstrip("=")


def _unpack(token: str) -> dict[str, Any] | None:
    try:
        decoded = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(decoded)
    except (binascii.Error, ValueError):
        return None
    return data if isinstance(data, dict) else None
