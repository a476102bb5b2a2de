"""normalize_message and normalize_event: decoded fields, lenient recovery, never an exception."""

from __future__ import annotations

import email.policy
from datetime import UTC, datetime, timedelta
from email.errors import HeaderParseError
from email.message import EmailMessage, Message
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.parser import BytesParser
from email.utils import getaddresses
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from jobsys.connectors.phases.normalize import (
    Address,
    Attendee,
    EventError,
    MessageError,
    NormalizedEvent,
    NormalizedMessage,
    normalize_event,
    normalize_message,
)
from jobsys.pipeline import transform

HEADERS = (
    b"From: Alice Example <Alice@Example.COM>\r\n"
    b"To: bob@example.org\r\n"
    b"Subject: hello\r\n"
    b"Date: Tue, 05 Mar 2024 09:30:00 +0100\r\n"
    b"Message-ID: <m1@example.com>\r\n"
)


def _ok(raw: bytes, labels: tuple[str, ...] = ("INBOX",)) -> NormalizedMessage:
    result = normalize_message("g1", "t1", raw, labels)
    assert isinstance(result, NormalizedMessage), result
    return result


def _single(body: bytes, charset: str, cte: str = "8bit") -> bytes:
    return (
        HEADERS
        + f"Content-Type: text/plain; charset={charset}\r\n".encode()
        + f"Content-Transfer-Encoding: {cte}\r\n\r\n".encode()
        + body
    )


# -- headers -------------------------------------------------------------------


def test_plain_message_fields() -> None:
    # Given a small message with every header the phase reads
    raw = (
        b'From: "Alice Example" <Alice@Example.COM>\r\n'
        b"To: Bob <bob@example.org>, carol@example.net\r\n"
        b"Cc: Dave <DAVE@example.org>, not-an-address, bob@example.org\r\n"
        b"Subject:  Quarterly\r\n   numbers  \r\n"
        b"Date: Tue, 05 Mar 2024 09:30:00 +0100\r\n"
        b"Message-ID: <m1@example.com>\r\n"
        b"In-Reply-To: <m0@example.com>\r\n"
        b"References: <r1@example.com>\r\n <m0@example.com>\r\n"
        b"\r\nHi Bob\r\n"
    )

    # When it is normalized
    message = _ok(raw, ("INBOX", "UNREAD"))

    # Then addresses are lowercased and kept as the header lists them (contactable or
    # not: extraction decides), whitespace folded, time in UTC
    assert message == NormalizedMessage(
        gmail_id="g1",
        thread_id="t1",
        subject="Quarterly numbers",
        from_addr="alice@example.com",
        from_name="Alice Example",
        to=(Address("bob@example.org", "Bob"), Address("carol@example.net", "")),
        cc=(
            Address("dave@example.org", "Dave"),
            Address("not-an-address", ""),
            Address("bob@example.org", ""),
        ),
        sent_at=datetime(2024, 3, 5, 8, 30, tzinfo=UTC),
        labels=("INBOX", "UNREAD"),
        text_body="Hi Bob",
        message_id="<m1@example.com>",
        in_reply_to="<m0@example.com>",
        references=("<r1@example.com>", "<m0@example.com>"),
        defects=(),
        senders=(Address("alice@example.com", "Alice Example"),),
    )


def test_rfc2047_subject_and_names() -> None:
    # Given encoded words in UTF-8 base64 and ISO-8859-1 quoted-printable
    raw = (
        b"From: =?utf-8?b?SsO8cmdlbiBNw7xsbGVy?= <jm@example.de>\r\n"
        b"To: =?iso-8859-1?q?Ren=E9e?= <renee@example.fr>\r\n"
        b"Subject: =?utf-8?b?UsOpc3Vtw6k=?= =?iso-8859-1?q?_caf=E9?= and more\r\n"
        b"Date: Tue, 05 Mar 2024 09:30:00 +0000\r\n\r\nx\r\n"
    )

    # When it is normalized
    message = _ok(raw)

    # Then names and subject are decoded
    assert message.subject == "Résumé café and more"
    assert message.from_name == "Jürgen Müller"
    assert message.to == (Address("renee@example.fr", "Renée"),)


