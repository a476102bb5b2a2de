"""Header blocks of generated mail, written byte by byte.

``header_block`` renders a message's facts with one drawn ``style``:

* ``encoded`` — RFC 2047 encoded words as common clients write them: the
  subject in ISO-8859-1 Q where it fits, else UTF-8 B, display names in UTF-8;
* ``folded`` — subject and display names split into several encoded words of
  mixed charsets (ISO-8859-1 Q, UTF-8 B) across folded lines;
* ``raw-utf8`` / ``raw-cp1252`` — undeclared 8-bit header bytes (RFC 6532 style,
  and the Windows-1252 that old clients send);
* ``long`` — the long subjects :mod:`.mime` draws for this style, folded, and
  a 1,500-character header on one line.

and independent ``traits``: ``list`` (mailing-list headers, To the list),
``two-from`` (two From mailboxes and a Sender), ``split-cc`` (one Cc field
per recipient) and ``no-date`` (no Date field: Gmail's arrival time is the
truth). Every style decodes to exactly the facts: that is what the emulator's
truth promises.
"""

from __future__ import annotations

import random
from datetime import timedelta, timezone
from email.header import Header
from email.utils import format_datetime, formataddr

from jobsys.connectors.google.emulator.facts import MessageFacts, Person

STYLES = (("encoded", 55), ("folded", 13), ("raw-utf8", 10), ("raw-cp1252", 10), ("long", 7))
LIST = Person("Team list", "team@lists.example.org")
_OFFSETS_MIN = (-300, 0, 60, 330, 540)
_LIMIT = 76


def draw_style(rng: random.Random) -> str:
    """One header style, by the weights in :data:`STYLES`."""
    return rng.choices([s for s, _ in STYLES], weights=[w for _, w in STYLES])[0]


def header_block(
    rng: random.Random, facts: MessageFacts, style: str, traits: frozenset[str]
) -> bytes:
    """The header fields of a message (no trailing empty line), CRLF line ends.

    Raises:
        ValueError: the facts have no sender or date, which generated mail always has.
    """
    if facts.sender is None or facts.sent_at is None:
        raise ValueError("generated messages need a sender and a date")
    if style == "raw-cp1252" and not _fits(facts, "cp1252"):
        style = "raw-utf8"
    lines: list[bytes] = []
    if "no-date" not in traits:
        offset = timezone(timedelta(minutes=rng.choice(_OFFSETS_MIN)))
        lines.append(_line("Date", format_datetime(facts.sent_at.astimezone(offset))))
    lines.append(_field("From", [_mailbox(p, style) for p in facts.senders], style))
    if len(facts.senders) > 1:
        lines.append(_field("Sender", [_mailbox(facts.senders[0], style)], style))
    lines.append(_field("To", [_mailbox(p, style) for p in facts.to], style))
    if facts.cc and "split-cc" in traits:
        lines.extend(_field("Cc", [_mailbox(p, style)], style) for p in facts.cc)
    elif facts.cc:
        lines.append(_field("Cc", [_mailbox(p, style) for p in facts.cc], style))
    lines.append(_subject(facts.subject, style))
    lines.append(_line("Message-ID", facts.message_id))
    if facts.in_reply_to:
        lines.append(_line("In-Reply-To", facts.in_reply_to))
        lines.append(_folded_ascii("References", " ".join(facts.references)))
    if "list" in traits:
        lines.extend(_list_fields(rng))
    if style == "long":
        lines.append(_line("X-Trace", f"{rng.getrandbits(6000):01500x}"))
    lines.append(b"MIME-Version: 1.0\r\n")
    return b"".join(lines)


def _fits(facts: MessageFacts, encoding: str) -> bool:
    texts = [facts.subject, *(p.name for p in (*facts.senders, *facts.to, *facts.cc))]
    try:
        for text in texts:
            text.encode(encoding)
    except UnicodeEncodeError:
        return False
    return True


def _line(name: str, value: str) -> bytes:
    return f"{name}: {value}\r\n".encode()


def _raw(name: str, value: str, encoding: str) -> bytes:
    return f"{name}: ".encode() + value.encode(encoding) + b"\r\n"


def _folded_ascii(name: str, value: str) -> bytes:
    """Fold an ASCII value at spaces so lines stay near 78 characters."""
    lines, line = [], f"{name}:"
    for word in value.split(" "):
        if len(line) + 1 + len(word) > _LIMIT and line != f"{name}:":
            lines.append(line)
            line = ""
        line = f"{line} {word}"
    lines.append(line)
    return ("\r\n".join(lines) + "\r\n").encode()


def _mailbox(person: Person, style: str) -> str:
    if style.startswith("raw-") and not person.name.isascii():
        return f"{person.name} <{person.email}>"
    if style == "folded" and not person.name.isascii() and " " in person.name:
        first, rest = person.name.split(" ", 1)
        return f"{_words(first + ' ')} {_words(rest, 'utf-8')} <{person.email}>"
    return formataddr((person.name, person.email), charset="utf-8")


def _field(name: str, mailboxes: list[str], style: str) -> bytes:
    if style.startswith("raw-"):
        return _raw(name, ", ".join(mailboxes), "utf-8" if style == "raw-utf8" else "cp1252")
    # One mailbox per line once the list is long: folding at the commas.
    value = ", ".join(mailboxes)
    if len(name) + 2 + len(value) <= _LIMIT:
        return _line(name, value)
    return (f"{name}: " + ",\r\n ".join(mailboxes) + "\r\n").encode()


def _subject(subject: str, style: str) -> bytes:
    if style.startswith("raw-") and not subject.isascii():
        return _raw("Subject", subject, "utf-8" if style == "raw-utf8" else "cp1252")
    if style == "folded" and " " in subject:
        head, tail = subject.rsplit(" ", 1)
        # The space goes inside the first word: whitespace between encoded words vanishes.
        return f"Subject: {_words(head + ' ')}\r\n {_words(tail, 'utf-8')}\r\n".encode()
    if subject.isascii():
        return _folded_ascii("Subject", subject)
    charset = "iso-8859-1" if _encodes(subject, "iso-8859-1") else "utf-8"
    encoded = Header(subject, charset, header_name="Subject").encode(linesep="\r\n")
    return f"Subject: {encoded}\r\n".encode()


def _words(text: str, charset: str | None = None) -> str:
    """``text`` as encoded words: ISO-8859-1 Q when it fits (unless told), else UTF-8 B."""
    chosen = charset or ("iso-8859-1" if _encodes(text, "iso-8859-1") else "utf-8")
    return Header(text, chosen).encode(linesep="\r\n")


def _encodes(text: str, encoding: str) -> bool:
    try:
        text.encode(encoding)
    except UnicodeEncodeError:
        return False
    return True


def _list_fields(rng: random.Random) -> list[bytes]:
    token = f"{rng.getrandbits(32):08x}"
    return [
        _line("List-Id", "Team list <team.lists.example.org>"),
        _line(
            "List-Unsubscribe",
            f"<mailto:team-leave-{token}@lists.example.org>,"
            f" <https://lists.example.org/unsubscribe/{token}>",
        ),
        _line("List-Post", "<mailto:team@lists.example.org>"),
        _line("List-Archive", "<https://lists.example.org/archive/team>"),
        _line("Precedence", "list"),
        _line("Reply-To", formataddr((LIST.name, LIST.email))),
    ]
