"""Address headers (From, To, Cc): every mailbox, as the standard parser reads it.

The reading of one cleaned (unfolded, 8-bit recovered) header value is
``email.policy.default``'s: the mailboxes of its ``AddressHeader.addresses``,
each an :class:`Address` with the address lowercased and the display name
decoded and squashed. Comments are not part of display names; group names are
dropped and their members kept; a mailbox without ``@`` (``To: XX``) is kept
as read — deciding what is contactable is extraction's job. Two ways around
the standard parser, neither changing what a well-formed header yields:

* **Fast path** (``_simple``): a list of ``name <local@domain>`` and bare
  ``local@domain`` entries with dot-atom addresses, atom or whole encoded-word
  display names, and no quotes, comments, escapes, groups or domain literals
  is split on commas and decoded by ``mime.decode_words``. The standard parser
  costs 100-250 µs per header, about as much as the rest of normalization, and
  a property test holds the two readings equal on such lists.
* **Salvage** (``_salvage``): when the standard parser reports that a mailbox
  was invalid (``Big Bug bb@bug.com``, two mailboxes without a comma, a display
  name containing ``@``) or decoded a display name to replacement characters,
  the value is split at top-level commas and each piece the standard parser
  cannot read cleanly is scanned by hand: every ``<addr-spec>`` takes the text
  before it as its display name (even ``Mikel@Lindsaar``: an address is never
  invented from a display name), and outside angle brackets every token with
  an ``@`` inside it is an address whose preceding words are its name.
"""

from __future__ import annotations

import email.policy
import re
from dataclasses import dataclass
from email.errors import InvalidHeaderDefect

from jobsys.connectors.phases import mime

_STANDARD = email.policy.default
MAX_STANDARD_CHARS = 1_024  # a whole field value the standard parser reads at once
MAX_MAILBOX_CHARS = 512  # one list element it reads
STANDARD_BUDGET = 8_192  # characters it reads per field value in all
_NOT_SIMPLE = re.compile(r'["()\\;:\[\]]')
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_DOT_ATOM = rf"{_ATEXT}+(?:\.{_ATEXT}+)*"
_SIMPLE_MAILBOX = re.compile(
    rf"\s*(?:([^<>@]*?)\s*<({_DOT_ATOM}@{_DOT_ATOM})>|({_DOT_ATOM}@{_DOT_ATOM}))\s*"
)
_ENCODED_TOKEN = re.compile(r"=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=")
_GARBLED = re.compile("[\udc80-\udcff\ufffd]")
# Defects of mailboxes the standard parser still reads as written.
_BENIGN = frozenset(
    (
        "addr-spec local part with no domain",
        "null addr-spec in angle-addr",
        "empty element in address-list",
    )
)


@dataclass(frozen=True)
class Address:
    """One mailbox from an address header: lowercased address and decoded display name."""

    addr: str
    name: str


def read(field: str, values: list[str], defects: list[str]) -> tuple[Address, ...]:
    """Every mailbox of every ``field`` value, in order (see the module docstring).

    Parameters:
        field: the header's name, used in defect notes.
        values: the header's cleaned values, one per occurrence.
        defects: where notes about losses and repairs are appended.

    Returns:
        The mailboxes, duplicates included, as the header lists them.
    """
    found: list[Address] = []
    for value in values:
        simple = _simple(value, field, defects)
        found.extend(simple if simple is not None else _parse(value, field, defects))
    return tuple(found)


def _simple(value: str, field: str, defects: list[str]) -> list[Address] | None:
    """The fast path's reading, or None when ``value`` is not that simple."""
    if _NOT_SIMPLE.search(value):
        return None
    found: list[Address] = []
    for piece in value.split(","):
        if not piece.strip():
            continue
        if len(piece) > MAX_MAILBOX_CHARS:
            return None
        if "  " in piece or "\t" in piece:
            # Runs of whitespace would make the pattern backtrack quadratically.
            piece = mime.squash(piece)
        match = _SIMPLE_MAILBOX.fullmatch(piece)
        if match is None:
            return None
        name, bracketed, bare = match.groups()
        display = ""
        if name:
            if "=?" in name and not all(
                _ENCODED_TOKEN.fullmatch(t) for t in name.split() if "=?" in t
            ):
                return None  # an encoded word inside a word: the standard parser decides
            display = _decode_name(name, field, defects)
        found.append(Address((bracketed or bare).lower(), display))
    return found


def _decode_name(text: str, field: str, defects: list[str]) -> str:
    decoded, word_defects = mime.decode_words(text)
    defects.extend(f"{field}: {d}" for d in word_defects)
    return mime.squash(decoded)


def _parse(value: str, field: str, defects: list[str]) -> list[Address]:
    if len(value) > MAX_STANDARD_CHARS:
        # A long list is read element by element (see _salvage's budget).
        return _salvage(value, field, defects)
    try:
        standard = _standard(value)
    except RecursionError:
        # email._header_value_parser recurses once per nested comment "(((...".
        defects.append(f"{field}: unparseable address list")
        return _salvage(value, field, defects)
    except Exception:  # the standard header parser has undocumented failure modes
        standard = None
    return standard if standard is not None else _salvage(value, field, defects)


