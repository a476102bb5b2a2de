"""Extraction: who the user wrote to, heard from and met, and when.

Rules, applied to the user's own normalized data:

* A message labelled ``DRAFT`` (never sent) or ``SPAM`` (not a relationship)
  is skipped, as is a message without ``sent_at`` (normalization already fell
  back to Gmail's ``internalDate``, so only a message without either).
* Only contactable addresses take part: what ``mime.clean_address`` accepts
  (one ``@`` and a dotted domain). Normalized messages keep every mailbox as
  the header gave it (``To: XX`` too); this is where such ones are left out.
* A message is the user's own when it is labelled ``SENT`` or one of its From
  mailboxes is the user's address: each To/Cc recipient other than the user
  gets an ``outbound`` interaction. Any other message gives each of its From
  mailboxes (RFC 5322 allows several) an ``inbound`` interaction.
* A meeting is a non-cancelled event with a start time in which the user is an
  attendee who has not declined, or the organizer. Every other attendee that is
  not a resource (room, device) and has not declined gets a ``mutual``
  interaction at the event's start.
* An invitation mailed as ``text/calendar`` (``NormalizedMessage.invites``) is
  a meeting too, unless the user's Calendar holds the same event (the same
  ``iCalUID``), which then speaks for it. Per UID the version with the highest
  ``SEQUENCE`` (then the latest message) among REQUEST, PUBLISH and CANCEL
  counts; a CANCEL or ``STATUS:CANCELLED`` yields nothing, replies are
  ignored. Its participants are the attendees and the organizer, as for an
  event; the source id is ``ical:<UID>``.
* Interactions are unique by their natural key ``(kind, source_id, addr)``
  and sorted by ``(at, kind, source_id, addr)``; contacts are the addresses
  with at least one interaction, sorted by address, named by their most
  frequent non-empty display name anywhere in the input (ties: alphabetical).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from jobsys.connectors.phases import mime
from jobsys.connectors.phases.events import NormalizedEvent
from jobsys.connectors.phases.invites import Invite
from jobsys.connectors.phases.normalize import Address, NormalizedMessage

InteractionKind = Literal["message", "meeting"]
Direction = Literal["outbound", "inbound", "mutual"]

SKIPPED_LABELS = frozenset(("DRAFT", "SPAM"))
INVITE_METHODS = frozenset(("REQUEST", "PUBLISH", "CANCEL", ""))
_NEVER = datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Contact:
    """A person the user interacted with (natural key: addr)."""

    addr: str
    display_name: str


@dataclass(frozen=True)
class Interaction:
    """One exchange with one person (natural key: kind, source_id, addr).

    ``source_id`` is the Gmail message id for messages and the Calendar event id
    for meetings.
    """

    addr: str
    kind: InteractionKind
    direction: Direction
    at: datetime
    source_id: str


@dataclass(frozen=True)
class Extraction:
    """The extraction phase's output for one user."""

    contacts: tuple[Contact, ...]
    interactions: tuple[Interaction, ...]


def extract(
    user_email: str,
    messages: Iterable[NormalizedMessage],
    events: Iterable[NormalizedEvent],
) -> Extraction:
    """Derive contacts and interactions from a user's messages and events.

    Parameters:
        user_email: the user's address (compared case-insensitively).
        messages: normalized messages (any order; duplicates are harmless).
        events: normalized events (any order; duplicates are harmless).

    Raises:
        ValueError: ``user_email`` is empty.

    Returns:
        An Extraction with deterministic ordering (see the module docstring).
    """
    user = user_email.strip().lower()
    if not user:
        raise ValueError("user_email must not be empty")
    names: defaultdict[str, Counter[str]] = defaultdict(Counter)
    found: list[Interaction] = []
    messages = list(messages)
    events = list(events)
    for message in messages:
        _count_names(names, _message_people(message))
        found.extend(message_interactions(user, message))
    for event in events:
        _count_names(names, [Address(a.addr, a.name) for a in event.attendees])
        found.extend(meeting_interactions(user, event))
    calendar = {e.ical_uid for e in events if e.ical_uid}
    for invite in latest_invites(messages):
        _count_names(names, [Address(a.addr, a.name) for a in invite.attendees])
        if invite.uid not in calendar:
            found.extend(invite_interactions(user, invite))
    interactions = sorted(
        unique_interactions(found).values(), key=lambda i: (i.at, i.kind, i.source_id, i.addr)
    )
    addrs = sorted({i.addr for i in interactions})
    contacts = tuple(Contact(addr, _best_name(addr, names.get(addr))) for addr in addrs)
    return Extraction(contacts=contacts, interactions=tuple(interactions))


