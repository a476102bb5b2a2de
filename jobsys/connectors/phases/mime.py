"""Low-level text helpers for normalization: charsets, encoded words, addresses, HTML.

Everything here is lenient by construction. Decoding never raises on bad input;
instead the caller receives the best text that can be recovered plus a short
defect note (see :class:`Decoded`) that ``normalize_message`` collects.

Charset rule (``decode_bytes``), first success wins:

1. undeclared 7-bit data is ASCII, unless it carries ISO-2022-JP escape
   sequences (Japanese mail sent without a charset parameter);
2. a declared single-byte Western label (ISO-8859-1, Windows-1252) whose bytes
   are valid UTF-8 is UTF-8 — the commonest mislabel, and valid multi-byte
   UTF-8 sequences almost never occur in real Latin-1 text;
3. the declared charset, strictly; ISO-8859-1 whose bytes include C1 controls
   (0x80-0x9F) is Windows-1252, as the WHATWG Encoding Standard reads the label;
4. the declared charset's superset (GB2312 → GB18030, Shift_JIS → CP932,
   EUC-KR → CP949, Big5 → Big5-HKSCS): mailers label the superset's
   characters with the subset's name;
5. UTF-8, then the declared language's other encodings (Japanese mail labelled
   ISO-2022-JP but sent as Shift_JIS), then Windows-1252, then Latin-1, which
   maps every byte, so the chain always ends with text.

A step after 2 that decodes with another codec than the declared one is noted
as a defect. Text in an undeclared or mislabelled CJK encoding outside these
rules ends as Windows-1252 mojibake: telling GB2312 from EUC-KR takes a
language model, which this module does not guess at.
"""

from __future__ import annotations

import codecs
import functools
import re
from dataclasses import dataclass
from email.header import decode_header
from html.parser import HTMLParser

MAX_BODY_CHARS = 1_000_000

_WESTERN = frozenset(("latin-1", "iso8859-1", "cp1252"))
_SUPERSETS = {
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "shift_jis": "cp932",
    "euc_kr": "cp949",
    "big5": "big5hkscs",
}
# Encodings of one language that mailers confuse with each other, strictest first.
_FAMILIES = {
    "iso2022_jp": ("euc_jp", "cp932"),
    "shift_jis": ("euc_jp",),
    "cp932": ("euc_jp",),
    "euc_jp": ("cp932",),
}
_ISO_2022_JP_ESCAPES = (b"\x1b$B", b"\x1b$@", b"\x1b(J")
_C1_CONTROLS = re.compile(rb"[\x80-\x9f]")
_ENCODED_WORD = re.compile(r"=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=")
_ENCODED_WORD_SPLIT = re.compile(r"(=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=)")
_WS = re.compile(r"\s+")
# One "@", no whitespace or address punctuation, and a dotted domain: what mail can reach.
_VALID_ADDR = re.compile(
    r"[^@\s<>(),;:\"\[\]\\]+@[^@\s<>(),;:\"\[\]\\.]+(\.[^@\s<>(),;:\"\[\]\\.]+)+"
)


@dataclass(frozen=True)
class Decoded:
    """Text recovered from bytes, and what had to be guessed to get it."""

    text: str
    defect: str | None = None


@functools.lru_cache(maxsize=256)
def lookup_codec(charset: str | None) -> str | None:
    """Return the canonical codec name for a MIME charset label, or None if unknown."""
    if not charset:
        return None
    # RFC 2231 allows a language suffix ("utf-8*en"); quoting is common in the wild.
    label = charset.split("*", 1)[0].strip().strip("\"'").lower()
    if label in ("unknown-8bit", "x-unknown", ""):
        return None
    try:
        name = codecs.lookup(label).name
    except (LookupError, ValueError):
        return None
    try:
        b"a".decode(name)  # "quopri", "base64"... are codecs, but not of text
    except LookupError:
        return None
    except UnicodeDecodeError:
        pass  # a text codec that needs more than one byte (UTF-16...)
    return name


