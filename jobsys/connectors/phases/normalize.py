"""Normalization: one raw Gmail message (RFC 822 bytes) → one :class:`NormalizedMessage`.

``normalize_message`` never raises. A message is what Python's ``email``
package reads from the bytes, with the fields read as ``email.policy.default``
reads them (:mod:`.headers`, :mod:`.addresses`, :mod:`.body`); where jobsys
recovers more than that package, the module that does it says so.

* **MessageError** (nothing worth storing) only when ``raw`` is not bytes, is
  empty or blank, or the parser finds no header field at all even after the
  header block was repaired (``headers.parse``) — which is what arbitrary
  binary garbage or plain text parses to. Any unexpected exception is reported
  as ``internal error: <Type>: <message>`` so that one message cannot fail a
  batch.
* **NormalizedMessage with what is recoverable** in every other case, and each
  loss or guess is named in ``defects``:

  - missing Subject → ``""``; no From mailbox → ``from_addr == ""``;
  - missing or unparseable Date → ``sent_at`` is Gmail's ``internalDate``
    (when the caller passes it), noted as ``date: ... used internalDate``;
  - every mailbox of every From, To and Cc field, as the standard parser reads
    it — ``To: XX`` included — with malformed ones salvaged
    (:mod:`.addresses`); ``senders`` holds every From mailbox, ``from_addr`` /
    ``from_name`` the first;
  - unknown or wrong charsets are decoded by the chain in :mod:`.mime`;
  - the text body is the part ``EmailMessage.get_body(("plain", "html"))``
    picks, else a text part the parser recovered (:mod:`.body`);
  - ``text/calendar`` invitations are read into ``invites`` (:mod:`.invites`);
  - header values are cut at ``headers.MAX_HEADER_CHARS`` and the body at
    ``mime.MAX_BODY_CHARS`` so that one huge message has bounded cost.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from jobsys.connectors.phases import addresses, body, headers, invites, mime
from jobsys.connectors.phases.addresses import Address
from jobsys.connectors.phases.events import (
    Attendee,
    EventError,
    NormalizedEvent,
    normalize_event,
)
from jobsys.connectors.phases.invites import Invite

__all__ = [
    "Address",
    "Attendee",
    "EventError",
    "Invite",
    "MessageError",
    "NormalizedEvent",
    "NormalizedMessage",
    "normalize_event",
    "normalize_message",
]

MAX_DEFECTS = 20
MAX_REFERENCES = 100


@dataclass(frozen=True)
class NormalizedMessage:
    """A Gmail message reduced to the fields the later phases use (natural key: gmail_id)."""

    gmail_id: str
    thread_id: str
    subject: str
    from_addr: str
    from_name: str
    to: tuple[Address, ...]
    cc: tuple[Address, ...]
    sent_at: datetime | None
    labels: tuple[str, ...]
    text_body: str
    message_id: str | None
    in_reply_to: str | None
    references: tuple[str, ...]
    defects: tuple[str, ...] = ()
    senders: tuple[Address, ...] = ()
    invites: tuple[Invite, ...] = ()


@dataclass(frozen=True)
class MessageError:
    """A message that could not be parsed at all; stored instead of a NormalizedMessage."""

    gmail_id: str
    thread_id: str
    error: str


def normalize_message(
    gmail_id: str,
    thread_id: str,
    raw: bytes,
    label_ids: Sequence[str],
    internal_date: datetime | None = None,
) -> NormalizedMessage | MessageError:
    """Parse one raw RFC 822 message as returned by Gmail ``format=raw``.

    Parameters:
        gmail_id: Gmail's message id (the natural key).
        thread_id: Gmail's thread id.
        raw: the message bytes, already base64url-decoded.
        label_ids: Gmail label ids of the message.
        internal_date: Gmail's ``internalDate`` (when Gmail received it), the
            ``sent_at`` of a message without a usable Date header.

    Raises:
        Nothing: every failure is returned (see the module docstring's rule).

    Returns:
        A NormalizedMessage, or a MessageError when nothing can be recovered.
    """
    try:
        return _normalize(gmail_id, thread_id, raw, label_ids, internal_date)
    except Exception as e:  # the contract is "never raise" (module docstring)
        return _error(gmail_id, thread_id, f"internal error: {type(e).__name__}: {e}")


def _error(gmail_id: str, thread_id: str, error: str) -> MessageError:
    return MessageError(gmail_id, thread_id, mime.squash(error)[:300])


def _normalize(
    gmail_id: str,
    thread_id: str,
    raw: bytes,
    label_ids: Sequence[str],
    internal_date: datetime | None,
) -> NormalizedMessage | MessageError:
    if not isinstance(raw, bytes | bytearray | memoryview):
        return _error(gmail_id, thread_id, f"raw is {type(raw).__name__}, not bytes")
    data = bytes(raw)
    if not data.strip():
        return _error(gmail_id, thread_id, "empty message")
    defects: list[str] = []
    msg = headers.parse(data, defects)
    if not msg.keys():
        return _error(gmail_id, thread_id, "no RFC 822 header fields found")
    senders = addresses.read("from", headers.every(msg, "from", defects), defects)
    if not senders:
        defects.append("from: missing" if msg.get("from") is None else "from: no address")
    sender = senders[0] if senders else Address("", "")
    leaves, parser_defects = body.walk(msg)
    defects.extend(f"mime: {d}" for d in parser_defects)
    subject = headers.subject(msg, defects)
    to = addresses.read("to", headers.every(msg, "to", defects), defects)
    cc = addresses.read("cc", headers.every(msg, "cc", defects), defects)
    sent_at = _sent_at(headers.first(msg, "date", defects), internal_date, defects)
    text = body.text_body(msg, leaves, defects)
    found_invites = invites.read_invites(leaves, defects)
    references = headers.msg_ids(headers.first(msg, "references", defects))
    return NormalizedMessage(
        gmail_id=gmail_id,
        thread_id=thread_id,
        subject=subject,
        from_addr=sender.addr,
        from_name=sender.name,
        to=to,
        cc=cc,
        sent_at=sent_at,
        labels=tuple(str(label) for label in label_ids),
        text_body=text,
        message_id=headers.first_msg_id(headers.first(msg, "message-id", defects)),
        in_reply_to=headers.first_msg_id(headers.first(msg, "in-reply-to", defects)),
        references=references[:MAX_REFERENCES],
        defects=tuple(dict.fromkeys(defects))[:MAX_DEFECTS],
        senders=senders,
        invites=found_invites,
    )


def _sent_at(
    value: str | None, internal_date: datetime | None, defects: list[str]
) -> datetime | None:
    notes: list[str] = []
    found = headers.sent_at(value, notes)
    if found is not None or internal_date is None:
        defects.extend(notes)
        return found
    if internal_date.tzinfo is None:  # a naive internalDate can only be UTC (epoch ms)
        internal_date = internal_date.replace(tzinfo=UTC)
    defects.extend(f"{note}, used internalDate" for note in notes)
    return internal_date.astimezone(UTC)
