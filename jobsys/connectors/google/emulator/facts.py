"""What a message or event *is*, independent of its encoding: the ground truth.

Generated messages carry the facts they were built from; messages added
through the admin API are described by parsing their bytes leniently, so a
malformed message still gets an entry.
"""

from __future__ import annotations

import email.policy
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import getaddresses, parsedate_to_datetime


@dataclass(frozen=True)
class Person:
    """A display name and an address."""

    name: str
    email: str


@dataclass(frozen=True)
class MessageFacts:
    """The decoded facts of one message, as a normalizer should find them."""

    subject: str
    sender: Person | None
    to: tuple[Person, ...]
    cc: tuple[Person, ...]
    sent_at: datetime | None
    message_id: str
    in_reply_to: str
    references: tuple[str, ...]


def describe_raw(raw: bytes, received_at: datetime) -> MessageFacts:
    """Parse ``raw`` leniently into :class:`MessageFacts`.

    Parameters:
        raw: RFC 822 bytes, possibly malformed.
        received_at: used as ``sent_at`` when the Date header is missing or bad.

    Returns:
        The facts; fields that cannot be read are empty.
    """
    msg = BytesParser(policy=email.policy.default).parsebytes(raw)
    return MessageFacts(
        subject=_header(msg, "Subject"),
        sender=next(iter(_people(msg, "From")), None),
        to=_people(msg, "To"),
        cc=_people(msg, "Cc"),
        sent_at=_date(msg) or received_at,
        message_id=_header(msg, "Message-ID").strip(),
        in_reply_to=_header(msg, "In-Reply-To").strip(),
        references=tuple(_header(msg, "References").split()),
    )


def _header(msg: EmailMessage, name: str) -> str:
    # A defective header can raise while being decoded; the truth is then "unreadable".
    try:
        value = msg.get(name)
    except (ValueError, IndexError, TypeError):
        return ""
    return "" if value is None else str(value)


def _people(msg: EmailMessage, name: str) -> tuple[Person, ...]:
    values = [_header(msg, name)]
    pairs = getaddresses([v for v in values if v])
    return tuple(Person(n, a.lower()) for n, a in pairs if a)


def _date(msg: EmailMessage) -> datetime | None:
    value = _header(msg, "Date")
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (ValueError, TypeError):
        return None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)