def test_raw_utf8_headers_are_read_as_utf8() -> None:
    # Given RFC 6532 style 8-bit UTF-8 in headers
    raw = "From: Zoë <zoe@example.com>\r\nSubject: naïve\r\n\r\nbody".encode()

    # When / Then
    message = _ok(raw)
    assert (message.from_name, message.subject) == ("Zoë", "naïve")


def test_missing_date_from_subject_are_recoverable() -> None:
    # Given a message with only a To header
    raw = b"To: bob@example.org\r\n\r\nbody only\r\n"

    # When it is normalized
    message = _ok(raw)

    # Then the missing parts are empty and named as defects
    assert (message.subject, message.from_addr, message.from_name) == ("", "", "")
    assert message.sent_at is None
    assert message.text_body == "body only"
    assert {"date: missing", "from: missing", "subject: missing"} <= set(message.defects)


def test_without_a_date_header_gmails_internal_date_is_sent_at() -> None:
    # Given a message without Date, one with a bad Date, and Gmail's arrival times
    undated = b"From: a@example.com\r\nSubject: s\r\n\r\nx"
    bad = b"From: a@example.com\r\nDate: soon\r\n\r\nx"
    arrived = datetime(2025, 2, 4, 12, 0, tzinfo=UTC)

    # When they are normalized with it
    first = normalize_message("g1", "t1", undated, ["INBOX"], arrived)
    second = normalize_message("g2", "t2", bad, ["INBOX"], arrived)

    # Then it is their sent_at, and the fallback is named
    assert isinstance(first, NormalizedMessage) and isinstance(second, NormalizedMessage)
    assert (first.sent_at, second.sent_at) == (arrived, arrived)
    assert "date: missing, used internalDate" in first.defects
    assert "date: unparseable, used internalDate" in second.defects


def test_the_pipeline_passes_the_stored_internal_date() -> None:
    # Given a raw row as the store reads it, with Gmail's internalDate
    arrived = datetime(2025, 2, 4, 12, 0, tzinfo=UTC)
    row = {
        "gmail_id": "g1",
        "thread_id": "t1",
        "label_ids": ["INBOX"],
        "raw": b"From: a@example.com\r\nSubject: s\r\n\r\nx",
        "internal_date": arrived,
    }

    # When / Then: the normalized row is dated by it
    assert transform._message_row(row)["sent_at"] == arrived


def test_unparseable_date_gives_none() -> None:
    # Given a Date header that is not a date
    raw = b"From: a@example.com\r\nDate: next Tuesday-ish\r\n\r\nx"

    # When / Then
    message = _ok(raw)
    assert message.sent_at is None
    assert "date: unparseable" in message.defects


def test_minus_zero_zone_date_is_utc() -> None:
    # Given RFC 5322's "-0000" (UTC, local zone unknown)
    raw = b"From: a@example.com\r\nDate: Tue, 05 Mar 2024 09:30:00 -0000\r\n\r\nx"

    # When / Then
    assert _ok(raw).sent_at == datetime(2024, 3, 5, 9, 30, tzinfo=UTC)


def test_message_ids_without_brackets_are_kept() -> None:
    # Given a bare Message-ID
    raw = b"From: a@example.com\r\nMessage-ID: bare-id@host\r\n\r\nx"

    # When / Then
    assert _ok(raw).message_id == "bare-id@host"


def test_huge_header_is_truncated_not_fatal() -> None:
    # Given a To header with 50,000 addresses and a 1 MB subject
    to = ", ".join(f"u{i}@example.com" for i in range(50_000))
    raw = f"From: a@example.com\r\nTo: {to}\r\nSubject: {'s' * 1_000_000}\r\n\r\nx".encode()

    # When it is normalized
    message = _ok(raw)

    # Then the headers are bounded and the loss is named
    assert 1_000 < len(message.to) < 50_000
    assert len(message.subject) == 65_536
    assert "subject: truncated to 65536 characters" in message.defects