def unique_interactions(
    interactions: Iterable[Interaction],
) -> dict[tuple[str, str, str], Interaction]:
    """Map each natural key ``(kind, source_id, addr)`` to one interaction.

    When two versions of a key disagree (a message seen before and after it was
    re-labelled), the latest ``at``, then the greatest direction, wins, so the
    choice does not depend on input order.
    """
    chosen: dict[tuple[str, str, str], Interaction] = {}
    for interaction in interactions:
        key = (interaction.kind, interaction.source_id, interaction.addr)
        held = chosen.get(key)
        if held is None or (interaction.at, interaction.direction) > (held.at, held.direction):
            chosen[key] = interaction
    return chosen


def senders(message: NormalizedMessage) -> tuple[Address, ...]:
    """Every From mailbox (rows stored before ``senders`` existed hold only ``from_addr``)."""
    if message.senders:
        return message.senders
    return (Address(message.from_addr, message.from_name),) if message.from_addr else ()


def is_outbound(user: str, message: NormalizedMessage) -> bool:
    """True when the user sent ``message`` (``user`` must be lowercased)."""
    return "SENT" in message.labels or any(a.addr == user for a in senders(message))


def message_interactions(user: str, message: NormalizedMessage) -> list[Interaction]:
    """The interactions one message yields for ``user`` (lowercased), per the module rules."""
    if message.sent_at is None or SKIPPED_LABELS.intersection(message.labels):
        return []
    at = message.sent_at
    direction: Direction = "outbound" if is_outbound(user, message) else "inbound"
    people = (*message.to, *message.cc) if direction == "outbound" else senders(message)
    contactable = dict.fromkeys(mime.clean_address(a.addr) for a in people)
    return [
        Interaction(addr, "message", direction, at, message.gmail_id)
        for addr in contactable
        if addr is not None and addr != user
    ]


def is_meeting(user: str, event: NormalizedEvent) -> bool:
    """True when ``event`` is a meeting the user (lowercased) takes part in."""
    if event.status == "cancelled" or event.start_at is None:
        return False
    for attendee in event.attendees:
        if attendee.self or attendee.addr == user:
            return attendee.response_status != "declined"
    return event.organizer == user


def meeting_interactions(user: str, event: NormalizedEvent) -> list[Interaction]:
    """One ``mutual`` interaction per other present attendee of a meeting, at its start."""
    if event.start_at is None or not is_meeting(user, event):
        return []
    return [
        Interaction(attendee.addr, "meeting", "mutual", event.start_at, event.event_id)
        for attendee in event.attendees
        if attendee.addr != user
        and not attendee.self
        and not attendee.resource
        and attendee.response_status != "declined"
    ]


def latest_invites(messages: Iterable[NormalizedMessage]) -> list[Invite]:
    """The counting version of each invitation (module rules), ordered by UID."""
    latest: dict[str, tuple[tuple[int, datetime], Invite]] = {}
    for message in messages:
        if SKIPPED_LABELS.intersection(message.labels):
            continue
        for invite in message.invites:
            if invite.method not in INVITE_METHODS:
                continue
            key = (invite.sequence, message.sent_at or _NEVER)
            held = latest.get(invite.uid)
            if held is None or key > held[0]:
                latest[invite.uid] = (key, invite)
    return [latest[uid][1] for uid in sorted(latest)]


def invite_interactions(user: str, invite: Invite) -> list[Interaction]:
    """One ``mutual`` interaction per other participant of an invitation the user accepts."""
    if invite.method == "CANCEL" or invite.status == "CANCELLED" or invite.start_at is None:
        return []
    mine = next((a for a in invite.attendees if a.addr == user), None)
    if (mine is None and invite.organizer != user) or (
        mine is not None and mine.response_status == "declined"
    ):
        return []
    others = [
        a.addr
        for a in invite.attendees
        if a.addr != user and not a.resource and a.response_status != "declined"
    ]
    if invite.organizer and invite.organizer != user:
        others.insert(0, invite.organizer)
    return [
        Interaction(addr, "meeting", "mutual", invite.start_at, f"ical:{invite.uid}")
        for addr in dict.fromkeys(others)
    ]


def _message_people(message: NormalizedMessage) -> list[Address]:
    return [*senders(message), *message.to, *message.cc]


def _count_names(names: defaultdict[str, Counter[str]], people: Iterable[Address]) -> None:
    for person in people:
        # A "name" that merely repeats the address carries no information.
        if person.name and person.name.lower() != person.addr:
            names[person.addr][person.name] += 1


def _best_name(addr: str, counts: Counter[str] | None) -> str:
    if not counts:
        return ""
    return min(counts.items(), key=lambda item: (-item[1], item[0]))[0]
