"""The Google emulator itself: deterministic data, admin API, protocol details, quota."""

from __future__ import annotations

import base64
import email
import email.policy
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
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


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    with running(users=2, seed=3, messages_per_user=60, events_per_user=30) as emu:
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
    # Given two emulators with seed 11 and one with seed 12
    with running(seed=11) as a, running(seed=11) as b, running(seed=12) as c:
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


def test_generated_mail_covers_the_hard_cases(emulator: Emulator) -> None:
    # Given one generated mailbox
    user = emulator.users()[0]
    stored = emulator.world.user(user.email).mailbox.messages.values()
    parsed = [email.message_from_bytes(m.raw, policy=email.policy.default) for m in stored]

    # When its structure is inspected
    types = {p.get_content_type() for p in parsed}
    charsets = {part.get_content_charset() for p in parsed for part in p.walk()}
    encoded_subjects = [m for m in stored if b"Subject: =?" in m.raw]
    replies = [p for p in parsed if p["In-Reply-To"] and p["References"]]
    attachments = [a.get_filename() for p in parsed for a in p.iter_attachments()]
    sent = [p for p in parsed if user.email in str(p["From"])]

    # Then every hard case is present
    assert {"multipart/alternative", "multipart/mixed", "text/plain"} <= types
    assert {"iso-8859-1", "windows-1252", "shift_jis", "utf-8"} <= charsets
    assert encoded_subjects and replies and sent
    assert any(name and not name.isascii() for name in attachments)
    # And every SENT message is from the owner, every other one addressed to them
    truth = emulator.truth_messages(user.email)
    for t in truth:
        if "SENT" in t["labels"]:
            assert t["sender"] == user.email
        else:
            assert user.email in t["to"]


def test_truth_matches_an_independent_parse_of_the_bytes(emulator: Emulator) -> None:
    # Given the ground truth and the raw bytes of a mailbox
    address = emulator.users()[0].email
    stored = emulator.world.user(address).mailbox.messages

    for t in emulator.truth_messages(address):
        # When the stored bytes are parsed with the standard library
        msg = email.message_from_bytes(stored[t["id"]].raw, policy=email.policy.default)

        # Then subject, sender, recipients and date agree with the truth
        assert str(msg["Subject"]) == t["subject"]
        assert msg["From"].addresses[0].addr_spec == t["sender"]
        assert [a.addr_spec for a in msg["To"].addresses] == t["to"]
        assert msg["Date"].datetime == t["sent_at"]
    # And replies share the thread of the message they answer
    by_header = {t["message_id"]: t for t in emulator.truth_messages(address)}
    for t in by_header.values():
        if t["in_reply_to"]:
            assert by_header[t["in_reply_to"]]["thread_id"] == t["thread_id"]


def test_generated_calendar_covers_the_hard_cases(emulator: Emulator) -> None:
    # Given one generated calendar
    address = emulator.users()[0].email
    events = emulator.world.user(address).calendar.events.values()
    truth = emulator.truth_events(address)

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