def test_nested_comment_bomb_in_address_header() -> None:
    # Given an address header that makes email.utils recurse without limit
    raw = b"From: a@example.com\r\nTo: " + b"(" * 5_000 + b"\r\n\r\nx"

    # When / Then: the header yields nothing, the message survives
    message = _ok(raw)
    assert message.to == ()
    assert "to: malformed mailboxes read by hand" in message.defects


_names = st.text(alphabet="abcXYZ .'-_0123456789", max_size=12)
_mailboxes = st.tuples(
    _names, st.from_regex(r"[a-z0-9.]{1,8}@[a-z]{1,6}\.(org|com)", fullmatch=True)
)


@settings(max_examples=200, deadline=None)
@given(mailboxes=st.lists(_mailboxes, min_size=1, max_size=8), brackets=st.booleans())
def test_simple_address_lists_parse_like_the_standard_parser(
    mailboxes: list[tuple[str, str]], brackets: bool
) -> None:
    # Given a quote-free address list, which normalize reads without the standard parser
    header = ", ".join(
        f"{name} <{addr}>" if brackets or name.strip() else addr for name, addr in mailboxes
    )
    raw = f"From: a@example.com\r\nTo: {header}\r\n\r\nx".encode()

    # When it is normalized
    to = _ok(raw).to

    # Then the result is what email.policy.default reads from the same header
    # (which agrees with email.utils.getaddresses on such lists), duplicates included;
    # lists the standard parser itself crashes on (it does on a "." name) are left out
    parsed = BytesParser(policy=email.policy.default).parsebytes(raw)
    try:
        read = parsed["To"].addresses
    except (HeaderParseError, TypeError, AttributeError):
        assume(False)
    expected = tuple(Address(a.addr_spec.lower(), " ".join(a.display_name.split())) for a in read)
    assert to == expected
    assert [a.addr for a in to] == [addr.lower() for _, addr in getaddresses([header]) if addr]


# -- bodies --------------------------------------------------------------------


def test_multipart_alternative_prefers_plain_and_skips_attachments() -> None:
    # Given text, HTML and a text attachment
    msg = EmailMessage()
    msg["From"] = "a@example.com"
    msg.set_content("plain wins")
    msg.add_alternative("<p>html loses</p>", subtype="html")
    msg.add_attachment(b"secret,data", maintype="text", subtype="csv", filename="x.csv")
    msg.add_attachment(b"%PDF-1.4 ...", maintype="application", subtype="pdf", filename="x.pdf")

    # When / Then
    assert _ok(msg.as_bytes()).text_body == "plain wins"


def test_html_only_is_stripped_to_text() -> None:
    # Given an HTML-only message with a script, entities and blocks
    html = (
        "<html><head><style>p{}</style><title>T</title></head><body>"
        "<p>Hello&nbsp;<b>World</b> &amp; co</p><script>evil()</script><div>line 2</div>"
        "</body></html>"
    )
    msg = EmailMessage()
    msg["From"] = "a@example.com"
    msg.set_content(html, subtype="html")

    # When / Then
    assert _ok(msg.as_bytes()).text_body == "Hello World & co\nline 2"


@pytest.mark.parametrize(
    ("text", "charset"),
    [
        ("Grüße, café", "iso-8859-1"),
        ("“quoted” — €5", "windows-1252"),
        ("日本語のメール", "shift_jis"),
        ("Grüße", "utf-8"),
    ],
)
def test_declared_charsets(text: str, charset: str) -> None:
    # Given a body in a legacy charset, base64 encoded by the stdlib
    part = MIMEText(text, "plain", charset)
    part["From"] = "a@example.com"
    part["Subject"] = "s"
    part["Date"] = "Tue, 05 Mar 2024 09:30:00 +0000"

    # When / Then
    message = _ok(part.as_bytes())
    assert message.text_body == text
    assert message.defects == ()


def test_wrong_declared_charset_falls_back_to_utf8() -> None:
    # Given UTF-8 bytes declared as us-ascii
    raw = _single("Grüße".encode(), "us-ascii")

    # When / Then
    message = _ok(raw)
    assert message.text_body == "Grüße"
    assert "body: charset 'us-ascii' wrong, decoded as utf-8" in message.defects


