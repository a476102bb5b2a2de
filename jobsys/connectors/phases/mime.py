"""Low-level MIME helpers for normalization: charsets, header words, bodies, HTML.

Everything here is lenient by construction. Decoding never raises on bad input;
instead the caller receives the best text that can be recovered plus a short
defect note (see :class:`Decoded`) that ``normalize_message`` collects.

Charset rule (``decode_bytes``): the declared charset strictly, then UTF-8
strictly, then windows-1252 strictly, then latin-1 (which maps every byte, so
the chain always ends with text). Mislabelled mail is overwhelmingly UTF-8
declared as ASCII/latin-1 or windows-1252 declared as latin-1/UTF-8, which this
order recovers without replacement characters.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass
from email.header import decode_header
from email.message import Message
from html.parser import HTMLParser

# Bounds that keep one hostile message from costing more than a few ms.
MAX_PART_DEPTH = 20
MAX_PARTS = 500
MAX_BODY_CHARS = 1_000_000

_FALLBACK_CHAIN = ("utf-8", "cp1252")
_ENCODED_WORD = re.compile(r"=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=")
_WS = re.compile(r"\s+")
# Deliberately plain: one "@", no whitespace or address punctuation, a dotted domain.
_VALID_ADDR = re.compile(
    r"[^@\s<>(),;:\"\[\]\\]+@[^@\s<>(),;:\"\[\]\\.]+(\.[^@\s<>(),;:\"\[\]\\.]+)*"
)


@dataclass(frozen=True)
class Decoded:
    """Text recovered from bytes, and what had to be guessed to get it."""

    text: str
    defect: str | None = None


def lookup_codec(charset: str | None) -> str | None:
    """Return the canonical codec name for a MIME charset label, or None if unknown."""
    if not charset:
        return None
    # RFC 2231 allows a language suffix ("utf-8*en"); quoting is common in the wild.
    label = charset.split("*", 1)[0].strip().strip("\"'").lower()
    if label in ("unknown-8bit", "x-unknown", ""):
        return None
    try:
        return codecs.lookup(label).name
    except (LookupError, ValueError):
        return None


def decode_bytes(data: bytes, charset: str | None) -> Decoded:
    """Decode ``data`` that claims to be in ``charset`` (see the module rule).

    Parameters:
        data: raw bytes of a body part or header word.
        charset: the declared charset label, or None when none was declared.

    Returns:
        The text, with ``defect`` set when the declared charset was unknown or wrong.
    """
    codec = lookup_codec(charset)
    if codec is not None:
        try:
            return Decoded(data.decode(codec))
        except UnicodeDecodeError:
            pass
    elif data.isascii():
        return Decoded(data.decode("ascii"))
    for fallback in _FALLBACK_CHAIN:
        try:
            text = data.decode(fallback)
        except UnicodeDecodeError:
            continue
        return Decoded(text, _charset_defect(charset, codec, fallback))
    return Decoded(data.decode("latin-1"), _charset_defect(charset, codec, "latin-1"))


def _charset_defect(charset: str | None, codec: str | None, used: str) -> str | None:
    if charset is None:
        # Undeclared 8-bit data is expected (RFC 6532 headers); not worth a note.
        return None
    reason = "unknown" if codec is None else "wrong"
    return f"charset {charset[:40]!r} {reason}, decoded as {used}"


def recover_8bit(value: str) -> Decoded:
    """Turn a header value parsed from bytes (surrogate-escaped) back into text."""
    if value.isascii():
        return Decoded(value)
    try:
        raw = value.encode("ascii", "surrogateescape")
    except UnicodeEncodeError:
        # Already real text (e.g. a str message was parsed): nothing to recover.
        return Decoded(value)
    return decode_bytes(raw, None)


def decode_words(value: str) -> tuple[str, list[str]]:
    """Decode RFC 2047 encoded words in a header value; return text and defects."""
    if "=?" not in value or not _ENCODED_WORD.search(value):
        return value, []
    try:
        chunks = decode_header(value)
    except Exception as e:  # email.header raises several undocumented types
        return value, [f"undecodable encoded word: {type(e).__name__}"]
    parts: list[str] = []
    defects: list[str] = []
    for chunk, charset in chunks:
        if isinstance(chunk, str):
            parts.append(chunk)
            continue
        decoded = decode_bytes(chunk, charset)
        parts.append(decoded.text)
        if decoded.defect:
            defects.append(decoded.defect)
    return "".join(parts), defects


def clean_address(raw: object) -> str | None:
    """Lowercase and strip an e-mail address; None when it is not a plausible address."""
    if not isinstance(raw, str):
        return None
    addr = raw.strip().lower()
    return addr if _VALID_ADDR.fullmatch(addr) else None


def squash(text: str) -> str:
    """Collapse every run of whitespace (including folding CRLFs) to one space."""
    return _WS.sub(" ", text).strip()


def walk_parts(msg: Message) -> tuple[list[Message], list[str]]:
    """Return the leaf parts depth first and the parser's defect names, within bounds.

    An explicit stack replaces ``Message.walk`` because that recursive generator
    overflows on deeply nested hostile input. Containers marked as attachments
    (a forwarded ``message/rfc822``) are not entered: their text is not this
    message's body.
    """
    leaves: list[Message] = []
    defects: list[str] = []
    stack: list[tuple[Message, int]] = [(msg, 0)]
    while stack and len(leaves) < MAX_PARTS:
        part, depth = stack.pop()
        defects.extend(type(defect).__name__ for defect in part.defects)
        payload = part.get_payload()
        if not isinstance(payload, list):
            leaves.append(part)
        elif depth < MAX_PART_DEPTH and not is_attachment(part):
            children = [p for p in payload if isinstance(p, Message)]
            stack.extend((child, depth + 1) for child in reversed(children))
    return leaves, defects


def is_attachment(part: Message) -> bool:
    """True for parts the sender marked as attachments (or gave a file name)."""
    disposition = str(part.get("content-disposition", "")).split(";", 1)[0].strip().lower()
    return disposition == "attachment" or part.get_param("name") is not None


def part_text(part: Message) -> Decoded:
    """Decode one leaf part's payload (transfer encoding, then charset)."""
    data = part.get_payload(decode=True)
    if not isinstance(data, bytes):
        return Decoded("")
    charset = part.get_param("charset")
    declared = charset if isinstance(charset, str) else None
    decoded = decode_bytes(data, declared)
    return Decoded(decoded.text.replace("\r\n", "\n").replace("\r", "\n"), decoded.defect)


class _TextExtractor(HTMLParser):
    """Collect visible text; block elements become line breaks."""

    _BLOCK = frozenset(
        "br p div tr li ul ol table blockquote hr pre h1 h2 h3 h4 h5 h6"
        " section article header footer".split()
    )
    _HIDDEN = frozenset(("script", "style", "head", "title", "template"))

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.chunks: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._HIDDEN:
            self._hidden += 1
        elif tag in self._BLOCK:
            self.chunks.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._HIDDEN:
            self._hidden = max(0, self._hidden - 1)
        elif tag in self._BLOCK:
            self.chunks.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.chunks.append(data)


def html_to_text(markup: str) -> str:
    """Strip tags from HTML, keeping visible text with one line per block."""
    parser = _TextExtractor()
    parser.feed(markup)
    parser.close()
    lines = (squash(line) for line in "".join(parser.chunks).split("\n"))
    return "\n".join(line for line in lines if line)