def decode_bytes(data: bytes, charset: str | None) -> Decoded:
    """Decode ``data`` that claims to be in ``charset`` (see the module rule).

    Parameters:
        data: raw bytes of a body part or header word.
        charset: the declared charset label, or None when none was declared.

    Returns:
        The text, with ``defect`` set when the declared charset was unknown or wrong.
    """
    codec = lookup_codec(charset)
    if data.isascii() and (codec is None or codec == "ascii"):
        if b"\x1b" in data and any(e in data for e in _ISO_2022_JP_ESCAPES):
            return _strict(data, ("iso2022_jp",), charset, codec) or Decoded(data.decode("ascii"))
        return Decoded(data.decode("ascii"))
    if codec in _WESTERN and not data.isascii():
        return _western(data, charset, codec)
    if codec is not None:
        try:
            return Decoded(data.decode(codec))
        except UnicodeDecodeError:
            pass
    candidates = [c for c in (_SUPERSETS.get(codec or ""), "utf-8") if c]
    candidates += [*_FAMILIES.get(codec or "", ()), "cp1252", "latin-1"]
    found = _strict(data, candidates, charset, codec)
    return found or Decoded(data.decode("latin-1"), _charset_defect(charset, codec, "latin-1"))


def _western(data: bytes, charset: str | None, codec: str) -> Decoded:
    try:
        return Decoded(data.decode("utf-8"), _charset_defect(charset, codec, "utf-8"))
    except UnicodeDecodeError:
        pass
    if codec == "cp1252" or _C1_CONTROLS.search(data):
        # cp1252 leaves five bytes undefined; those fall through to Latin-1.
        found = _strict(data, ("cp1252",), charset, codec)
        if found is not None:
            return found
    return Decoded(data.decode("latin-1"), _charset_defect(charset, codec, "latin-1"))


def _strict(
    data: bytes, candidates: tuple[str, ...] | list[str], charset: str | None, codec: str | None
) -> Decoded | None:
    for candidate in candidates:
        try:
            text = data.decode(candidate)
        except UnicodeDecodeError:
            continue
        return Decoded(text, _charset_defect(charset, codec, candidate))
    return None


def _charset_defect(charset: str | None, codec: str | None, used: str) -> str | None:
    if charset is None or codec == codecs.lookup(used).name:
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


def has_encoded_word(value: str) -> bool:
    """True when ``value`` holds something shaped like an RFC 2047 encoded word."""
    return "=?" in value and _ENCODED_WORD.search(value) is not None


def decode_words(value: str) -> tuple[str, list[str]]:
    """Decode RFC 2047 encoded words; return text and defects.

    The value is split into encoded words and the text between them; whitespace
    between two encoded words is dropped (RFC 2047 §6.2), other text is kept as
    is (it may be 8-bit text recovered already). ``email.header.decode_header``
    decodes each word's Q or B payload; its bytes are then decoded with the
    declared charset strictly, as the standard parser does; only when that fails
    (an unknown charset, bytes invalid in it) do they go through
    :func:`decode_bytes`'s chain, which yields text where the standard parser
    produces replacement characters.
    """
    if not has_encoded_word(value):
        return value, []
    pieces = _ENCODED_WORD_SPLIT.split(value)
    parts: list[str] = []
    defects: list[str] = []
    for index, piece in enumerate(pieces):
        if index % 2 == 0:
            between = 0 < index < len(pieces) - 1
            if not (between and piece.strip() == "" and piece):
                parts.append(piece)
            continue
        try:
            ((chunk, charset),) = decode_header(piece)
        except Exception as e:  # email.header raises several undocumented types
            parts.append(piece)
            defects.append(f"undecodable encoded word: {type(e).__name__}")
            continue
        data = chunk if isinstance(chunk, bytes) else chunk.encode("ascii", "surrogateescape")
        decoded = _declared(data, charset) or decode_bytes(data, charset)
        parts.append(decoded.text)
        if decoded.defect:
            defects.append(decoded.defect)
    return "".join(parts), defects


def _declared(data: bytes, charset: str | None) -> Decoded | None:
    codec = lookup_codec(charset)
    if codec is None:
        return None
    try:
        return Decoded(data.decode(codec))
    except UnicodeDecodeError:
        return None


def clean_address(raw: object) -> str | None:
    """Lowercase and strip an e-mail address; None when it is not a contactable address."""
    if not isinstance(raw, str):
        return None
    addr = raw.strip().lower()
    return addr if _VALID_ADDR.fullmatch(addr) else None


def squash(text: str) -> str:
    """Collapse every run of whitespace (including folding CRLFs) to one space."""
    return _WS.sub(" ", text).strip()


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