def test_windows_1252_declared_as_utf8() -> None:
    # Given windows-1252 bytes declared as UTF-8
    raw = _single("“hi” café".encode("cp1252"), "utf-8")

    # When / Then
    assert _ok(raw).text_body == "“hi” café"


def test_unknown_charset() -> None:
    # Given a charset no codec knows
    raw = _single("naïve".encode(), "x-made-up-42")

    # When / Then
    message = _ok(raw)
    assert message.text_body == "naïve"
    assert "body: charset 'x-made-up-42' unknown, decoded as utf-8" in message.defects


def test_broken_multipart_missing_closing_boundary() -> None:
    # Given a multipart whose closing boundary never comes
    raw = (
        HEADERS + b'Content-Type: multipart/alternative; boundary="BND"\r\n\r\n'
        b"--BND\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nfirst part\r\n"
        b"--BND\r\nContent-Type: text/html\r\n\r\n<p>second</p>\r\n"
    )

    # When / Then: the recovered parts are used and the defect is named
    message = _ok(raw)
    assert message.text_body == "first part"
    assert "mime: CloseBoundaryNotFoundDefect" in message.defects


def test_multipart_without_boundary_parameter_keeps_the_text() -> None:
    # Given a multipart content type with no boundary, whose text the parser kept
    raw = HEADERS + b"Content-Type: multipart/mixed\r\n\r\nsome stuff\r\n"

    # When / Then: the kept text is the body, and the loss is named
    message = _ok(raw)
    assert message.text_body == "some stuff"
    assert "mime: NoBoundaryInMultipartDefect" in message.defects
    assert "body: from a part the parser recovered" in message.defects


def test_deeply_nested_multipart_is_bounded() -> None:
    # Given 200 levels of nested multipart/mixed with text at the bottom
    inner: Message = MIMEText("deep", "plain", "utf-8")
    for _ in range(200):
        outer = MIMEMultipart("mixed")
        outer.attach(inner)
        inner = outer
    inner["From"] = "a@example.com"

    # When / Then: no recursion error; the text is beyond the depth bound
    assert _ok(inner.as_bytes()).text_body == ""


def test_quoted_printable_and_crlf() -> None:
    # Given a quoted-printable latin-1 body with CRLF line ends
    raw = _single(b"caf=E9\r\nline two=\r\n continued\r\n", "iso-8859-1", "quoted-printable")

    # When / Then
    assert _ok(raw).text_body == "café\nline two continued"


# -- failures ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (b"", "empty message"),
        (b"   \r\n\r\n", "empty message"),
        (b"\x00\xff\xfe binary \x89PNG\r\n\x1a\n", "no RFC 822 header fields found"),
        (b"just some text\r\nand more text\r\n", "no RFC 822 header fields found"),
        (b"\r\nhello without any header\r\n", "no RFC 822 header fields found"),
    ],
)
def test_unparseable_messages_are_errors(raw: bytes, error: str) -> None:
    # When garbage is normalized
    result = normalize_message("g9", "t9", raw, [])

    # Then an error value comes back, not an exception
    assert result == MessageError("g9", "t9", error)


def test_non_bytes_is_an_error() -> None:
    # When / Then
    result = normalize_message("g", "t", "text", [])  # type: ignore[arg-type]
    assert result == MessageError("g", "t", "raw is str, not bytes")


@settings(max_examples=300, deadline=None)
@given(raw=st.binary(max_size=2_000))
def test_never_raises_on_arbitrary_bytes(raw: bytes) -> None:
    # When any bytes are normalized / Then the result is one of the two values
    result = normalize_message("g", "t", raw, ["INBOX"])
    assert isinstance(result, NormalizedMessage | MessageError)


@settings(max_examples=200, deadline=None)
@given(
    header=st.text(max_size=300),
    body=st.binary(max_size=500),
    charset=st.sampled_from(["utf-8", "shift_jis", "bogus", "us-ascii", "utf-7", ""]),
)
def test_never_raises_on_hostile_headers(header: str, body: bytes, charset: str) -> None:
    # Given well-formed framing around arbitrary header text and body bytes
    raw = (
        b"From: " + header.encode("utf-8", "surrogatepass") + b"\r\n"
        b"Subject: =?" + charset.encode() + b"?b?" + header.encode("utf-8", "replace") + b"?=\r\n"
        b"Content-Type: text/plain; charset=" + charset.encode() + b"\r\n\r\n" + body
    )

    # When / Then
    result = normalize_message("g", "t", raw, [])
    assert isinstance(result, NormalizedMessage)


