"""The Google emulator itself: deterministic data, admin API, protocol details, quota."""

from __future__ import annotations

import base64
import email
import email.policy
import json
import re
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any

import pytest

from jobsys.connectors.google.clients import build_gmail, execute, make_credentials
from jobsys.connectors.google.emulator import CLIENT_ID, CLIENT_SECRET, Emulator, running
from jobsys.connectors.google.emulator.quota import QuotaBook

MALFORMED = (
    b"From: =?x-unknown?Q?broken?= <bad@@example>\r\n"
    b"Subject: =?utf-8?B?not base64!?=\r\n"
    b'Content-Type: multipart/mixed; boundary="never-closed"\r\n'
    b"Date: yesterday-ish\r\n\r\n"
    b"--never-closed\r\nContent-Type: text/plain; charset=klingon\r\n"
    b"Content-Transfer-Encoding: base64\r\n\r\n@@not base64@@\xff\xfe\r\n"
)


def _parse(raw: bytes) -> EmailMessage:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    with running(users=2, seed=3, messages_per_user=60, events_per_user=30) as emu:
        yield emu


@pytest.fixture(scope="module")
def large() -> Iterator[Emulator]:
    """One mailbox large enough that every generated case occurs (the data is seeded)."""
    with running(users=1, seed=3, messages_per_user=200, events_per_user=60) as emu:
        yield emu


