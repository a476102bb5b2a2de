"""What a message or event *is*, independent of its encoding: the ground truth.

Generated messages carry the facts they were built from; messages added
through the admin API are described by :func:`describe_raw`, which reads their
bytes exactly as Python's standard ``email`` package does
(``email.policy.default``), so a malformed message still gets an entry and the
truth never depends on jobsys's own parser.
"""

from __future__ import annotations

import email.policy
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.parser import BytesParser

_WS = re.compile(r"\s+")


@dataclass(frozen=True)
class Person:
    """A display name and an address."""

    name: str
    email: str


@dataclass(frozen=True)
class MessageFacts:
    """The decoded facts of one message, as a normalizer should find them.

    ``senders`` holds every From mailbox (RFC 5322 allows several, with a
    Sender); ``sent_at`` is the Date header's moment, or Gmail's arrival time
    when the message has no usable Date.
    """

    subject: str
    senders: tuple[Person, ...]
    to: tuple[Person, ...]
    cc: tuple[Person, ...]
    sent_at: datetime | None
    message_id: str
    in_reply_to: str
    references: tuple[str, ...]

    @property
    def sender(self) -> Person | None:
        """The first From mailbox, if any."""
        return self.senders[0] if self.senders else None


def describe_raw(raw: bytes, received_at: datetime) -> MessageFacts:
    """Read ``raw`` the way ``email.policy.default`` does, into :class:`MessageFacts`.

    Subject: the first Subject field, decoded, whitespace runs squashed to one
    space. Addresses: every mailbox of every From, To and Cc field
    (``header.addresses``; group members included), lowercased, empty ones
    left out; display names squashed, with undecodable bytes as U+FFFD as the
    standard package renders them. Date: the first Date field, naive (``-0000``)
    read as UTC.

    Parameters:
        raw: RFC 822 bytes, possibly malformed.
        received_at: used as ``sent_at`` when the Date header is missing or bad.

    Returns:
        The facts; fields that cannot be read are empty.
    """
    msg = BytesParser(policy=email.policy.default).parsebytes(raw)
    return MessageFacts(
        subject=squash(_header(msg, "Subject")),
        senders=_people(msg, "From"),
        to=_people(msg, "To"),
        cc=_people(msg, "Cc"),
        sent_at=_date(msg) or received_at,
        message_id=_header(msg, "Message-ID").strip(),
        in_reply_to=_header(msg, "In-Reply-To").strip(),
        references=tuple(_header(msg, "References").split()),
    )


def squash(text: str) -> str:
    """Collapse every run of whitespace to one space, as jobsys stores header text."""
    return _WS.sub(" ", text).strip()


def _header(msg: EmailMessage, name: str) -> str:
    # A defective header can raise while being decoded; the truth is then "unreadable".
    try:
        value = msg.get(name)
    except Exception:
        return ""
    return "" if value is None else str(value)


def _people(msg: EmailMessage, name: str) -> tuple[Person, ...]:
    people: list[Person] = []
    try:
        fields = msg.get_all(name) or []
        for field in fields:
            for address in getattr(field, "addresses", ()):
                if address.addr_spec in ("", "<>"):
                    continue
                people.append(Person(squash(_printable(address.display_name)), address.addr_spec))
    except Exception:  # e.g. RecursionError on nested comments: nothing readable
        return ()
    return tuple(Person(p.name, p.email.lower()) for p in people)


def _printable(text: str) -> str:
    # Undecodable bytes stay surrogate escapes in display_name; str(header) shows them
    # as UTF-8 where they are, else as U+FFFD.
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _date(msg: EmailMessage) -> datetime | None:
    try:
        value = msg.get("Date")
        parsed = getattr(value, "datetime", None)
    except Exception:
        return None
    if not isinstance(parsed, datetime):
        return None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)