def _realistic() -> bytes:
    msg = EmailMessage()
    msg["From"] = "=?utf-8?q?J=C3=BCrgen?= <j@example.de>"
    msg["To"] = "Bob <bob@example.org>, carol@example.net"
    msg["Subject"] = "Résumé attached"
    msg["Date"] = "Tue, 05 Mar 2024 09:30:00 +0100"
    msg.set_content("Grüße,\nsee attached.\n" * 20, cte="quoted-printable")
    msg.add_alternative("<p>Grüße</p>" * 20, subtype="html")
    msg.add_attachment(
        bytes(range(256)) * 4, maintype="application", subtype="pdf", filename="r.pdf"
    )
    return msg.as_bytes()


REALISTIC = _realistic()


@settings(max_examples=300, deadline=None)
@given(
    start=st.integers(0, len(REALISTIC)),
    length=st.integers(0, 400),
    junk=st.binary(max_size=64),
)
def test_never_raises_on_corrupted_multipart(start: int, length: int, junk: bytes) -> None:
    # Given a realistic multipart message with a slice replaced by junk (or cut short)
    raw = REALISTIC[:start] + junk + REALISTIC[start + length :]

    # When / Then
    result = normalize_message("g", "t", raw, ["INBOX"])
    assert isinstance(result, NormalizedMessage | MessageError)


# -- events --------------------------------------------------------------------


def _event(**fields: Any) -> dict[str, Any]:
    return {"kind": "calendar#event", "id": "ev1", "status": "confirmed", **fields}


def _ok_event(item: dict[str, Any], user_tz: str = "UTC") -> NormalizedEvent:
    result = normalize_event(item, user_tz)
    assert isinstance(result, NormalizedEvent), result
    return result


def test_event_with_offset_attendees_and_organizer() -> None:
    # Given a timed event as the API returns it
    item = _event(
        summary="  Design   review ",
        start={"dateTime": "2024-03-05T10:00:00-05:00", "timeZone": "America/New_York"},
        end={"dateTime": "2024-03-05T11:00:00-05:00", "timeZone": "America/New_York"},
        organizer={"email": "Boss@Example.com", "self": False},
        attendees=[
            {"email": "Boss@Example.com", "organizer": True, "responseStatus": "accepted"},
            {"email": "me@example.com", "self": True, "displayName": "Me"},
            {"email": "room@resource.calendar.google.com", "resource": True},
            {"displayName": "no email"},
        ],
    )

    # When / Then
    assert _ok_event(item) == NormalizedEvent(
        event_id="ev1",
        summary="Design review",
        status="confirmed",
        start_at=datetime(2024, 3, 5, 15, 0, tzinfo=UTC),
        end_at=datetime(2024, 3, 5, 16, 0, tzinfo=UTC),
        all_day=False,
        attendees=(
            Attendee("boss@example.com", "", "accepted", organizer=True, self=False),
            Attendee("me@example.com", "Me", "needsAction", organizer=False, self=True),
            Attendee(
                "room@resource.calendar.google.com",
                "",
                "needsAction",
                organizer=False,
                self=False,
                resource=True,
            ),
        ),
        organizer="boss@example.com",
        recurring_event_id=None,
        recurrence=(),
    )


def test_local_datetime_uses_its_time_zone() -> None:
    # Given a dateTime without offset plus a timeZone
    item = _event(
        start={"dateTime": "2024-07-01T09:00:00", "timeZone": "Europe/Paris"},
        end={"dateTime": "2024-07-01T09:30:00", "timeZone": "Europe/Paris"},
    )

    # When / Then: CEST is UTC+2
    event = _ok_event(item, "America/Los_Angeles")
    assert event.start_at == datetime(2024, 7, 1, 7, 0, tzinfo=UTC)
    assert event.end_at == datetime(2024, 7, 1, 7, 30, tzinfo=UTC)


