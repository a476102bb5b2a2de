"""Header reading: no identity-header gate, unfolding before decoding, header block repair."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from jobsys.connectors.phases.headers import repair_header_block
from jobsys.connectors.phases.normalize import (
    Address,
    MessageError,
    NormalizedMessage,
    normalize_message,
)

DATE = b"Date: Tue, 04 Feb 2025 09:30:00 +0100\r\n"


def _ok(raw: bytes) -> NormalizedMessage:
    result = normalize_message("g1", "t1", raw, ["INBOX"])
    assert isinstance(result, NormalizedMessage), result
    return result


# -- item 1: a message the standard parser can read is a message -----------------


def test_mime_headers_without_identity_fields_are_a_message_with_its_body() -> None:
    # Given a message with MIME headers but no From, To, Subject or Date
    raw = b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nKeep me.\r\n"

    # When it is normalized
    message = _ok(raw)

    # Then what it has is stored, and what it lacks is named
    assert (message.subject, message.from_addr, message.to, message.sent_at) == ("", "", (), None)
    assert message.text_body == "Keep me."
    assert {"from: missing", "subject: missing", "date: missing"} <= set(message.defects)


def test_only_input_without_a_header_block_is_an_error() -> None:
    # Given text with no header field, and a lone custom header
    no_block = b"Dear Bob,\r\nthis is not a message.\r\n"
    custom = b"X-Only: custom\r\n\r\nbody"

    # When / Then: the first has nothing to store, the second is a message
    assert normalize_message("g", "t", no_block, []) == MessageError(
        "g", "t", "no RFC 822 header fields found"
    )
    assert _ok(custom).text_body == "body"


# -- item 6: unfold (RFC 5322 §2.2.3) before decoding ----------------------------


def test_folded_subject_keeps_the_space_before_an_encoded_word() -> None:
    # Given a subject folded just before an encoded word
    raw = b"From: a@example.com\r\nSubject: Re: hello\r\n =?UTF-8?Q?w=C3=B6rld?=\r\n\r\nx"

    # When / Then
    assert _ok(raw).subject == "Re: hello wörld"


def test_folded_quoted_display_name_keeps_its_mailbox() -> None:
    # Given a To field whose quoted display name is folded after its comma
    raw = b'From: a@example.com\r\nTo: "Doe,\r\n John" <j@d.com>\r\n\r\nx'

    # When / Then
    assert _ok(raw).to == (Address("j@d.com", "Doe, John"),)


def test_encoded_words_split_across_folded_lines_in_two_charsets() -> None:
    # Given Q (ISO-8859-1) and B (UTF-8) words on two lines, in a subject and a name
    raw = (
        b"From: =?iso-8859-1?q?Fran=E7ois_?=\r\n =?utf-8?b?5bGx55Sw?= <f@example.org>\r\n"
        b"Subject: =?iso-8859-1?q?D=E9jeuner_?=\r\n =?utf-8?b?5piO5pel?=\r\n\r\nx"
    )

    # When / Then: the whitespace between words vanishes, the space inside them stays
    message = _ok(raw)
    assert message.subject == "Déjeuner 明日"
    assert message.senders == (Address("f@example.org", "François 山田"),)


def test_an_unknown_charset_in_an_encoded_word_is_still_decoded() -> None:
    # Given an encoded word in a charset no codec knows
    raw = b"From: a@example.com\r\nSubject: =?x-unknown?q?caf=E9?=\r\n\r\nx"

    # When / Then: text instead of U+FFFD, and the guess is named
    message = _ok(raw)
    assert message.subject == "café"
    assert "subject: charset 'x-unknown' unknown, decoded as cp1252" in message.defects


# -- item 9: one junk line no longer ends the header block ------------------------


def test_a_junk_line_inside_the_headers_is_dropped_and_the_rest_read() -> None:
    # Given a line that is not a field between real fields
    raw = (
        b"From: Ann <ann@example.org>\r\nquite Delivered-To: me@example.com\r\n"
        b"To: Bob <bob@example.org>\r\nSubject: after junk\r\n" + DATE + b"\r\nthe body\r\n"
    )

    # When it is normalized
    message = _ok(raw)

    # Then the fields after it are read and the body stays the body
    assert message.to == (Address("bob@example.org", "Bob"),)
    assert message.subject == "after junk"
    assert message.sent_at == datetime(2025, 2, 4, 8, 30, tzinfo=UTC)
    assert message.text_body == "the body"
    assert "headers: dropped 1 line(s) that are not fields" in message.defects


def test_obsolete_whitespace_before_the_colon_is_read() -> None:
    # Given RFC 822 / RFC 5322 obs-optional syntax
    raw = b"From    : a@example.com\r\nTo    : b@example.org\r\nSubject : old\r\n\r\nx"

    # When / Then
    message = _ok(raw)
    assert (message.from_addr, message.to, message.subject) == (
        "a@example.com",
        (Address("b@example.org", ""),),
        "old",
    )


@pytest.mark.parametrize(
    "raw",
    [
        # a body that only lacks its separating empty line
        b"From: a@example.com\r\nHello Bob,\r\nSee: the attached\r\n",
        # a header block that is fine
        b"From: a@example.com\r\nTo: b@example.org\r\n\r\nbody",
        # text with more junk than fields
        b"From: a@example.com\r\none\r\ntwo\r\nTo: b@example.org\r\n\r\nbody",
    ],
)
def test_the_repair_leaves_alone_what_is_not_a_cut_header_block(raw: bytes) -> None:
    # When / Then
    assert repair_header_block(raw) is None


def test_a_body_without_its_empty_line_stays_a_body() -> None:
    # Given headers followed directly by body text
    raw = b"From: a@example.com\r\nHello Bob,\r\nSee: the attached\r\n"

    # When / Then
    assert _ok(raw).text_body == "Hello Bob,\r\nSee: the attached".replace("\r\n", "\n")
