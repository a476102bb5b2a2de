"""Normalization: one raw Gmail message (RFC 822 bytes) → one :class:`NormalizedMessage`.

``normalize_message`` never raises. Its robustness rule:

* **MessageError** (nothing worth storing) when ``raw`` is not bytes, is empty
  or blank, or its header block holds none of the identity fields (From, Sender,
  Reply-To, To, Cc, Bcc, Subject, Date, Message-ID) — which is what arbitrary
  binary garbage parses to. Any unexpected exception from the standard library
  parser is also caught and reported as ``internal error: <Type>: <message>``
  so that one message cannot fail a batch.
* **NormalizedMessage with what is recoverable** in every other case, and each
  loss is named in ``defects``:

  - missing Subject → ``""``; missing or address-less From → ``from_addr == ""``;
  - missing or unparseable Date → ``sent_at is None`` (the Gmail ``internalDate``
    the ingestion step holds is the caller's fallback, not guessed here);
  - invalid addresses are dropped; an address header that defeats the parser
    (for instance thousands of nested comments) yields no addresses;
  - unknown or wrong charsets are decoded by the chain in :mod:`.mime`
    (declared → UTF-8 → windows-1252 → latin-1), never with an exception;
  - broken multipart structure (missing closing boundary, missing boundary
    parameter) keeps whatever parts the parser recovered; the parser's defect
    class names are listed;
  - header values are cut at ``MAX_HEADER_CHARS`` and the body at
    ``mime.MAX_BODY_CHARS`` so that one huge message has bounded cost.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import Message
from email.parser import BytesParser
from email.policy import Compat32
from email.utils import getaddresses, parsedate_to_datetime

from jobsys.connectors.phases import mime
from jobsys.connectors.phases.events import (
    Attendee,
    EventError,
    NormalizedEvent,
    normalize_event,
)

__all__ = [
    "Address",
    "Attendee",
    "EventError",
    "MessageError",
    "NormalizedEvent",
    "NormalizedMessage",
    "normalize_event",
    "normalize_message",
]

MAX_HEADER_CHARS = 65_536
MAX_DEFECTS = 20
MAX_REFERENCES = 100

_IDENTITY_HEADERS = (
    "from",
    "sender",
    "reply-to",
    "to",
    "cc",
    "bcc",
    "subject",
    "date",
    "message-id",
)
_MSG_ID = re.compile(r"<[^<>\s]+>")
_NOT_SIMPLE = re.compile(r'["()\\;:\[\]]|=\?')
_SIMPLE_MAILBOX = re.compile(r"\s*(?:([^<>,@]*?)\s*<([^<>\s,]+)>|([^<>\s,]+))\s*")


@dataclass(frozen=True)
class Address:
    """One mailbox from an address header: lowercased address and decoded display name."""

    addr: str
    name: str


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


@dataclass(frozen=True)
class MessageError:
    """A message that could not be parsed at all; stored instead of a NormalizedMessage."""

    gmail_id: str
    thread_id: str
    error: str


class _RawHeaders(Compat32):
    """Compat32 that hands header values back as parsed, surrogates and all.

    Compat32 wraps 8-bit header values in ``Header`` objects that lose the
    original bytes; ``mime.recover_8bit`` needs those bytes to try UTF-8 first.
    """

    def header_fetch_parse(self, name: str, value: str) -> str:
        return value


_PARSER = BytesParser(policy=_RawHeaders())


def normalize_message(
    gmail_id: str, thread_id: str, raw: bytes, label_ids: Sequence[str]
) -> NormalizedMessage | MessageError:
    """Parse one raw RFC 822 message as returned by Gmail ``format=raw``.

    Parameters:
        gmail_id: Gmail's message id (the natural key).
        thread_id: Gmail's thread id.
        raw: the message bytes, already base64url-decoded.
        label_ids: Gmail label ids of the message.

    Raises:
        Nothing: every failure is returned (see the module docstring's rule).

    Returns:
        A NormalizedMessage, or a MessageError when nothing can be recovered.
    """
    try:
        return _normalize(gmail_id, thread_id, raw, label_ids)
    except Exception as e:  # the contract is "never raise" (module docstring)
        return _error(gmail_id, thread_id, f"internal error: {type(e).__name__}: {e}")


def _error(gmail_id: str, thread_id: str, error: str) -> MessageError:
    return MessageError(gmail_id, thread_id, mime.squash(error)[:300])


def _normalize(
    gmail_id: str, thread_id: str, raw: bytes, label_ids: Sequence[str]
) -> NormalizedMessage | MessageError:
    if not isinstance(raw, bytes | bytearray | memoryview):
        return _error(gmail_id, thread_id, f"raw is {type(raw).__name__}, not bytes")
    data = bytes(raw)
    if not data.strip():
        return _error(gmail_id, thread_id, "empty message")
    msg = _PARSER.parsebytes(data)
    if not any(name in msg for name in _IDENTITY_HEADERS):
        return _error(gmail_id, thread_id, "no RFC 822 header fields found")
    defects: list[str] = []
    senders = _addresses(msg, "from", defects)
    sender = senders[0] if senders else Address("", "")
    if not senders:
        defects.append("from: no valid address")
    references = _msg_ids(_header(msg, "references", defects))
    return NormalizedMessage(
        gmail_id=gmail_id,
        thread_id=thread_id,
        subject=_subject(msg, defects),
        from_addr=sender.addr,
        from_name=sender.name,
        to=_addresses(msg, "to", defects),
        cc=_addresses(msg, "cc", defects),
        sent_at=_sent_at(_header(msg, "date", defects), defects),
        labels=tuple(str(label) for label in label_ids),
        text_body=_body(msg, defects),
        message_id=_first_msg_id(_header(msg, "message-id", defects)),
        in_reply_to=_first_msg_id(_header(msg, "in-reply-to", defects)),
        references=references[:MAX_REFERENCES],
        defects=_unique(defects)[:MAX_DEFECTS],
    )


def _unique(items: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def _recover(name: str, value: object, defects: list[str]) -> str:
    """Bound, then un-escape one raw header value."""
    text = str(value)
    if len(text) > MAX_HEADER_CHARS:
        defects.append(f"{name}: truncated to {MAX_HEADER_CHARS} characters")
        text = text[:MAX_HEADER_CHARS]
    recovered = mime.recover_8bit(text)
    if recovered.defect:
        defects.append(f"{name}: {recovered.defect}")
    return recovered.text


def _header(msg: Message, name: str, defects: list[str]) -> str | None:
    value = msg.get(name)
    return None if value is None else _recover(name, value, defects)


def _subject(msg: Message, defects: list[str]) -> str:
    value = _header(msg, "subject", defects)
    if value is None:
        defects.append("subject: missing")
        return ""
    text, word_defects = mime.decode_words(value)
    defects.extend(f"subject: {d}" for d in word_defects)
    return mime.squash(text)


def _addresses(msg: Message, name: str, defects: list[str]) -> tuple[Address, ...]:
    values = [_recover(name, v, defects) for v in msg.get_all(name, [])]
    if not values:
        return ()
    try:
        pairs = _simple_addresses(values) or getaddresses(values)
    except RecursionError:
        # email._parseaddr recurses once per nested comment "(((...": unusable header.
        defects.append(f"{name}: unparseable address list")
        return ()
    seen: set[str] = set()
    result: list[Address] = []
    for raw_name, raw_addr in pairs:
        addr = mime.clean_address(raw_addr)
        if addr is None or addr in seen:
            continue
        seen.add(addr)
        display, word_defects = mime.decode_words(raw_name)
        defects.extend(f"{name}: {d}" for d in word_defects)
        result.append(Address(addr, mime.squash(display)))
    return tuple(result)


def _simple_addresses(values: list[str]) -> list[tuple[str, str]] | None:
    """Parse the common ``Name <a@b>, c@d`` lists without email.utils; None if not that simple.

    Without quotes, comments, escapes, groups or encoded words, a comma can only
    separate mailboxes, so splitting on it matches ``getaddresses`` — at a
    fraction of its cost, which matters because address parsing was about an
    eighth of normalization time.
    """
    pairs: list[tuple[str, str]] = []
    for value in values:
        if _NOT_SIMPLE.search(value):
            return None
        for piece in value.split(","):
            if not piece.strip():
                continue
            match = _SIMPLE_MAILBOX.fullmatch(piece)
            if match is None:
                return None
            name, bracketed, bare = match.groups()
            pairs.append((mime.squash(name or ""), bracketed or bare))
    return pairs


def _sent_at(value: str | None, defects: list[str]) -> datetime | None:
    if value is None:
        defects.append("date: missing")
        return None
    try:
        parsed = parsedate_to_datetime(mime.squash(value))
        # RFC 5322 "-0000" parses naive: the time is UTC, the sender's zone unknown.
        aware = parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
        return aware.astimezone(UTC)
    except (TypeError, ValueError, OverflowError, IndexError):
        defects.append("date: unparseable")
        return None


def _msg_ids(value: str | None) -> tuple[str, ...]:
    return () if value is None else tuple(_MSG_ID.findall(value))


def _first_msg_id(value: str | None) -> str | None:
    if value is None:
        return None
    found = _MSG_ID.search(value)
    if found:
        return found.group(0)
    # Some mailers omit the angle brackets; keep the bare token rather than nothing.
    text = mime.squash(value)
    return text or None


def _body(msg: Message, defects: list[str]) -> str:
    """The inline text/plain parts, or the inline text/html parts stripped to text."""
    if msg.get_content_maintype() == "multipart" and not msg.is_multipart():
        defects.append("body: multipart without parts")
        return ""
    leaves, parser_defects = mime.walk_parts(msg)
    defects.extend(f"mime: {d}" for d in parser_defects)
    plain: list[Message] = []
    markup: list[Message] = []
    for part in leaves:
        if mime.is_attachment(part):
            continue
        content_type = part.get_content_type()
        if content_type == "text/plain":
            plain.append(part)
        elif content_type == "text/html":
            markup.append(part)
    texts: list[str] = []
    for part in plain or markup:
        decoded = mime.part_text(part)
        if decoded.defect:
            defects.append(f"body: {decoded.defect}")
        texts.append(decoded.text if plain else mime.html_to_text(decoded.text))
    body = "\n".join(text.strip() for text in texts if text.strip())
    if len(body) > mime.MAX_BODY_CHARS:
        defects.append(f"body: truncated to {mime.MAX_BODY_CHARS} characters")
        body = body[: mime.MAX_BODY_CHARS]
    return body