def _http(
    emu: Emulator, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(
        emu.base_url + path, data=body or None, method=method, headers=headers or {}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, dict(response.headers.items()), response.read()
    except urllib.error.HTTPError as e:
        with e:
            return e.code, dict(e.headers.items()), e.read()


def _get(emu: Emulator, path: str, token: str) -> tuple[int, dict[str, str], Any]:
    status, headers, body = _http(emu, "GET", path, headers={"Authorization": f"Bearer {token}"})
    return status, headers, json.loads(body)


def test_same_seed_gives_identical_data_and_another_seed_does_not() -> None:
    # Given two emulators with seed 11 and one with seed 12, dated from one anchor
    when = datetime(2026, 3, 2, tzinfo=UTC)
    with (
        running(seed=11, anchor=when) as a,
        running(seed=11, anchor=when) as b,
        running(seed=12, anchor=when) as c,
    ):
        email_ = a.users()[0].email

        # When their mailboxes and calendars are read
        def snapshot(emu: Emulator) -> tuple[Any, ...]:
            box = emu.world.user(email_).mailbox.messages
            return (
                [(m.id, m.raw) for m in box.values()],
                emu.truth_events(email_),
                [u.access_token for u in emu.users()],
            )

        # Then the same seed is byte-identical and another seed differs
        assert snapshot(a) == snapshot(b)
        assert snapshot(a)[0] != snapshot(c)[0]


def test_malformed_mime_added_over_http_comes_back_byte_identical(emulator: Emulator) -> None:
    # Given a malformed message posted to the admin API
    user = emulator.users()[0]
    status, _, body = _http(
        emulator, "POST", f"/_emulator/users/{user.email}/messages?labelIds=INBOX", MALFORMED
    )
    assert status == 200
    ident = json.loads(body)["id"]

    # When it is read in format raw and full
    _, _, raw = _get(emulator, f"/gmail/v1/users/me/messages/{ident}?format=raw", user.access_token)
    status_full, _, full = _get(emulator, f"/gmail/v1/users/me/messages/{ident}", user.access_token)

    # Then raw is byte-identical and full still answers with a payload
    assert base64.urlsafe_b64decode(raw["raw"]) == MALFORMED
    assert status_full == 200
    assert full["payload"]["mimeType"] == "multipart/mixed"
    assert raw["labelIds"] == ["INBOX"]


def _parts(msg: EmailMessage) -> list[EmailMessage]:
    return [p for p in msg.walk() if isinstance(p, EmailMessage)]


def _eight_bit(head: bytes, encoding: str) -> bool:
    """True when the header block holds 8-bit bytes valid in ``encoding`` (and not UTF-8)."""
    if head.isascii():
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return encoding == "cp1252"
    return encoding == "utf-8"


def test_generated_mail_covers_the_hard_cases(large: Emulator) -> None:
    # Given one generated mailbox
    user = large.users()[0]
    stored = list(large.world.user(user.email).mailbox.messages.values())
    parsed = [_parse(m.raw) for m in stored]
    heads = [m.raw.split(b"\r\n\r\n", 1)[0] for m in stored]

    # When its structure is inspected
    types = {part.get_content_type() for p in parsed for part in _parts(p)}
    charsets = {part.get_content_charset() for p in parsed for part in _parts(p)}
    flowed = [p for p in parsed for part in _parts(p) if part.get_param("format") == "flowed"]
    attachments = [a.get_filename() for p in parsed for a in p.iter_attachments()]
    replies = [p for p in parsed if p["In-Reply-To"] and p["References"]]
    sent = [p for p in parsed if user.email in str(p["From"])]

    # Then every MIME shape and charset of issue 13 is present
    assert {
        "multipart/alternative",
        "multipart/mixed",
        "multipart/related",
        "text/plain",
        "message/rfc822",
        "application/ms-tnef",
        "text/calendar",
        "image/png",
    } <= types
    assert {"iso-8859-1", "windows-1252", "shift_jis", "iso-2022-jp", "gb2312", "utf-8"} <= charsets
    assert flowed and replies and sent
    assert any(name and not name.isascii() for name in attachments)
    assert "winmail.dat" in attachments
    # And every header case: Q and B words of two charsets on folded lines, 8-bit UTF-8
    # and Windows-1252, over-long lines, mailing lists, two From mailboxes, repeated Cc
    # fields, no Date
    assert any(re.search(rb"\?iso-8859-1\?q\?[^\r]*\?=\r\n =\?utf-8\?[qb]\?", h) for h in heads)
    assert any(b"?b?" in h for h in heads) and any(b"?q?" in h for h in heads)
    assert any(_eight_bit(h, "utf-8") for h in heads)
    assert any(_eight_bit(h, "cp1252") for h in heads)
    assert any(len(line) > 998 for h in heads for line in h.split(b"\r\n"))
    assert any(p["List-Id"] and p["List-Unsubscribe"] for p in parsed)
    assert any(len(p["From"].addresses) == 2 and p["Sender"] for p in parsed)
    assert any(len(p.get_all("Cc") or []) > 1 for p in parsed)
    assert any(p["Date"] is None for p in parsed)


def test_generated_mail_is_addressed_as_its_labels_say(emulator: Emulator) -> None:
    # Given one generated mailbox and its truth
    user = emulator.users()[0]
    stored = emulator.world.user(user.email).mailbox.messages

    # Then every SENT message is from the owner, every other one addressed to them,
    # or to a mailing list they read (List-Id)
    for t in emulator.truth_messages(user.email):
        if "SENT" in t["labels"]:
            assert t["senders"] == [user.email]
        elif _parse(stored[t["id"]].raw)["List-Id"]:
            assert t["to"] == ["team@lists.example.org"]
        else:
            assert user.email in t["to"]


def test_truth_matches_an_independent_parse_of_the_bytes(emulator: Emulator) -> None:
    # Given the ground truth and the raw bytes of a mailbox
    address = emulator.users()[0].email
    stored = emulator.world.user(address).mailbox.messages

    for t in emulator.truth_messages(address):
        # When the stored bytes are parsed with the standard library; header blocks
        # sent as undeclared Windows-1252 are read as such first (the standard parser
        # shows U+FFFD there; jobsys reads them as the truth says)
        raw = stored[t["id"]].raw
        head, body = raw.split(b"\r\n\r\n", 1)
        if _eight_bit(head, "cp1252"):
            raw = head.decode("cp1252").encode("utf-8") + b"\r\n\r\n" + body
        msg = _parse(raw)

        # Then subject, senders, recipients and date agree with the truth
        assert " ".join(str(msg["Subject"]).split()) == t["subject"]
        assert [a.addr_spec for a in msg["From"].addresses] == t["senders"]
        assert [a.addr_spec for h in msg.get_all("To") for a in h.addresses] == t["to"]
        assert [a.addr_spec for h in msg.get_all("Cc") or [] for a in h.addresses] == t["cc"]
        date = msg["Date"].datetime if msg["Date"] else t["internal_date"]
        assert date == t["sent_at"]
    # And replies share the thread of the message they answer
    by_header = {t["message_id"]: t for t in emulator.truth_messages(address)}
    for t in by_header.values():
        if t["in_reply_to"]:
            assert by_header[t["in_reply_to"]]["thread_id"] == t["thread_id"]


def test_truth_of_added_mail_reads_every_to_and_cc_field(emulator: Emulator) -> None:
    # Given a message with two To fields and three Cc fields, one with a folded name
    user = emulator.users()[0]
    raw = (
        b"From: Ann <ann@example.org>\r\nTo: bob@example.org\r\nTo: Cid <cid@example.org>\r\n"
        b'Cc: d1@example.org\r\nCc: "Doe,\r\n Jane" <d2@example.org>\r\nCc: d3@example.org\r\n'
        b"Subject: three\r\n\r\nbody\r\n"
    )

    # When it is delivered and its truth read
    stored = emulator.add_message(user.email, raw)
    truth = next(t for t in emulator.truth_messages(user.email) if t["id"] == stored.id)

    # Then the truth holds every recipient, as the standard parser reads the message,
    # and without a Date header the arrival time is its sent_at
    assert truth["to"] == ["bob@example.org", "cid@example.org"]
    assert truth["cc"] == ["d1@example.org", "d2@example.org", "d3@example.org"]
    assert truth["sent_at"] == truth["internal_date"]


def test_generated_mail_is_recent_by_default() -> None:
    # Given an emulator with its default anchor
    with running(users=1, seed=5, messages_per_user=30, events_per_user=10) as emu:
        address = emu.users()[0].email

        # When its newest message and its events are looked at
        newest = emu.truth_messages(address)[0]["sent_at"]
        starts = [t["start"] for t in emu.truth_events(address) if t["start"]]

    # Then mail ends at the start of today (UTC) and the calendar spans that moment
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    assert newest is not None and today - timedelta(days=1) <= newest <= today
    assert min(starts) < today < max(starts)


def test_generated_calendar_covers_the_hard_cases(large: Emulator) -> None:
    # Given one generated calendar
    address = large.users()[0].email
    events = large.world.user(address).calendar.events.values()
    truth = large.truth_events(address)

    # Then it has series, cancelled instances, all-day events, several zones and answers
    assert any(e.get("recurrence") for e in events)
    assert any(t["recurring_event_id"] and t["status"] == "cancelled" for t in truth)
    assert any(t["all_day"] for t in truth)
    zones = {e["start"].get("timeZone") for e in events if "start" in e} - {None}
    assert len(zones) >= 3
    answers = {a["response_status"] for t in truth for a in t["attendees"]}
    assert {"accepted", "declined"} <= answers
    assert any(t["organizer"] == address for t in truth)


def test_messages_list_filters_by_label_query_and_label_ids(emulator: Emulator) -> None:
    # Given the truth of a mailbox
    user = emulator.users()[0]
    truth = emulator.truth_messages(user.email)

    def listed(query: str) -> list[str]:
        path = f"/gmail/v1/users/me/messages?maxResults=500&{query}"
        return [m["id"] for m in _get(emulator, path, user.access_token)[2].get("messages", [])]

    # When listing with q=label:sent, q=in:inbox and labelIds=UNREAD
    # Then each listing is exactly the labelled messages, newest first
    assert listed("q=label:sent") == [t["id"] for t in truth if "SENT" in t["labels"]]
    assert listed("q=in:inbox") == [t["id"] for t in truth if "INBOX" in t["labels"]]
    assert listed("labelIds=UNREAD") == [t["id"] for t in truth if "UNREAD" in t["labels"]]
    assert listed("q=label:projects") == [t["id"] for t in truth if "Label_1" in t["labels"]]


def test_http_errors_have_googles_shape(emulator: Emulator) -> None:
    # Given a revoked user and a user over quota
    revoked, throttled = emulator.users()
    emulator.revoke(revoked.email)
    emulator.set_faults(throttle_next=1)

    # When each calls getProfile
    s401, h401, b401 = _get(emulator, "/gmail/v1/users/me/profile", revoked.access_token)
    s429, h429, b429 = _get(emulator, "/gmail/v1/users/me/profile", throttled.access_token)

    # Then 401 carries WWW-Authenticate and 429 Retry-After, both as {"error": {...}}
    assert (s401, b401["error"]["errors"][0]["reason"]) == (401, "authError")
    assert "WWW-Authenticate" in h401
    assert (s429, b429["error"]["errors"][0]["reason"]) == (429, "userRateLimitExceeded")
    assert int(h429["Retry-After"]) >= 1


def test_batch_answers_per_part_statuses(emulator: Emulator) -> None:
    # Given a hand-written batch with one existing and one missing message
    user = emulator.users()[0]
    existing = emulator.truth_messages(user.email)[0]["id"]
    parts = []
    for n, ident in enumerate((existing, "missing")):
        parts.append(
            f"--B\r\nContent-Type: application/http\r\nContent-ID: <x + {n}>\r\n\r\n"
            f"GET /gmail/v1/users/me/messages/{ident}?format=minimal HTTP/1.1\r\n"
            f"Authorization: Bearer {user.access_token}\r\n\r\n"
        )
    body = ("".join(parts) + "--B--\r\n").encode()

    # When it is posted to the batch endpoint
    status, headers, answer = _http(
        emulator, "POST", "/batch/gmail/v1", body, {"Content-Type": "multipart/mixed; boundary=B"}
    )

    # Then the batch is 200 multipart/mixed with a 200 and a 404 part, in order
    assert status == 200
    assert headers["Content-Type"].startswith("multipart/mixed")
    text = answer.decode()
    assert (
        text.index("<response-x + 0>") < text.index("HTTP/1.1 200") < text.index("<response-x + 1>")
    )
    assert "HTTP/1.1 404" in text


def test_token_endpoint_refreshes_and_refuses_revoked_grants(emulator: Emulator) -> None:
    # Given a user's refresh token
    user = emulator.users()[0]
    form = f"grant_type=refresh_token&refresh_token={user.refresh_token}".encode()

    # When it is exchanged, then after revocation exchanged again
    ok_status, _, ok = _http(emulator, "POST", "/token", form)
    emulator.revoke(user.email)
    bad_status, _, bad = _http(emulator, "POST", "/token", form)

    # Then the first yields a working token and the second invalid_grant
    assert ok_status == 200
    assert json.loads(bad)["error"] == "invalid_grant" and bad_status == 400
    emulator.world.user(user.email).revoked = False
    assert _get(emulator, "/gmail/v1/users/me/profile", json.loads(ok)["access_token"])[0] == 200


def test_admin_api_provisions_users_sets_faults_and_reports_stats(emulator: Emulator) -> None:
    # Given the admin API
    status, _, body = _http(emulator, "GET", "/_emulator/users")
    users = json.loads(body)["users"]
    assert status == 200 and [u["email"] for u in users] == [u.email for u in emulator.users()]

    # When faults are set over HTTP and a call is made with the client
    _http(emulator, "POST", "/_emulator/faults", json.dumps({"error_rate": 1.0}).encode())
    creds = make_credentials(
        users[0]["access_token"],
        users[0]["refresh_token"],
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        token_uri=emulator.token_uri,
    )
    with pytest.raises(Exception, match="503"):
        execute(build_gmail(creds, endpoint=emulator.base_url).users().getProfile(userId="me"))
    _http(emulator, "DELETE", "/_emulator/faults")

    # Then the stats count the request as an error for that user and method
    _, _, stats = _http(emulator, "GET", "/_emulator/stats")
    counters = json.loads(stats)["users"][users[0]["email"]]["gmail.users.getProfile"]
    assert counters == {"requests": 1, "throttled": 0, "errors": 1, "units": 0}
    # And unknown users are 404, bad fault settings 400
    assert _http(emulator, "POST", "/_emulator/users/nobody@x/revoke")[0] == 404
    assert _http(emulator, "POST", "/_emulator/faults", b'{"error_rate": 2}')[0] == 400


def test_quota_bucket_allows_a_burst_then_the_rate() -> None:
    # Given a bucket of 10 units refilled at 5 a second, on a fake clock
    now = [0.0]
    book = QuotaBook({"gmail": (5.0, 10.0)}, clock=lambda: now[0])

    # When two 5-unit requests, a third, then a third after one second are made
    first = [book.charge("u", "gmail", "m", 5) for _ in range(2)]
    refused = book.charge("u", "gmail", "m", 5)
    now[0] = 1.0
    later = book.charge("u", "gmail", "m", 5)

    # Then the burst passes, the third waits one second, and then passes
    assert first == [None, None]
    assert refused == 1.0
    assert later is None
    snapshot: Any = book.snapshot()
    assert snapshot["users"]["u"]["m"] == {"requests": 4, "throttled": 1, "errors": 0, "units": 15}


def _raw_request(emu: Emulator, head: str) -> bytes:
    """Send a request head by hand (no body) and read what comes back until the server closes."""
    host, port = emu.base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port.rstrip("/"))), timeout=5) as conn:
        conn.sendall(head.encode())
        received = b""
        try:
            while chunk := conn.recv(65536):
                received += chunk
        except TimeoutError:
            pass  # the server kept waiting for a body it should have refused
        return received


@pytest.mark.parametrize(
    ("length", "status"),
    [("-5", b"400"), ("abc", b"400"), (str(10**12), b"413"), (str(16 * 2**20 + 1), b"413")],
)
def test_admin_server_refuses_a_bad_or_oversized_content_length_unread(
    emulator: Emulator, length: str, status: bytes
) -> None:
    # When a request announces a negative, malformed or oversized body
    head = (
        f"POST /_emulator/users HTTP/1.1\r\nHost: emulator\r\n"
        f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    )
    received = _raw_request(emulator, head)
    # Then it is refused at once, in Google's error shape, and the connection closed
    assert received.startswith(b"HTTP/1.1 " + status), received[:200]
    assert b'"error"' in received
    # and the emulator still answers others
    assert _http(emulator, "GET", "/_emulator/users")[0] == 200
