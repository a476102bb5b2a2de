"""Normalization of Google Calendar v3 ``events`` resources into :class:`NormalizedEvent`.

Time rule: ``start``/``end`` become UTC datetimes.

* ``dateTime`` carrying an offset (what the API returns) is converted as is;
* ``dateTime`` without an offset is read in the object's ``timeZone``, else in
  the calendar's zone (``user_tz``);
* an all-day ``date`` is midnight in the object's ``timeZone``, else in
  ``user_tz``, converted to UTC; the end date is exclusive, as the API gives it,
  so an all-day event spanning a DST change lasts 23 or 25 hours;
* an unknown ``timeZone`` falls back to ``user_tz`` and is noted in ``defects``.

Robustness rule: ``normalize_event`` returns (never raises) an
:class:`EventError` when the item is not a mapping, has no id, has an unknown
status, or is not cancelled and has no parseable start. A cancelled event may
be a stub with only id and status: it yields a NormalizedEvent with
``status == "cancelled"`` and whatever times it carries (usually none).
Recurring masters keep their ``recurrence`` lines verbatim (RRULE, EXRULE,
RDATE, EXDATE); expanding them is not this phase's job — ingest with
``singleEvents=true`` to receive instances.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, tzinfo
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from jobsys.connectors.phases import mime

EventStatus = Literal["confirmed", "tentative", "cancelled"]
_STATUSES: tuple[EventStatus, ...] = ("confirmed", "tentative", "cancelled")


@dataclass(frozen=True)
class Attendee:
    """One attendee; ``self`` marks the calendar's owner, ``resource`` a room or device."""

    addr: str
    name: str
    response_status: str
    organizer: bool
    self: bool
    resource: bool = False


@dataclass(frozen=True)
class NormalizedEvent:
    """A calendar event with UTC times (natural key: event_id)."""

    event_id: str
    summary: str
    status: EventStatus
    start_at: datetime | None
    end_at: datetime | None
    all_day: bool
    attendees: tuple[Attendee, ...]
    organizer: str | None
    recurring_event_id: str | None
    recurrence: tuple[str, ...]
    original_start_at: datetime | None = None
    defects: tuple[str, ...] = ()
    ical_uid: str | None = None  # iCalendar UID: what mailed invitations of it carry


@dataclass(frozen=True)
class EventError:
    """An events resource that could not be normalized; ``event_id`` is "" if it had none."""

    event_id: str
    error: str


@dataclass(frozen=True)
class _When:
    at: datetime
    all_day: bool


def normalize_event(item: Mapping[str, Any], user_tz: str = "UTC") -> NormalizedEvent | EventError:
    """Normalize one Calendar v3 events resource (see the module docstring's rules).

    Parameters:
        item: the event as the API returns it (decoded JSON).
        user_tz: IANA name of the calendar's time zone, used for all-day dates
            and for local times without a ``timeZone`` of their own.

    Raises:
        ValueError: ``user_tz`` is not a known IANA time zone (a caller error
            that would affect every event of the calendar alike).

    Returns:
        A NormalizedEvent, or an EventError describing why the item is unusable.
    """
    default_zone = _zone(user_tz)
    if default_zone is None:
        raise ValueError(f"user_tz {user_tz!r} is not a known IANA time zone")
    if not isinstance(item, Mapping):
        return EventError("", f"item is {type(item).__name__}, not a mapping")
    event_id = item.get("id")
    if not isinstance(event_id, str) or not event_id:
        return EventError("", "event has no id")
    try:
        return _normalize(event_id, item, default_zone)
    except Exception as e:  # one odd resource must not fail the batch
        return EventError(event_id, mime.squash(f"internal error: {type(e).__name__}: {e}")[:300])


def _normalize(
    event_id: str, item: Mapping[str, Any], zone: tzinfo
) -> NormalizedEvent | EventError:
    status = item.get("status", "confirmed")
    if status not in _STATUSES:
        return EventError(event_id, f"unknown status {str(status)[:40]!r}")
    defects: list[str] = []
    start = _when(item.get("start"), zone, "start", defects)
    end = _when(item.get("end"), zone, "end", defects)
    if start is None and status != "cancelled":
        return EventError(event_id, "start missing or unparseable")
    if end is None and start is not None and status != "cancelled":
        defects.append("end: missing, using start")
        end = start
    original = _when(item.get("originalStartTime"), zone, "originalStartTime", defects)
    organizer = item.get("organizer")
    return NormalizedEvent(
        event_id=event_id,
        summary=mime.squash(str(item.get("summary") or "")),
        status=status,
        start_at=start.at if start else None,
        end_at=end.at if end else None,
        all_day=start.all_day if start else False,
        attendees=_attendees(item.get("attendees")),
        organizer=mime.clean_address(organizer.get("email"))
        if isinstance(organizer, Mapping)
        else None,
        recurring_event_id=_optional_str(item.get("recurringEventId")),
        recurrence=tuple(line for line in item.get("recurrence") or () if isinstance(line, str)),
        original_start_at=original.at if original else None,
        defects=tuple(dict.fromkeys(defects)),
        ical_uid=_optional_str(item.get("iCalUID")),
    )


def _zone(name: object) -> tzinfo | None:
    if not isinstance(name, str) or not name:
        return None
    if name.upper() == "UTC":
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        # ValueError covers malformed keys such as absolute paths or "..".
        return None


def _when(obj: object, default_zone: tzinfo, field: str, defects: list[str]) -> _When | None:
    """Parse one EventDateTime object; None when absent or unparseable (noted)."""
    if not isinstance(obj, Mapping):
        return None
    zone = default_zone
    tz_name = obj.get("timeZone")
    if tz_name is not None:
        found = _zone(tz_name)
        if found is None:
            defects.append(f"{field}: unknown timeZone {str(tz_name)[:60]!r}, used calendar zone")
        else:
            zone = found
    try:
        if isinstance(obj.get("dateTime"), str):
            moment = datetime.fromisoformat(obj["dateTime"])
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=zone)
            return _When(moment.astimezone(UTC), all_day=False)
        if isinstance(obj.get("date"), str):
            day = date.fromisoformat(obj["date"])
            return _When(datetime.combine(day, time(), tzinfo=zone).astimezone(UTC), all_day=True)
    except (ValueError, OverflowError):
        defects.append(f"{field}: unparseable")
        return None
    if obj:
        defects.append(f"{field}: neither dateTime nor date")
    return None


def _attendees(raw: object) -> tuple[Attendee, ...]:
    if not isinstance(raw, list):
        return ()
    seen: set[str] = set()
    result: list[Attendee] = []
    for entry in raw:
        if not isinstance(entry, Mapping):
            continue
        addr = mime.clean_address(entry.get("email"))
        if addr is None or addr in seen:
            continue
        seen.add(addr)
        result.append(
            Attendee(
                addr=addr,
                name=mime.squash(str(entry.get("displayName") or "")),
                response_status=str(entry.get("responseStatus") or "needsAction"),
                organizer=entry.get("organizer") is True,
                self=entry.get("self") is True,
                resource=entry.get("resource") is True,
            )
        )
    return tuple(result)


def _optional_str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