def _standard(value: str, *, strict: bool = True) -> list[Address] | None:
    """``email.policy.default``'s mailboxes; None (when strict) if one was invalid or garbled."""
    header = _STANDARD.header_factory("to", value)
    if strict and any(
        isinstance(d, InvalidHeaderDefect) and str(d) not in _BENIGN for d in header.defects
    ):
        return None
    found = [
        Address(a.addr_spec.lower(), mime.squash(a.display_name))
        for a in header.addresses
        if a.addr_spec not in ("", "<>")
    ]
    if strict and any(_GARBLED.search(a.name) for a in found) and not _GARBLED.search(value):
        return None
    return found


def _salvage(value: str, field: str, defects: list[str]) -> list[Address]:
    """Each top-level element as the fast path or the standard parser reads it, else by hand.

    The standard parser's cost grows much faster than the length of hostile input
    (8,000 parentheses take a second), so it only sees elements of at most
    ``MAX_MAILBOX_CHARS`` and ``STANDARD_BUDGET`` characters per field value in all.
    """
    found: list[Address] = []
    budget = STANDARD_BUDGET
    scanned = False
    for piece in _split_top_level(value):
        standard = _simple(piece, field, defects)
        if standard is None and len(piece) <= min(MAX_MAILBOX_CHARS, budget):
            budget -= len(piece)
            standard = _standard_or_none(piece)
        if standard is None:
            scanned = True
            standard = _scan(piece, field, defects) or _lenient(piece, budget)
        found.extend(standard)
    if scanned:
        defects.append(f"{field}: malformed mailboxes read by hand")
    return found


def _standard_or_none(piece: str) -> list[Address] | None:
    try:
        return _standard(piece)
    except Exception:  # RecursionError included: the piece is read by hand
        return None


def _lenient(piece: str, budget: int) -> list[Address]:
    """What the standard parser makes of a piece nothing recognisable was found in."""
    if len(piece) > min(MAX_MAILBOX_CHARS, budget):
        return []
    try:
        return _standard(piece, strict=False) or []
    except Exception:  # RecursionError included: nothing is recoverable
        return []


def _split_top_level(value: str) -> list[str]:
    """Split at commas outside quoted strings, comments and angle brackets."""
    pieces: list[str] = []
    start = depth = 0
    quoted = angled = False
    last_quote = value.rfind('"')
    index = 0
    while index < len(value):
        char = value[index]
        if char == "\\" and (quoted or depth):
            index += 1
        elif quoted:
            quoted = char != '"'
        elif char == '"':
            quoted = index < last_quote  # an unclosed quote is a plain character
        elif char == "(":
            depth += 1
        elif char == ")" and depth:
            depth -= 1
        elif char == "<" and not depth:
            angled = True
        elif char == ">" and not depth:
            angled = False
        elif char == "," and not (depth or angled):
            pieces.append(value[start:index])
            start = index + 1
        index += 1
    pieces.append(value[start:])
    return [p for p in pieces if p.strip()]


def _scan(piece: str, field: str, defects: list[str]) -> list[Address]:
    """Hand-read mailboxes of one list element (module docstring, "Salvage")."""
    found: list[Address] = []
    phrase: list[str] = []
    last_quote = piece.rfind('"')
    index = 0
    while index < len(piece):
        char = piece[index]
        if char == '"' and index < last_quote:
            end = _quote_end(piece, index)
            phrase.append(re.sub(r"\\(.)", r"\1", piece[index + 1 : end]))
            index = end
        elif char == "(":
            index = _comment_end(piece, index)
            phrase.append(" ")
        elif char == "<":
            end = piece.find(">", index)
            end = len(piece) if end < 0 else end
            addr = "".join(re.sub(r"\([^()]*\)", "", piece[index + 1 : end]).split())
            if "@" in addr:
                found.append(Address(addr.lower(), _decode_name("".join(phrase), field, defects)))
            phrase = []
            index = end
        elif char in ":;":
            phrase = []  # a group's name, or its end
        elif char == '"':
            pass  # an unclosed quote: not part of the name
        else:
            phrase.append(char)
        index += 1
    return found + _bare("".join(phrase), field, defects)


def _bare(text: str, field: str, defects: list[str]) -> list[Address]:
    found: list[Address] = []
    words: list[str] = []
    for token in text.split():
        local, at, domain = token.partition("@")
        if at and local and domain:
            found.append(Address(token.lower(), _decode_name(" ".join(words), field, defects)))
            words = []
        else:
            words.append(token)
    return found


def _quote_end(text: str, start: int) -> int:
    index = start + 1
    while index < len(text) and text[index] != '"':
        index += 2 if text[index] == "\\" else 1
    return min(index, len(text))


def _comment_end(text: str, start: int) -> int:
    depth, index = 0, start
    while index < len(text):
        char = text[index]
        if char == "\\":
            index += 1
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return index
        index += 1
    return len(text)
