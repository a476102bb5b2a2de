"""Reading a message's header block: parse, repair, unfold, decode.

The message is parsed by ``email.parser.BytesParser`` with a Compat32 policy
that returns header values exactly as they were read (``RAW_PARSER``): that is
several times faster than ``email.policy.default``, which builds a structured
header object on every access. Values are then read the way
``email.policy.default`` reads them:

* **Unfolding** (RFC 5322 §2.2.3): every line break of a value is removed and
  the whitespace after it kept, as the standard policy does, *before*
  anything is decoded, so ``Re: hello`` folded before an encoded word keeps
  its space.
* **8-bit bytes** (undeclared UTF-8 or Windows-1252 in headers) are decoded
  by ``mime.recover_8bit``; the standard parser keeps UTF-8 and turns
  Windows-1252 into replacement characters. This is a deliberate improvement.
* **Subject**: without an encoded word the unfolded value is the subject; with
  one, ``email.policy.default``'s own header parser decodes it, unless that
  yields replacement characters (an unknown or wrong charset), in which case
  ``mime.decode_words`` and its charset chain do. Runs of whitespace collapse
  to one space in every decoded header.

**Repair** (``repair_header_block``): the standard parser ends the header block
at the first line that is not a header field and reports
``MissingHeaderBodySeparatorDefect``; the rest of the block becomes body. When
that defect is present, the block up to the first empty line is read again:
obsolete fields with whitespace before the colon (RFC 5322 §4.5.
``obs-optional``, e.g. ``To    :``) are rewritten, lines that are not fields
(``quite Delivered-To: …``) are dropped, and the result is used only if the
lines after the first bad one include a well-known field name and outnumber
the dropped ones. A body that merely lacks its separating empty line stays a
body.
"""

from __future__ import annotations

import email.policy
import re
from datetime import UTC, datetime
from email.errors import MissingHeaderBodySeparatorDefect
from email.message import Message
from email.parser import BytesParser
from email.policy import Compat32
from email.utils import parsedate_to_datetime

from jobsys.connectors.phases import mime

MAX_HEADER_CHARS = 65_536
MAX_STANDARD_TEXT = 4_096

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_MSG_ID = re.compile(r"<[^<>\s]+>")
_FIELD = re.compile(rb"[\x21-\x39\x3b-\x7e]+:")
_OBS_FIELD = re.compile(rb"([\x21-\x39\x3b-\x7e]+)[ \t]+:")
_BLANK_LINE = re.compile(rb"(\r?\n)\r?\n")
_KNOWN_FIELDS = frozenset(
    (
        b"from sender reply-to to cc bcc subject date message-id in-reply-to references"
        b" mime-version received return-path delivered-to precedence user-agent"
        b" organization comments keywords importance priority thread-topic thread-index"
    ).split()
)
_KNOWN_PREFIXES = (b"x-", b"list-", b"content-", b"resent-", b"arc-", b"dkim-", b"auto")


class _RawHeaders(Compat32):
    """Compat32 that hands header values back as parsed, surrogates and all.

    Compat32 wraps 8-bit header values in ``Header`` objects that lose the
    original bytes; ``mime.recover_8bit`` needs those bytes to try UTF-8 first.
    """

    def header_fetch_parse(self, name: str, value: str) -> str:
        return value


RAW_PARSER = BytesParser(policy=_RawHeaders())
_STANDARD = email.policy.default


def parse(data: bytes, defects: list[str]) -> Message:
    """Parse ``data``; repair the header block when the parser says it was cut short."""
    msg = RAW_PARSER.parsebytes(data)
    if not any(isinstance(d, MissingHeaderBodySeparatorDefect) for d in msg.defects):
        return msg
    repaired = repair_header_block(data)
    if repaired is None:
        return msg
    fixed, notes = repaired
    defects.extend(notes)
    return RAW_PARSER.parsebytes(fixed)


