"""Calendar invitations carried in mail: ``text/calendar`` parts (RFC 5545, iTIP RFC 5546).

``read_invites`` reads every ``VEVENT`` of every ``text/calendar`` (or
``application/ics``) part of a message — inline or attached, but not inside a
forwarded ``message/rfc822`` — into an :class:`Invite`. Extraction turns the
latest version of each invitation into meetings (see :mod:`.extract`).

What is read: the calendar's ``METHOD`` (REQUEST, CANCEL, REPLY, ...); the
event's ``UID``, ``SEQUENCE``, ``STATUS``, ``SUMMARY``, ``DTSTART``/``DTEND``,
``ORGANIZER`` and ``ATTENDEE`` (``mailto:`` address, ``CN``, ``PARTSTAT``,
``CUTYPE`` ROOM/RESOURCE). Times: ``...Z`` is UTC; a ``TZID`` that names an
IANA zone is read in it; another ``TZID`` (Outlook's "W. Europe Standard
Time") uses the standard-time ``TZOFFSETTO`` of the calendar's own
``VTIMEZONE`` of that name, ignoring daylight saving (noted); a floating time or
an unknown zone is read as UTC (noted); a ``DATE`` value is an all-day event
starting at 00:00 UTC. No recurrence is expanded. Bounds: ``MAX_EVENTS`` events
and ``MAX_ATTENDEES`` attendees per part.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from email.message import Message
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from jobsys.connectors.phases import mime
from jobsys.connectors.phases.events import Attendee

MAX_EVENTS = 50
MAX_ATTENDEES = 500
CALENDAR_TYPES = frozenset(("text/calendar", "application/ics"))

_UNFOLD = re.compile(r"\r?\n[ \t]")
# A content line: the name and parameters (quoted values may hold ":"), then the value.
_CONTENT_LINE = re.compile(r'((?:[^":]|"[^"]*")*):(.*)', re.DOTALL)
_DATE_TIME = re.compile(r"(\d{4})(\d\d)(\d\d)(?:T(\d\d)(\d\d)(\d\d)([Zz])?)?")
_PARAM = re.compile(r';([^=;:]+)=("[^"]*"|[^;:"]*)')
_ESCAPE = re.compile(r"\\([\\;,nN])")
_OFFSET = re.compile(r"([+-])(\d\d)(\d\d)")
_PARTSTAT = {
    "ACCEPTED": "accepted",
    "DECLINED": "declined",
    "TENTATIVE": "tentative",
    "NEEDS-ACTION": "needsAction",
}


@dataclass(frozen=True)
class Invite:
    """One event of an invitation (natural key: uid; newer ``sequence`` wins)."""

    uid: str
    method: str
    status: str
    sequence: int
    summary: str
    start_at: datetime | None
    end_at: datetime | None
    all_day: bool
    organizer: str | None
    attendees: tuple[Attendee, ...]


@dataclass(frozen=True)
class _Line:
    name: str
    params: dict[str, str]
    value: str


def read_invites(parts: list[Message], defects: list[str]) -> tuple[Invite, ...]:
    """The invitations in ``parts`` (a message's leaves, see ``body.walk``)."""
    found: list[Invite] = []
    for part in parts:
        if part.get_content_type() not in CALENDAR_TYPES:
            continue
        data = part.get_payload(decode=True)
        if not isinstance(data, bytes):
            continue
        charset = part.get_param("charset")
        text = mime.decode_bytes(data, charset if isinstance(charset, str) else "utf-8").text
        found.extend(parse_calendar(text, defects))
    # Google sends the same invitation inline and as invite.ics: keep one copy.
    return tuple(dict.fromkeys(found))


def parse_calendar(text: str, defects: list[str]) -> list[Invite]:
    """The ``VEVENT`` components of one iCalendar text, as invitations."""
    lines = [_split(line) for line in _UNFOLD.sub("", text).splitlines() if line.strip()]
    method = next((ln.value.strip().upper() for ln in lines if ln.name == "METHOD"), "")
    zones = _zones(lines)
    found: list[Invite] = []
    stack: list[str] = []
    event: list[_Line] | None = None
    for line in lines:
        if line.name == "BEGIN":
            stack.append(line.value.strip().upper())
            if stack[-1] == "VEVENT" and len(found) < MAX_EVENTS:
                event = []
        elif line.name == "END":
            closing = stack.pop() if stack else ""
            if closing == "VEVENT" and event is not None:
                invite = _invite(event, method, zones, defects)
                if invite is not None:
                    found.append(invite)
                event = None
        elif event is not None and stack and stack[-1] == "VEVENT":
            event.append(line)  # properties of a nested VALARM are skipped
    return found


def _split(line: str) -> _Line:
    """``NAME;PARAM=value;...:VALUE``; a colon inside a quoted parameter is not the end."""
    found = _CONTENT_LINE.match(line)
    if found is None:
        return _Line(line.strip().upper(), {}, "")
    head, value = found.groups()
    name, _, _ = head.partition(";")
    params = {k.strip().upper(): v.strip('"') for k, v in _PARAM.findall(head[len(name) :])}
    return _Line(name.strip().upper(), params, value)


def _zones(lines: list[_Line]) -> dict[str, tzinfo]:
    """TZID -> the standard-time offset of the calendar's own VTIMEZONE components."""
    zones: dict[str, tzinfo] = {}
    tzid = ""
    in_standard = False
    for line in lines:
        if line.name == "TZID":
            tzid = line.value.strip()
        elif line.name in ("BEGIN", "END") and line.value.strip().upper() == "STANDARD":
            in_standard = line.name == "BEGIN"
        elif line.name == "TZOFFSETTO" and in_standard and tzid:
            offset = _OFFSET.fullmatch(line.value.strip())
            if offset:
                sign = -1 if offset.group(1) == "-" else 1
                minutes = int(offset.group(2)) * 60 + int(offset.group(3))
                zones.setdefault(tzid, timezone(timedelta(minutes=sign * minutes)))
    return zones


def _invite(
    lines: list[_Line], method: str, zones: dict[str, tzinfo], defects: list[str]
) -> Invite | None:
    props = {line.name: line for line in lines if line.name not in ("ATTENDEE", "BEGIN", "END")}
    uid = props["UID"].value.strip() if "UID" in props else ""
    if not uid:
        defects.append("invite: event without UID")
        return None
    start = _moment(props.get("DTSTART"), zones, defects)
    end = _moment(props.get("DTEND"), zones, defects)
    sequence = props["SEQUENCE"].value.strip() if "SEQUENCE" in props else "0"
    organizer = props.get("ORGANIZER")
    attendees = [_attendee(line) for line in lines if line.name == "ATTENDEE"]
    return Invite(
        uid=uid[:300],
        method=method,
        status=props["STATUS"].value.strip().upper() if "STATUS" in props else "",
        sequence=int(sequence) if sequence.isdigit() else 0,
        summary=mime.squash(_unescape(props["SUMMARY"].value)) if "SUMMARY" in props else "",
        start_at=start[0] if start else None,
        end_at=end[0] if end else None,
        all_day=start[1] if start else False,
        organizer=_mailto(organizer.value) if organizer else None,
        attendees=tuple(a for a in attendees if a is not None)[:MAX_ATTENDEES],
    )


def _moment(
    line: _Line | None, zones: dict[str, tzinfo], defects: list[str]
) -> tuple[datetime, bool] | None:
    if line is None:
        return None
    value = line.value.strip()
    found = _DATE_TIME.fullmatch(value)
    try:
        if found is None:
            raise ValueError(value)
        year, month, day, hour, minute, second = (int(n or 0) for n in found.groups()[:6])
        if found.group(4) is None or line.params.get("VALUE", "").upper() == "DATE":
            return datetime(year, month, day, tzinfo=UTC), True
        # Built from the digits: strptime costs about ten times as much.
        moment = datetime(year, month, day, hour, minute, second)
    except (ValueError, TypeError):
        defects.append(f"invite: unparseable {line.name}")
        return None
    if found.group(7):
        return moment.replace(tzinfo=UTC), False
    return moment.replace(tzinfo=_zone(line.params.get("TZID"), zones, defects)).astimezone(
        UTC
    ), False


def _zone(tzid: str | None, zones: dict[str, tzinfo], defects: list[str]) -> tzinfo:
    if not tzid:
        defects.append("invite: floating time read as UTC")
        return UTC
    iana = _iana_zone(tzid)
    if iana is not None:
        return iana
    if tzid in zones:
        defects.append(f"invite: zone {tzid[:60]!r} read at its standard offset")
        return zones[tzid]
    defects.append(f"invite: unknown zone {tzid[:60]!r} read as UTC")
    return UTC


@functools.lru_cache(maxsize=128)
def _iana_zone(tzid: str) -> tzinfo | None:
    # Cached: ZoneInfo caches the zones it finds, not the names it looked for in vain.
    try:
        return ZoneInfo(tzid)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def _attendee(line: _Line) -> Attendee | None:
    addr = _mailto(line.value)
    if addr is None:
        return None
    cutype = line.params.get("CUTYPE", "").upper()
    return Attendee(
        addr=addr,
        name=mime.squash(line.params.get("CN", "")),
        response_status=_PARTSTAT.get(line.params.get("PARTSTAT", "").upper(), "needsAction"),
        organizer=False,
        self=False,
        resource=cutype in ("ROOM", "RESOURCE"),
    )


def _mailto(value: str) -> str | None:
    text = value.strip()
    if text.lower().startswith("mailto:"):
        text = text[7:]
    return mime.clean_address(text)


def _unescape(text: str) -> str:
    return _ESCAPE.sub(lambda m: "\n" if m.group(1) in "nN" else m.group(1), text)