def test_local_datetime_without_zone_uses_calendar_zone() -> None:
    # Given a dateTime with neither offset nor timeZone
    item = _event(start={"dateTime": "2024-01-10T09:00:00"}, end={"dateTime": "2024-01-10T10:00"})

    # When / Then: Tokyo is UTC+9
    assert _ok_event(item, "Asia/Tokyo").start_at == datetime(2024, 1, 10, 0, 0, tzinfo=UTC)


def test_all_day_event_across_dst_change() -> None:
    # Given a two-day all-day event over the US spring-forward night
    item = _event(start={"date": "2024-03-09"}, end={"date": "2024-03-11"})

    # When it is read in New York
    event = _ok_event(item, "America/New_York")

    # Then midnight EST to midnight EDT: 47 hours, end exclusive
    assert event.all_day is True
    assert event.start_at == datetime(2024, 3, 9, 5, 0, tzinfo=UTC)
    assert event.end_at == datetime(2024, 3, 11, 4, 0, tzinfo=UTC)
    assert event.end_at - event.start_at == timedelta(hours=47)


def test_cancelled_stub() -> None:
    # Given a cancelled event as incremental sync returns it
    item = {"kind": "calendar#event", "id": "gone", "status": "cancelled"}

    # When / Then
    assert _ok_event(item) == NormalizedEvent(
        event_id="gone",
        summary="",
        status="cancelled",
        start_at=None,
        end_at=None,
        all_day=False,
        attendees=(),
        organizer=None,
        recurring_event_id=None,
        recurrence=(),
    )


def test_cancelled_instance_keeps_original_start() -> None:
    # Given a cancelled instance of a recurring event
    item = {
        "id": "rec_20240304T100000Z",
        "status": "cancelled",
        "recurringEventId": "rec",
        "originalStartTime": {"dateTime": "2024-03-04T10:00:00Z"},
    }

    # When / Then
    event = _ok_event(item)
    assert event.recurring_event_id == "rec"
    assert event.original_start_at == datetime(2024, 3, 4, 10, 0, tzinfo=UTC)
    assert event.start_at is None


def test_recurring_master_keeps_rrule() -> None:
    # Given a weekly recurring master
    rules = ["RRULE:FREQ=WEEKLY;BYDAY=MO;UNTIL=20241231T000000Z", "EXDATE:20240311T100000Z"]
    item = _event(
        start={"dateTime": "2024-03-04T10:00:00Z"},
        end={"dateTime": "2024-03-04T10:30:00Z"},
        recurrence=rules,
    )

    # When / Then
    assert _ok_event(item).recurrence == tuple(rules)


def test_unknown_event_time_zone_falls_back_to_calendar_zone() -> None:
    # Given a timeZone no tz database knows
    item = _event(
        start={"date": "2024-01-10", "timeZone": "Mars/Olympus"}, end={"date": "2024-01-11"}
    )

    # When / Then
    event = _ok_event(item, "Asia/Tokyo")
    assert event.start_at == datetime(2024, 1, 9, 15, 0, tzinfo=UTC)
    assert "start: unknown timeZone 'Mars/Olympus', used calendar zone" in event.defects


@pytest.mark.parametrize(
    ("item", "error"),
    [
        ({"status": "confirmed"}, EventError("", "event has no id")),
        ({"id": "e", "status": "maybe"}, EventError("e", "unknown status 'maybe'")),
        ({"id": "e"}, EventError("e", "start missing or unparseable")),
        (
            {"id": "e", "start": {"dateTime": "soon"}},
            EventError("e", "start missing or unparseable"),
        ),
        (["not", "a", "dict"], EventError("", "item is list, not a mapping")),
    ],
)
def test_unusable_events_are_errors(item: Any, error: EventError) -> None:
    # When / Then
    assert normalize_event(item) == error


def test_invalid_user_tz_is_a_caller_error() -> None:
    # When / Then
    with pytest.raises(ValueError, match="not a known IANA time zone"):
        normalize_event(_event(), "Nowhere/Land")
