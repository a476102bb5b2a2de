"""Deterministic synthetic calendars in Calendar v3's JSON shape.

Times fall within five weeks from a given ``start`` and carry fixed offsets
(the offset of each ``timeZone``'s standard time), so the truth is computed
without a zone database: ``dateTime`` values with an offset mean what they say
whatever the zone's daylight-saving rules.
The mix: timed events in several zones, all-day events, weekly and daily
recurring series (some with a cancelled instance), and cancelled events,
with attendees answering accepted/declined/tentative/needsAction.
"""

from __future__ import annotations

import hashlib
import random
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

from jobsys.connectors.google.emulator.facts import Person

_ZONES = (
    ("America/New_York", -300),
    ("Europe/London", 0),
    ("Europe/Berlin", 60),
    ("Asia/Kolkata", 330),
    ("Asia/Tokyo", 540),
    ("UTC", 0),
)
_SUMMARIES = ("1:1", "Standup", "Design review", "Lunch", "Kundentermin", "定例会議", "Offsite")
_RESPONSES = ("accepted", "declined", "tentative", "needsAction")
_RULES = ("RRULE:FREQ=WEEKLY;COUNT=6;BYDAY={day}", "RRULE:FREQ=DAILY;COUNT=5")
_DAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")


def event_id(seed_text: str) -> str:
    """Return a Calendar-legal event id (base32hex lowercase) derived from ``seed_text``."""
    digest = hashlib.sha256(seed_text.encode()).digest()
    alphabet = "0123456789abcdefghijklmnopqrstuv"
    return "".join(alphabet[b % 32] for b in digest[:20])


def rfc3339(moment: datetime) -> str:
    """Format an aware datetime as RFC 3339 with its own offset."""
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def generate_events(
    rng: random.Random, owner: Person, contacts: list[Person], count: int, start: datetime
) -> list[dict[str, Any]]:
    """Generate ``count`` events (cancelled instances come on top) for ``owner``.

    Parameters:
        rng: the calendar's generator.
        owner: the calendar owner (organizer or attendee of each event).
        contacts: the people who attend.
        count: how many events (series count once).
        start: events fall on the 36 days from this moment's date (aware).

    Returns:
        Calendar v3 event resources.
    """
    out: list[dict[str, Any]] = []
    for n in range(count):
        kind = rng.random()
        if kind < 0.2:
            out.append(_all_day(rng, owner, contacts, n, start))
        elif kind < 0.4:
            out.extend(_series(rng, owner, contacts, n, start))
        else:
            out.append(_timed(rng, owner, contacts, n, start))
        if rng.random() < 0.1:
            out[-1]["status"] = "cancelled"
    return out


def _base(
    rng: random.Random, owner: Person, contacts: list[Person], n: int, epoch: datetime
) -> dict[str, Any]:
    ident = event_id(f"{owner.email}:{n}:{rng.random()}")
    created = epoch - timedelta(days=rng.randint(1, 30))
    people = rng.sample(contacts, rng.randint(0, min(4, len(contacts))))
    organizer = owner if not people or rng.random() < 0.6 else people[0]
    event: dict[str, Any] = {
        "kind": "calendar#event",
        "id": ident,
        "status": "confirmed",
        "iCalUID": f"{ident}@google.com",
        "created": rfc3339(created),
        "updated": rfc3339(created + timedelta(hours=1)),
        "summary": rng.choice(_SUMMARIES),
        "creator": {"email": organizer.email},
        "organizer": _who(organizer, owner),
        "sequence": 0,
        "eventType": "default",
    }
    if people:
        event["attendees"] = [_attendee(rng, p, owner, organizer) for p in [owner, *people]]
    return event


def _who(person: Person, owner: Person) -> dict[str, Any]:
    out: dict[str, Any] = {"email": person.email, "displayName": person.name}
    if person == owner:
        out["self"] = True
    return out


def _attendee(rng: random.Random, p: Person, owner: Person, organizer: Person) -> dict[str, Any]:
    out = _who(p, owner)
    if p == organizer:
        out["organizer"] = True
        out["responseStatus"] = "accepted"
    else:
        out["responseStatus"] = rng.choice(_RESPONSES)
    return out


def _timed_bounds(rng: random.Random, epoch: datetime) -> tuple[datetime, datetime, str]:
    zone, minutes = rng.choice(_ZONES)
    tz = timezone(timedelta(minutes=minutes))
    day = (epoch + timedelta(days=rng.randint(0, 35))).date()
    start = datetime(
        day.year, day.month, day.day, rng.randint(8, 17), rng.choice((0, 30)), tzinfo=tz
    )
    return start, start + timedelta(minutes=rng.choice((15, 30, 45, 60, 90))), zone


def _timed(
    rng: random.Random, owner: Person, contacts: list[Person], n: int, epoch: datetime
) -> dict[str, Any]:
    event = _base(rng, owner, contacts, n, epoch)
    start, end, zone = _timed_bounds(rng, epoch)
    event["start"] = {"dateTime": rfc3339(start), "timeZone": zone}
    event["end"] = {"dateTime": rfc3339(end), "timeZone": zone}
    return event


def _all_day(
    rng: random.Random, owner: Person, contacts: list[Person], n: int, epoch: datetime
) -> dict[str, Any]:
    event = _base(rng, owner, contacts, n, epoch)
    first: date = (epoch + timedelta(days=rng.randint(0, 35))).date()
    event["start"] = {"date": first.isoformat()}
    event["end"] = {"date": (first + timedelta(days=rng.randint(1, 3))).isoformat()}
    return event


def _series(
    rng: random.Random, owner: Person, contacts: list[Person], n: int, epoch: datetime
) -> list[dict[str, Any]]:
    master = _timed(rng, owner, contacts, n, epoch)
    rule = rng.choice(_RULES)
    start = datetime.fromisoformat(master["start"]["dateTime"])
    master["recurrence"] = [rule.format(day=_DAYS[start.weekday()])]
    if rng.random() < 0.5:
        return [master]
    # One cancelled occurrence: Calendar lists it as its own event with status
    # "cancelled", pointing at the series through recurringEventId.
    step = timedelta(days=7 if "WEEKLY" in rule else 1)
    original = start + step * rng.randint(1, 3)
    stamp = original.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    zone = master["start"]["timeZone"]
    instance = {
        "kind": "calendar#event",
        "id": f"{master['id']}_{stamp}",
        "status": "cancelled",
        "recurringEventId": master["id"],
        "originalStartTime": {"dateTime": rfc3339(original), "timeZone": zone},
    }
    return [master, instance]
