"""Calendar invitations in mail: read from text/calendar parts, and turned into meetings."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from jobsys.connectors.phases.extract import Interaction, extract
from jobsys.connectors.phases.invites import Invite, parse_calendar
from jobsys.connectors.phases.normalize import Address, NormalizedMessage, normalize_message
from tests.unit.test_phase_extract import ME, attendee, event, message

START = datetime(2025, 2, 10, 9, 0, tzinfo=UTC)


def _ics(method: str = "REQUEST", sequence: int = 0, extra: str = "", dtstart: str = "") -> str:
    return (
        f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nMETHOD:{method}\r\n{extra}BEGIN:VEVENT\r\n"
        f"{dtstart or 'DTSTART:20250210T090000Z'}\r\nDTEND:20250210T093000Z\r\n"
        f"UID:u-1@example.org\r\nSEQUENCE:{sequence}\r\n"
        "ORGANIZER;CN=Ann:mailto:ann@example.org\r\n"
        f'ATTENDEE;CN="Me, Myself";PARTSTAT=NEEDS-ACTION:mailto:{ME}\r\n'
        "ATTENDEE;CN=Bob;PARTSTAT=ACCEPTED;RSVP=TRUE;X-NUM-GUESTS=0:mailto:\r\n bob@example.org\r\n"
        "ATTENDEE;CN=Dee;PARTSTAT=DECLINED:mailto:dee@example.org\r\n"
        "ATTENDEE;CUTYPE=ROOM;CN=Room:mailto:room@resource.example.org\r\n"
        "SUMMARY:Design review\\, round 2\r\n"
        "BEGIN:VALARM\r\nTRIGGER:-PT10M\r\nSUMMARY:not the event\r\nEND:VALARM\r\n"
        "END:VEVENT\r\nEND:VCALENDAR\r\n"
    )


def _mail(ics: str) -> bytes:
    return (
        b"From: Ann <ann@example.org>\r\nTo: me@example.com\r\nSubject: Invitation\r\n"
        b"Date: Mon, 03 Feb 2025 10:00:00 +0000\r\n"
        b'Content-Type: multipart/alternative; boundary="A"\r\n\r\n'
        b"--A\r\nContent-Type: text/plain\r\n\r\nYou are invited.\r\n"
        b"--A\r\nContent-Type: text/calendar; charset=utf-8; method=REQUEST\r\n\r\n"
        + ics.encode()
        + b"--A--\r\n"
    )


def _normalized(ics: str) -> NormalizedMessage:
    result = normalize_message("g1", "t1", _mail(ics), ["INBOX"])
    assert isinstance(result, NormalizedMessage), result
    return result


def test_an_invitation_part_is_read_into_an_invite() -> None:
    # When a message with a text/calendar part is normalized
    message = _normalized(_ics())

    # Then the invitation is read: folded lines, escapes and quoted parameters included,
    # the alarm's properties not mistaken for the event's; the body is still the text
    (invite,) = message.invites
    assert (invite.uid, invite.method, invite.sequence, invite.summary) == (
        "u-1@example.org",
        "REQUEST",
        0,
        "Design review, round 2",
    )
    assert (invite.start_at, invite.organizer) == (START, "ann@example.org")
    assert [(a.addr, a.name, a.response_status, a.resource) for a in invite.attendees] == [
        (ME, "Me, Myself", "needsAction", False),
        ("bob@example.org", "Bob", "accepted", False),
        ("dee@example.org", "Dee", "declined", False),
        ("room@resource.example.org", "Room", "needsAction", True),
    ]
    assert message.text_body == "You are invited."


def test_outlook_zones_use_the_calendars_own_timezone() -> None:
    # Given a Windows zone name defined by the calendar's VTIMEZONE
    zone = (
        "BEGIN:VTIMEZONE\r\nTZID:W. Europe Standard Time\r\nBEGIN:STANDARD\r\n"
        "TZOFFSETTO:+0100\r\nEND:STANDARD\r\nBEGIN:DAYLIGHT\r\nTZOFFSETTO:+0200\r\n"
        "END:DAYLIGHT\r\nEND:VTIMEZONE\r\n"
    )
    ics = _ics(extra=zone, dtstart='DTSTART;TZID="W. Europe Standard Time":20250210T100000')
    defects: list[str] = []

    # When / Then: 10:00 at +01:00 is 09:00 UTC, and the approximation is named
    assert parse_calendar(ics, defects)[0].start_at == START
    assert "invite: zone 'W. Europe Standard Time' read at its standard offset" in defects


def test_iana_zones_and_all_day_dates() -> None:
    # Given an IANA TZID and a DATE value
    defects: list[str] = []
    berlin = parse_calendar(_ics(dtstart="DTSTART;TZID=Europe/Berlin:20250210T100000"), defects)
    day = parse_calendar(_ics(dtstart="DTSTART;VALUE=DATE:20250210"), defects)

    # When / Then
    assert berlin[0].start_at == START
    assert (day[0].start_at, day[0].all_day) == (datetime(2025, 2, 10, tzinfo=UTC), True)
    assert defects == []


def _invite_message(gmail_id: str, invite: Invite, at: datetime) -> NormalizedMessage:
    return replace(message(gmail_id, Address("ann@example.org", "Ann"), at=at), invites=(invite,))


def test_an_invitation_the_user_has_not_declined_is_a_meeting() -> None:
    # Given an invitation in the user's mail, not in their Calendar
    (invite,) = _normalized(_ics()).invites
    mail = _invite_message("g1", invite, datetime(2025, 2, 3, tzinfo=UTC))

    # When extracted
    found = extract(ME, [mail], []).interactions

    # Then the organizer and the attendees who did not decline are met at its start;
    # rooms and the user are not people
    meetings = [i for i in found if i.kind == "meeting"]
    assert meetings == [
        Interaction("ann@example.org", "meeting", "mutual", START, "ical:u-1@example.org"),
        Interaction("bob@example.org", "meeting", "mutual", START, "ical:u-1@example.org"),
    ]


def test_the_calendar_speaks_for_an_invitation_it_holds() -> None:
    # Given the same event in the user's Calendar (same iCalUID) and in an invitation
    (invite,) = _normalized(_ics()).invites
    mail = _invite_message("g1", invite, datetime(2025, 2, 3, tzinfo=UTC))
    calendar = replace(
        event("ev1", (attendee(ME, self=True), attendee("bob@example.org")), at=START),
        ical_uid="u-1@example.org",
    )

    # When / Then: the meeting comes from the Calendar event only
    meetings = [i for i in extract(ME, [mail], [calendar]).interactions if i.kind == "meeting"]
    assert meetings == [Interaction("bob@example.org", "meeting", "mutual", START, "ev1")]


def test_a_later_cancellation_wins_and_a_reply_does_not_count() -> None:
    # Given a request, a reply, then a cancellation with a higher sequence
    (request,) = _normalized(_ics()).invites
    (reply,) = _normalized(_ics("REPLY")).invites
    (cancel,) = _normalized(_ics("CANCEL", sequence=1)).invites
    mails = [
        _invite_message("g1", request, datetime(2025, 2, 3, tzinfo=UTC)),
        _invite_message("g2", reply, datetime(2025, 2, 4, tzinfo=UTC)),
    ]

    # When / Then: the request alone is a meeting; with the cancellation, none
    assert any(i.kind == "meeting" for i in extract(ME, mails, []).interactions)
    cancelled = [*mails, _invite_message("g3", cancel, datetime(2025, 2, 5, tzinfo=UTC))]
    assert not any(i.kind == "meeting" for i in extract(ME, cancelled, []).interactions)


def test_a_declined_invitation_is_no_meeting() -> None:
    # Given an invitation the user declined
    (invite,) = _normalized(_ics().replace("NEEDS-ACTION", "DECLINED")).invites

    # When / Then
    mail = _invite_message("g1", invite, datetime(2025, 2, 3, tzinfo=UTC))
    assert not any(i.kind == "meeting" for i in extract(ME, [mail], []).interactions)
