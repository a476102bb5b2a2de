"""The Google clients (real google-api-python-client) against the emulator on loopback."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest

from jobsys.connectors.google.batch import get_raw_messages
from jobsys.connectors.google.calendar_events import list_events, list_events_page
from jobsys.connectors.google.clients import (
    RefreshedToken,
    Service,
    build_calendar,
    build_gmail,
    execute,
    gmail_batch_uri,
    make_credentials,
)
from jobsys.connectors.google.emulator import CLIENT_ID, CLIENT_SECRET, Emulator, running
from jobsys.connectors.google.errors import (
    AuthError,
    ExpiredCursorError,
    NotFoundError,
    QuotaError,
    TransientError,
)
from jobsys.connectors.google.gmail import get_profile, list_history, list_message_ids

RAW = (
    b"From: Ann <ann@example.org>\r\nTo: user1@example.com\r\nSubject: hello\r\n"
    b"Message-ID: <new-1@example.org>\r\nDate: Mon, 03 Feb 2025 10:00:00 +0000\r\n\r\nbody\r\n"
)


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    with running(users=2, seed=7, messages_per_user=30, events_per_user=12) as emu:
        yield emu


def _gmail(emu: Emulator, user: int = 0, **kwargs: Any) -> Service:
    creds = _credentials(emu, user, **kwargs)
    return build_gmail(creds, endpoint=emu.base_url, timeout=5)


def _calendar(emu: Emulator, user: int = 0) -> Service:
    return build_calendar(_credentials(emu, user), endpoint=emu.base_url, timeout=5)


def _credentials(emu: Emulator, user: int, **kwargs: Any) -> Any:
    account = emu.users()[user]
    return make_credentials(
        kwargs.pop("token", account.access_token),
        account.refresh_token,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        token_uri=emu.token_uri,
        **kwargs,
    )


def _method(emu: Emulator, email: str, name: str) -> dict[str, int]:
    users: dict[str, dict[str, dict[str, int]]] = emu.stats()["users"]
    return users.get(email, {}).get(name, {"requests": 0, "throttled": 0, "errors": 0, "units": 0})


def test_full_listing_and_batched_get_return_exactly_the_ground_truth(emulator: Emulator) -> None:
    # Given a mailbox of 30 messages
    email = emulator.users()[0].email
    gmail = _gmail(emulator)
    truth = {t["id"]: t for t in emulator.truth_messages(email)}

    # When every id is listed in pages of 7 and fetched in batches of 8
    refs = list_message_ids(gmail, page_size=7)
    result = get_raw_messages(
        gmail, [r.id for r in refs], batch_uri=gmail_batch_uri(emulator.base_url), batch_size=8
    )

    # Then ids, threads, labels and bytes are exactly the mailbox's
    assert [r.id for r in refs] == list(truth)
    assert {r.id: r.thread_id for r in refs} == {i: t["thread_id"] for i, t in truth.items()}
    assert result.errors == {}
    assert set(result.messages) == set(truth)
    stored = emulator.world.user(email).mailbox.messages
    for ident, message in result.messages.items():
        assert message.raw == stored[ident].raw
        assert list(message.label_ids) == truth[ident]["labels"]
    # And each message cost one request of 5 units, in 4 HTTP batches
    gets = _method(emulator, email, "gmail.users.messages.get")
    assert (gets["requests"], gets["units"]) == (30, 150)
    assert _method(emulator, email, "gmail.users.messages.list")["requests"] == 5


def test_incremental_history_returns_exactly_the_delta(emulator: Emulator) -> None:
    # Given a cursor taken from the profile, then two deliveries and a deletion
    email = emulator.users()[0].email
    gmail = _gmail(emulator)
    cursor = get_profile(gmail).history_id
    first = emulator.add_message(email, RAW)
    second = emulator.add_message(email, RAW.replace(b"new-1", b"new-2"), labels=("SENT",))
    gone = emulator.truth_messages(email)[-1]["id"]
    emulator.delete_message(email, gone)

    # When history since the cursor is read in pages of one record
    delta = list_history(gmail, cursor, page_size=1)

    # Then exactly those changes come back, and the new cursor is the profile's
    assert {r.id for r in delta.added} == {first.id, second.id}
    assert [r.id for r in delta.deleted] == [gone]
    assert delta.history_id == get_profile(gmail).history_id
    assert _method(emulator, email, "gmail.users.history.list")["requests"] == 3


def test_a_message_added_then_deleted_is_only_reported_deleted(emulator: Emulator) -> None:
    # Given a message delivered and deleted after the cursor
    email = emulator.users()[0].email
    gmail = _gmail(emulator)
    cursor = get_profile(gmail).history_id
    added = emulator.add_message(email, RAW)
    emulator.delete_message(email, added.id)

    # When the history is read
    delta = list_history(gmail, cursor)

    # Then it is not reported as added
    assert delta.added == ()
    assert [r.id for r in delta.deleted] == [added.id]


def test_expired_history_raises_expired_cursor(emulator: Emulator) -> None:
    # Given a cursor that the mailbox no longer retains
    gmail = _gmail(emulator)
    cursor = get_profile(gmail).history_id
    emulator.add_message(emulator.users()[0].email, RAW)
    emulator.expire_cursors()

    # When / Then history since it raises ExpiredCursorError (404)
    with pytest.raises(ExpiredCursorError) as info:
        list_history(gmail, cursor)
    assert (info.value.reason, info.value.retryable, info.value.status) == (
        "expired_cursor",
        False,
        404,
    )


def test_calendar_full_then_incremental_returns_exactly_the_changes(emulator: Emulator) -> None:
    # Given a full listing in pages of 5
    email = emulator.users()[0].email
    calendar = _calendar(emulator)
    full = list_events(calendar, page_size=5)
    truth = emulator.truth_events(email)
    listed = {t["id"] for t in truth if t["status"] != "cancelled" or t["recurring_event_id"]}
    assert {e["id"] for e in full.events} == listed
    assert not full.incremental

    # When one event is cancelled and one added, and the token is used
    victim = next(e["id"] for e in full.events if e["status"] == "confirmed")
    emulator.cancel_event(email, victim)
    added = emulator.put_event(
        email,
        {
            "summary": "New",
            "start": {"dateTime": "2025-02-03T09:00:00+01:00"},
            "end": {"dateTime": "2025-02-03T10:00:00+01:00"},
        },
    )
    delta = list_events(calendar, sync_token=full.next_sync_token)

    # Then exactly those two come back, the cancelled one as "cancelled"
    assert {e["id"]: e["status"] for e in delta.events} == {
        victim: "cancelled",
        added["id"]: "confirmed",
    }
    assert delta.incremental
    # And the next token yields nothing new
    assert list_events(calendar, sync_token=delta.next_sync_token).events == ()


def test_invalid_or_expired_sync_token_raises_expired_cursor(emulator: Emulator) -> None:
    # Given a valid token that is then expired, and a token that was never valid
    calendar = _calendar(emulator)
    token = list_events(calendar).next_sync_token
    emulator.expire_cursors(emulator.users()[0].email)

    # When / Then both raise ExpiredCursorError (410)
    for bad in (token, "not-a-token"):
        with pytest.raises(ExpiredCursorError) as info:
            list_events_page(calendar, sync_token=bad)
        assert info.value.status == 410


def test_revoked_user_gets_auth_error_and_refresh_fails(emulator: Emulator) -> None:
    # Given a revoked user
    emulator.revoke(emulator.users()[0].email)

    # When / Then calls fail with AuthError (401 → refresh → invalid_grant)
    with pytest.raises(AuthError) as info:
        get_profile(_gmail(emulator))
    assert (info.value.reason, info.value.retryable) == ("auth", False)
    # And a client with no access token cannot obtain one
    with pytest.raises(AuthError):
        get_profile(_gmail(emulator, token=None))
    # And batches fail the same way
    with pytest.raises(AuthError):
        get_raw_messages(_gmail(emulator), ["x"], batch_uri=gmail_batch_uri(emulator.base_url))


def test_expired_access_token_is_refreshed_and_handed_to_the_callback(
    emulator: Emulator,
) -> None:
    # Given a client whose access token has expired
    email = emulator.users()[0].email
    refreshed: list[RefreshedToken] = []
    gmail = _gmail(emulator, on_refresh=refreshed.append)
    old = emulator.users()[0].access_token
    emulator.expire_access_tokens(email)

    # When it calls Gmail
    profile = get_profile(gmail)

    # Then the call succeeds on a new token, which the callback received
    assert profile.email == email
    assert len(refreshed) == 1
    assert refreshed[0].token not in ("", old)
    assert refreshed[0].token == emulator.users()[0].access_token


def test_another_users_mailbox_is_forbidden(emulator: Emulator) -> None:
    # Given user 1's token
    gmail = _gmail(emulator, 0)
    other = emulator.users()[1].email

    # When / Then reading user 2's profile is a 403 AuthError
    with pytest.raises(AuthError) as info:
        execute(gmail.users().getProfile(userId=other))
    assert info.value.status == 403


def test_quota_exceeded_raises_quota_error_with_retry_after() -> None:
    # Given a user allowed 1 unit a second with a burst of 10
    with running(
        users=1, messages_per_user=3, gmail_units_per_second=1, gmail_burst_units=10
    ) as emu:
        gmail = _gmail(emu)
        email = emu.users()[0].email
        list_message_ids(gmail)
        list_message_ids(gmail)

        # When a third listing (5 more units) is made at once
        with pytest.raises(QuotaError) as info:
            list_message_ids(gmail)

        # Then it is a retryable quota error with the server's Retry-After
        assert (info.value.reason, info.value.retryable, info.value.status) == ("quota", True, 429)
        assert info.value.api_reason == "userRateLimitExceeded"
        assert info.value.retry_after is not None and 1 <= info.value.retry_after <= 5
        assert _method(emu, email, "gmail.users.messages.list")["throttled"] == 1


def test_throttled_parts_of_a_batch_are_per_message_quota_errors() -> None:
    # Given a burst that fits 3 messages.get
    with running(
        users=1, messages_per_user=6, gmail_units_per_second=1, gmail_burst_units=15
    ) as emu:
        gmail = _gmail(emu)
        ids = [t["id"] for t in emu.truth_messages(emu.users()[0].email)]

        # When 6 are fetched in one batch
        result = get_raw_messages(gmail, ids, batch_uri=gmail_batch_uri(emu.base_url))

        # Then 3 succeed and 3 are retryable quota errors
        assert len(result.messages) == 3
        assert sorted(result.retryable_ids) == sorted(set(ids) - set(result.messages))
        assert all(isinstance(e, QuotaError) for e in result.errors.values())
        assert result.retry_after is not None and result.retry_after >= 1


def test_a_message_deleted_between_list_and_get_is_a_per_message_not_found(
    emulator: Emulator,
) -> None:
    # Given a listed message that is then deleted
    email = emulator.users()[0].email
    gmail = _gmail(emulator)
    ids = [r.id for r in list_message_ids(gmail)][:3]
    emulator.delete_message(email, ids[1])

    # When the three are fetched
    result = get_raw_messages(gmail, ids, batch_uri=gmail_batch_uri(emulator.base_url))

    # Then two arrive and the deleted one is a NotFoundError
    assert set(result.messages) == {ids[0], ids[2]}
    assert isinstance(result.errors[ids[1]], NotFoundError)
    assert result.retryable_ids == []


@pytest.mark.parametrize(
    ("faults", "expected"),
    [
        ({"error_rate": 1.0}, TransientError),
        ({"outage_seconds": 60.0}, TransientError),
        ({"throttle_next": 1}, QuotaError),
    ],
)
def test_injected_faults_are_classified(
    emulator: Emulator, faults: dict[str, float], expected: type[Exception]
) -> None:
    # Given a fault
    emulator.set_faults(**faults)

    # When / Then a call raises the matching retryable error
    with pytest.raises(expected) as info:
        get_profile(_gmail(emulator))
    assert getattr(info.value, "retryable", None) is True
    # And once the faults are cleared, calls succeed again
    emulator.clear_faults()
    assert get_profile(_gmail(emulator)).messages_total == 30


def test_unreachable_endpoint_is_transient(emulator: Emulator) -> None:
    # Given a client built for an emulator that has stopped
    gmail = _gmail(emulator)
    emulator.stop()

    # When / Then the call fails as TransientError
    with pytest.raises(TransientError):
        get_profile(gmail)


def test_raw_format_round_trips_through_base64url(emulator: Emulator) -> None:
    # Given a message with bytes that need base64url's '-' and '_'
    email = emulator.users()[0].email
    raw = RAW + bytes(range(256)) * 2
    stored = emulator.add_message(email, raw)

    # When it is fetched in format=raw directly
    data = execute(_gmail(emulator).users().messages().get(userId="me", id=stored.id, format="raw"))

    # Then the bytes are identical
    assert base64.urlsafe_b64decode(data["raw"]) == raw