def repair_header_block(data: bytes) -> tuple[bytes, list[str]] | None:
    """The message with its header block repaired (module docstring), or None if not worth it."""
    gap = _BLANK_LINE.search(data)
    head, rest = (data[: gap.end(1)], data[gap.end(1) :]) if gap else (data, b"")
    kept: list[bytes] = []
    dropped = fixed = known_after = 0
    keeping = True  # whether the last field line was kept, so its continuations are too
    for index, line in enumerate(head.splitlines(keepends=True)):
        if line[:1] in (b" ", b"\t"):
            if keeping and kept:
                kept.append(line)
            continue
        obsolete = _OBS_FIELD.match(line)
        if obsolete:
            kept.append(obsolete.group(1) + line[obsolete.end() - 1 :])
            fixed += 1
        elif _FIELD.match(line) or (index == 0 and line.startswith(b"From ")):
            kept.append(line)  # a field, or an mbox "From " line, which the parser skips
        else:
            keeping = False
            dropped += 1
            continue
        keeping = True
        if (dropped or fixed) and _is_known(kept[-1]):
            known_after += 1
    if not (dropped or fixed) or known_after == 0 or dropped > known_after:
        return None
    notes = [f"headers: dropped {dropped} line(s) that are not fields"] if dropped else []
    notes += [f"headers: read {fixed} obsolete 'name :' field(s)"] if fixed else []
    if not rest:
        rest = b"\r\n"
    return b"".join(kept) + rest, notes


def _is_known(line: bytes) -> bool:
    name = line.split(b":", 1)[0].lower()
    return name in _KNOWN_FIELDS or name.startswith(_KNOWN_PREFIXES)


def clean_value(name: str, value: object, defects: list[str]) -> str:
    """Bound, unfold and un-escape one raw header value (see the module docstring)."""
    text = str(value)
    if len(text) > MAX_HEADER_CHARS:
        defects.append(f"{name}: truncated to {MAX_HEADER_CHARS} characters")
        text = text[:MAX_HEADER_CHARS]
    if "\n" in text or "\r" in text:
        text = _LINE_BREAK.sub("", text)
    recovered = mime.recover_8bit(text)
    if recovered.defect:
        defects.append(f"{name}: {recovered.defect}")
    return recovered.text


def first(msg: Message, name: str, defects: list[str]) -> str | None:
    """The first ``name`` field's cleaned value, or None when there is none."""
    value = msg.get(name)
    return None if value is None else clean_value(name, value, defects)


def every(msg: Message, name: str, defects: list[str]) -> list[str]:
    """The cleaned values of every ``name`` field, in order."""
    return [clean_value(name, v, defects) for v in msg.get_all(name, [])]


def decode_text(name: str, value: str, defects: list[str]) -> str:
    """Decode an unstructured value (Subject) as ``email.policy.default`` does, squashed."""
    if not mime.has_encoded_word(value):
        return mime.squash(value)
    text = _standard_text(name, value)
    if text is None or ("\ufffd" in text and "\ufffd" not in value):
        text, word_defects = mime.decode_words(value)
        defects.extend(f"{name}: {d}" for d in word_defects)
    return mime.squash(text)


def _standard_text(name: str, value: str) -> str | None:
    # Past a few thousand characters the standard parser's cost grows quadratically on
    # hostile input; mime.decode_words reads the same words in linear time.
    if len(value) > MAX_STANDARD_TEXT:
        return None
    try:
        return str(_STANDARD.header_factory(name, value))
    except Exception:  # the standard header parser has undocumented failure modes
        return None


def subject(msg: Message, defects: list[str]) -> str:
    value = first(msg, "subject", defects)
    if value is None:
        defects.append("subject: missing")
        return ""
    return decode_text("subject", value, defects)


def sent_at(value: str | None, defects: list[str]) -> datetime | None:
    """The Date value as an aware UTC datetime; None (noted) when missing or unparseable."""
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


def msg_ids(value: str | None) -> tuple[str, ...]:
    return () if value is None else tuple(_MSG_ID.findall(value))


def first_msg_id(value: str | None) -> str | None:
    if value is None:
        return None
    found = _MSG_ID.search(value)
    if found:
        return found.group(0)
    # Some mailers omit the angle brackets; keep the bare token rather than nothing.
    text = mime.squash(value)
    return text or None
