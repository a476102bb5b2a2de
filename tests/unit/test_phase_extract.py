"""extract: contacts and interactions from hand-made normalized messages and events."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from jobsys.connectors.phases.extract import Contact, Extraction, Interaction, extract
from jobsys.connectors.phases.normalize import (
    Address,
    Attendee,
    NormalizedEvent,
    NormalizedMessage,
    normalize_message,
)

ME = "me@example.com"
T1 = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
T2 = datetime(2024, 3, 2, 9, 0, tzinfo=UTC)
T3 = datetime(2024, 3, 3, 9, 0, tzinfo=UTC)


def message(
    gmail_id: str,
    sender: Address,
    to: tuple[Address, ...] = (),
    cc: tuple[Address, ...] = (),
    *,
    at: datetime | None = T1,
    labels: tuple[str, ...] = ("INBOX",),
) -> NormalizedMessage:
    return NormalizedMessage(
        gmail_id=gmail_id,
        thread_id="t-" + gmail_id,
        subject="s",
        from_addr=sender.addr,
        from_name=sender.name,
        to=to,
        cc=cc,
        sent_at=at,
        labels=labels,
        text_body="",
        message_id=None,
        in_reply_to=None,
        references=(),
    )


def attendee(addr: str, name: str = "", status: str = "accepted", **flags: bool) -> Attendee:
    return Attendee(
        addr,
        name,
        status,
        organizer=flags.get("organizer", False),
        self=flags.get("self", False),
        resource=flags.get("resource", False),
    )


def event(
    event_id: str,
    attendees: tuple[Attendee, ...],
    *,
    at: datetime = T3,
    status: str = "confirmed",
    organizer: str | None = None,
) -> NormalizedEvent:
    return NormalizedEvent(
        event_id=event_id,
        summary="meet",
        status=status,  # type: ignore[arg-type]
        start_at=at,
        end_at=at,
        all_day=False,
        attendees=attendees,
        organizer=organizer,
        recurring_event_id=None,
        recurrence=(),
    )


def test_sent_received_and_met() -> None:
    # Given one sent message, one received message and one meeting
    sent = message(
        "m1",
        Address(ME, "Me"),
        to=(Address("bob@x.org", "Bob"), Address(ME, "")),
        cc=(Address("carol@x.org", ""),),
        at=T2,
        labels=("SENT",),
    )
    received = message("m2", Address("bob@x.org", "Robert"), to=(Address(ME, ""),), at=T1)
    meeting = event(
        "e1",
        (
            attendee(ME, self=True),
            attendee("bob@x.org", "Bob"),
            attendee("dave@x.org", status="declined"),
            attendee("room@resource.calendar.google.com", resource=True),
        ),
    )

    # When extracted
    result = extract(ME.upper(), [sent, received], [meeting])

    # Then each rule yields exactly its interactions, in time order
    assert result == Extraction(
        contacts=(Contact("bob@x.org", "Bob"), Contact("carol@x.org", "")),
        interactions=(
            Interaction("bob@x.org", "message", "inbound", T1, "m2"),
            Interaction("bob@x.org", "message", "outbound", T2, "m1"),
            Interaction("carol@x.org", "message", "outbound", T2, "m1"),
            Interaction("bob@x.org", "meeting", "mutual", T3, "e1"),
        ),
    )


def test_sent_detected_by_from_address_without_label() -> None:
    # Given a message from the user without the SENT label
    sent = message("m1", Address(ME, ""), to=(Address("bob@x.org", ""),))

    # When / Then
    assert extract(ME, [sent], []).interactions == (
        Interaction("bob@x.org", "message", "outbound", T1, "m1"),
    )


def test_drafts_spam_undated_and_senderless_messages_are_skipped() -> None:
    # Given messages that are not relationships
    draft = message("d", Address(ME, ""), to=(Address("a@x.org", ""),), labels=("DRAFT",))
    spam = message("s", Address("spammer@x.org", ""), labels=("SPAM", "INBOX"))
    undated = message("u", Address("b@x.org", ""), at=None)
    senderless = message("n", Address("", ""))

    # When / Then
    assert extract(ME, [draft, spam, undated, senderless], []) == Extraction((), ())


def test_meeting_rules() -> None:
    # Given meetings the user organises, declined, is absent from, or that were cancelled
    organised = event("org", (attendee("a@x.org"),), organizer=ME)
    declined = event("dec", (attendee(ME, status="declined"), attendee("b@x.org")))
    absent = event("abs", (attendee("c@x.org"), attendee("d@x.org")))
    cancelled = event("can", (attendee(ME), attendee("e@x.org")), status="cancelled")

    # When / Then: only the organised one counts
    assert extract(ME, [], [organised, declined, absent, cancelled]).interactions == (
        Interaction("a@x.org", "meeting", "mutual", T3, "org"),
    )


def test_duplicates_collapse_to_natural_key_and_order_is_input_independent() -> None:
    # Given the same message twice and a recipient in both To and Cc
    first = message("m1", Address(ME, ""), to=(Address("a@x.org", ""),), labels=("SENT",))
    again = message(
        "m1",
        Address(ME, ""),
        to=(Address("a@x.org", ""),),
        cc=(Address("a@x.org", ""),),
        labels=("SENT",),
    )
    other = message("m0", Address("z@x.org", ""), at=T1)

    # When extracted in two different orders
    forward = extract(ME, [first, again, other], [])
    backward = extract(ME, [other, again, first], [])

    # Then the result is identical and each key appears once
    assert forward == backward
    assert [(i.source_id, i.addr) for i in forward.interactions] == [
        ("m0", "z@x.org"),
        ("m1", "a@x.org"),
    ]


def test_display_name_is_most_frequent_non_empty() -> None:
    # Given a contact seen as "Bob" twice, "Robert" once, and as its own address
    messages = [
        message("m1", Address("bob@x.org", "Robert")),
        message("m2", Address("bob@x.org", "Bob")),
        message("m3", Address("bob@x.org", "bob@x.org")),
        message("m4", Address(ME, ""), to=(Address("bob@x.org", "Bob"),), labels=("SENT",)),
        message("m5", Address("tie@x.org", "Zed")),
        message("m6", Address("tie@x.org", "Ann")),
    ]

    # When / Then: ties go to the alphabetically first name
    assert extract(ME, messages, []).contacts == (
        Contact("bob@x.org", "Bob"),
        Contact("tie@x.org", "Ann"),
    )


def test_empty_user_is_rejected() -> None:
    # When / Then
    with pytest.raises(ValueError, match="user_email"):
        extract("  ", [], [])


def test_only_contactable_addresses_become_contacts() -> None:
    # Given messages keeping mailboxes without "@" or a dotted domain, as the headers had them
    received = message("m1", Address("foo", ""), (Address(ME, ""),))
    sent = message(
        "m2",
        Address(ME, ""),
        (Address("xx", ""), Address("mikel@lindsaar", ""), Address("bob@example.org", "Bob")),
        labels=("SENT",),
    )

    # When / Then: extraction leaves them out; the real recipient is kept
    found = extract(ME, [received, sent], [])
    assert [c.addr for c in found.contacts] == ["bob@example.org"]


def test_every_from_mailbox_is_an_inbound_interaction() -> None:
    # Given a message with two From mailboxes
    ann, bob = Address("ann@example.org", "Ann"), Address("bob@example.org", "Bob")
    mail = replace(message("m1", ann, (Address(ME, ""),)), senders=(ann, bob))

    # When / Then
    assert extract(ME, [mail], []).interactions == (
        Interaction("ann@example.org", "message", "inbound", T1, "m1"),
        Interaction("bob@example.org", "message", "inbound", T1, "m1"),
    )


def test_a_message_dated_only_by_gmail_counts() -> None:
    # Given a message without a Date header, normalized with its internalDate
    raw = b"From: Ann <ann@example.org>\r\nTo: me@example.com\r\nSubject: undated\r\n\r\nx"
    mail = normalize_message("g1", "t1", raw, ["INBOX"], T2)
    assert isinstance(mail, NormalizedMessage)

    # When / Then: it is an interaction at that time
    assert extract(ME, [mail], []).interactions == (
        Interaction("ann@example.org", "message", "inbound", T2, "g1"),
    )
