"""The corpus's value types, its oracle (the standard reading) and a message builder."""

from __future__ import annotations

import email.policy
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

Mailboxes = tuple[tuple[str, str], ...]  # (lowercased address, display name)
ARRIVED = datetime(2025, 2, 4, 12, 0, tzinfo=UTC)  # Gmail's internalDate in the unit tests
_WS = re.compile(r"\s+")


@dataclass(frozen=True)
class Reading:
    """The fields the corpus compares: subject, From/To/Cc mailboxes and sent_at."""

    subject: str
    senders: Mailboxes
    to: Mailboxes
    cc: Mailboxes
    sent_at: datetime | None


@dataclass(frozen=True)
class Case:
    """One corpus message and what it must land as."""

    name: str
    category: str
    raw: bytes
    better: dict[str, Any] = field(default_factory=dict)
    why: str = ""
    body: str | None = None  # a text the body must contain (None: not checked)
    invites: int = 0  # how many invitations it carries

    def expected(self, internal_date: datetime) -> Reading:
        """The standard reading with this case's deliberate improvements applied."""
        reading = standard_reading(self.raw, internal_date)
        return Reading(**{**reading.__dict__, **self.better})


def squash(text: str) -> str:
    return _WS.sub(" ", text).strip()


def standard_reading(raw: bytes, internal_date: datetime) -> Reading:
    """How ``email.policy.default`` reads ``raw`` (whitespace squashed, as jobsys stores text).

    Subject: the first Subject field as ``str``. Mailboxes: every address of every
    From, To and Cc field (``header.addresses``), lowercased, without empty ones;
    display names with undecodable bytes shown as ``str(header)`` shows them.
    sent_at: the first Date field (``-0000`` as UTC), else Gmail's ``internal_date``.
    """
    msg = BytesParser(policy=email.policy.default).parsebytes(raw)
    assert isinstance(msg, EmailMessage)
    subject = msg["subject"]
    date = msg["date"]
    moment = getattr(date, "datetime", None) if date is not None else None
    if isinstance(moment, datetime) and moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return Reading(
        subject=squash(str(subject)) if subject is not None else "",
        senders=_mailboxes(msg, "from"),
        to=_mailboxes(msg, "to"),
        cc=_mailboxes(msg, "cc"),
        sent_at=moment.astimezone(UTC) if isinstance(moment, datetime) else internal_date,
    )


def _mailboxes(msg: EmailMessage, name: str) -> Mailboxes:
    found = []
    for header in msg.get_all(name) or []:
        for address in header.addresses:
            if address.addr_spec in ("", "<>"):
                continue
            shown = address.display_name.encode("utf-8", "surrogateescape")
            found.append((address.addr_spec.lower(), squash(shown.decode("utf-8", "replace"))))
    return tuple(found)


def mail(*fields: str | bytes, body: str | bytes = "Hello.\r\n") -> bytes:
    """Header fields (``str`` as UTF-8, ``bytes`` as given) on CRLF lines, an empty line, a body."""
    lines = [f if isinstance(f, bytes) else f.encode() for f in fields]
    data = body if isinstance(body, bytes) else body.encode()
    return b"\r\n".join(lines) + b"\r\n\r\n" + data
