"""Extraction: who the user wrote to, heard from and met, and when.

Rules, applied to the user's own normalized data:

* A message labelled ``DRAFT`` (never sent) or ``SPAM`` (not a relationship)
  is skipped, as is a message without ``sent_at`` (the caller may substitute
  Gmail's ``internalDate`` with ``dataclasses.replace`` before extraction).
* A message is the user's own when it is labelled ``SENT`` or its From is the
  user's address: each To/Cc recipient other than the user gets an
  ``outbound`` interaction. Any other message gives its sender an ``inbound``
  interaction.
* A meeting is a non-cancelled event with a start time in which the user is an
  attendee who has not declined, or the organizer. Every other attendee that is
  not a resource (room, device) and has not declined gets a ``mutual``
  interaction at the event's start.
* Interactions are unique by their natural key ``(kind, source_id, addr)``
  and sorted by ``(at, kind, source_id, addr)``; contacts are the addresses
  with at least one interaction, sorted by address, named by their most
  frequent non-empty display name anywhere in the input (ties: alphabetical).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from jobsys.connectors.phases.events import NormalizedEvent
from jobsys.connectors.phases.normalize import Address, NormalizedMessage

InteractionKind = Literal["message", "meeting"]
Direction = Literal["outbound", "inbound", "mutual"]

SKIPPED_LABELS = frozenset(("DRAFT", "SPAM"))


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
    for message in messages:
        _count_names(names, _message_people(message))
        found.extend(message_interactions(user, message))
    for event in events:
        _count_names(names, [Address(a.addr, a.name) for a in event.attendees])
        found.extend(meeting_interactions(user, event))
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


def is_outbound(user: str, message: NormalizedMessage) -> bool:
    """True when the user sent ``message`` (``user`` must be lowercased)."""
    return "SENT" in message.labels or message.from_addr == user


def message_interactions(user: str, message: NormalizedMessage) -> list[Interaction]:
    """The interactions one message yields for ``user`` (lowercased), per the module rules."""
    if message.sent_at is None or SKIPPED_LABELS.intersection(message.labels):
        return []
    at = message.sent_at
    if is_outbound(user, message):
        recipients = dict.fromkeys(a.addr for a in (*message.to, *message.cc))
        return [
            Interaction(addr, "message", "outbound", at, message.gmail_id)
            for addr in recipients
            if addr != user
        ]
    if not message.from_addr:
        return []
    return [Interaction(message.from_addr, "message", "inbound", at, message.gmail_id)]


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


def _message_people(message: NormalizedMessage) -> list[Address]:
    sender = [Address(message.from_addr, message.from_name)] if message.from_addr else []
    return [*sender, *message.to, *message.cc]


def _count_names(names: defaultdict[str, Counter[str]], people: Iterable[Address]) -> None:
    for person in people:
        # A "name" that merely repeats the address carries no information.
        if person.name and person.name.lower() != person.addr:
            names[person.addr][person.name] += 1


def _best_name(addr: str, counts: Counter[str] | None) -> str:
    if not counts:
        return ""
    return min(counts.items(), key=lambda item: (-item[1], item[0]))[0]
