"""Text bodies: the part get_body picks, recovered text, charsets, flowed text, nesting."""

from __future__ import annotations

import base64
import email.policy
from email.message import EmailMessage

import pytest

from jobsys.connectors.phases.body import unflow
from jobsys.connectors.phases.normalize import NormalizedMessage, normalize_message

HEAD = b"From: a@example.com\r\nTo: b@example.org\r\nSubject: s\r\nMIME-Version: 1.0\r\n"


def _ok(raw: bytes) -> NormalizedMessage:
    result = normalize_message("g1", "t1", raw, ["INBOX"])
    assert isinstance(result, NormalizedMessage), result
    return result


# -- item 2: bodies the parser kept are not thrown away --------------------------


def test_a_multipart_without_boundary_is_read_with_the_boundary_its_text_shows() -> None:
    # Given a multipart without a boundary parameter whose payload starts with one
    raw = HEAD + (
        b"Content-Type: multipart/alternative\r\n\r\n--XYZ\r\nContent-Type: text/plain\r\n\r\n"
        b"the text\r\n--XYZ\r\nContent-Type: text/html\r\n\r\n<p>html</p>\r\n--XYZ--\r\n"
    )

    # When / Then: the parts are found again, and the plain one is the body
    message = _ok(raw)
    assert message.text_body == "the text"
    assert "body: multipart read with the boundary 'XYZ' its first line shows" in message.defects


def test_a_multipart_whose_boundary_never_occurs_keeps_its_text() -> None:
    # Given a declared boundary that the body never uses
    raw = HEAD + b'Content-Type: multipart/mixed; boundary="nope"\r\n\r\nJust the text.\r\n'

    # When / Then
    message = _ok(raw)
    assert message.text_body == "Just the text."
    assert "mime: StartBoundaryNotFoundDefect" in message.defects


def test_a_text_part_with_a_name_parameter_is_the_body_unless_it_is_an_attachment() -> None:
    # Given text/plain with name= and no Content-Disposition, then the same as attachment
    inline = HEAD + b'Content-Type: text/plain; name="msg.txt"\r\n\r\nInline text.\r\n'
    attached = HEAD + (
        b'Content-Type: multipart/mixed; boundary="B"\r\n\r\n--B\r\n'
        b"Content-Type: text/plain\r\n\r\nThe body.\r\n--B\r\n"
        b'Content-Type: text/plain; name="notes.txt"\r\nContent-Disposition: attachment\r\n\r\n'
        b"Attached notes.\r\n--B--\r\n"
    )

    # When / Then
    assert _ok(inline).text_body == "Inline text."
    assert _ok(attached).text_body == "The body."


def test_the_body_is_the_single_part_get_body_picks() -> None:
    # Given a mixed message with two inline text parts (a mailing-list footer, say)
    msg = EmailMessage()
    msg["From"] = "a@example.com"
    msg.set_content("First part.")
    msg.add_attachment("Footer part.", disposition="inline")
    std = msg.get_body(preferencelist=("plain", "html"))

    # When / Then: the body is the part EmailMessage.get_body returns
    assert std is not None and std.get_content().strip() == "First part."
    assert _ok(msg.as_bytes(policy=email.policy.SMTP)).text_body == "First part."


def test_an_html_only_related_body_is_converted_to_text() -> None:
    # Given multipart/related with the HTML root second (start parameter) and an image
    raw = HEAD + (
        b'Content-Type: multipart/related; boundary="R"; start="<root@x>"\r\n\r\n'
        b"--R\r\nContent-Type: image/png\r\nContent-ID: <img@x>\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n"
        b"--R\r\nContent-Type: text/html; charset=utf-8\r\nContent-ID: <root@x>\r\n\r\n"
        b'<p>Hello <img src="cid:img@x"> world</p>\r\n--R--\r\n'
    )

    # When / Then
    assert _ok(raw).text_body == "Hello world"


def test_a_forwarded_message_is_not_the_body_and_lends_no_headers() -> None:
    # Given a note with a forwarded message/rfc822 that has its own headers
    raw = (
        b"From: a@example.com\r\nTo: b@example.org\r\nSubject: Fwd: terms\r\n"
        b'Content-Type: multipart/mixed; boundary="O"\r\n\r\n'
        b"--O\r\nContent-Type: text/plain\r\n\r\nSee below.\r\n"
        b"--O\r\nContent-Type: message/rfc822\r\n\r\n"
        b"From: legal@vendor.example\r\nTo: x@vendor.example\r\nSubject: terms\r\n\r\n"
        b"Inner text.\r\n--O--\r\n"
    )

    # When / Then
    message = _ok(raw)
    assert (message.subject, message.from_addr, message.text_body) == (
        "Fwd: terms",
        "a@example.com",
        "See below.",
    )


def test_a_tnef_attachment_is_not_the_body() -> None:
    # Given an Outlook message: text plus winmail.dat
    tnef = base64.b64encode(b"\x78\x9f\x3e\x22" + bytes(64))
    raw = HEAD + (
        b'Content-Type: multipart/mixed; boundary="M"\r\n\r\n--M\r\n'
        b"Content-Type: text/plain\r\n\r\nSee attached.\r\n--M\r\n"
        b'Content-Type: application/ms-tnef; name="winmail.dat"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\n" + tnef + b"\r\n--M--\r\n"
    )

    # When / Then
    assert _ok(raw).text_body == "See attached."


# -- item 10: charsets declared and mislabelled ----------------------------------


@pytest.mark.parametrize(
    ("text", "encoding", "label", "defect"),
    [
        ("会議の件、よろしく。", "iso-2022-jp", "iso-2022-jp", None),
        ("会議の件、よろしく。", "iso-2022-jp", None, None),
        ("会議の件、よろしく。", "shift_jis", "iso-2022-jp", "decoded as cp932"),
        ("关于会议的通知", "gb2312", "gb2312", None),
        ("王镕先生已经确认", "gbk", "gb2312", "decoded as gb18030"),
        ("“Quoted” — 12 €", "cp1252", "iso-8859-1", "decoded as cp1252"),
        ("Grüße aus Köln", "utf-8", "iso-8859-1", "decoded as utf-8"),
        ("Olá, até já", "latin-1", "utf-8", "decoded as cp1252"),
        ("Olá, até já", "latin-1", "iso-8859-1", None),
    ],
)
def test_declared_and_mislabelled_charsets(
    text: str, encoding: str, label: str | None, defect: str | None
) -> None:
    # Given a body in ``encoding`` labelled ``label``
    content_type = b"Content-Type: text/plain" + (f"; charset={label}".encode() if label else b"")
    raw = (
        HEAD + content_type + b"\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" + text.encode(encoding)
    )

    # When it is normalized
    message = _ok(raw)

    # Then the text is recovered, and a guess is named
    assert message.text_body == text
    notes = [d for d in message.defects if d.startswith("body: charset")]
    assert notes == ([] if defect is None else [f"body: charset {label!r} wrong, {defect}"])


# -- item 10: format=flowed ------------------------------------------------------


def test_format_flowed_lines_are_joined() -> None:
    # Given flowed text with soft breaks, space-stuffing and a signature separator
    raw = HEAD + (
        b"Content-Type: text/plain; charset=utf-8; format=flowed\r\n\r\n"
        b"One long line \r\nthat flows.\r\n\r\n From me.\r\n-- \r\nAnn\r\n"
    )

    # When / Then
    assert _ok(raw).text_body == "One long line that flows.\n\nFrom me.\n-- \nAnn"


def test_unflow_respects_quote_depth_and_delsp() -> None:
    # Given quoted flowed lines and DelSp=yes text
    quoted = "> one \n> two\nmine \nend"
    delsp = "日本 \n語"

    # When / Then
    assert unflow(quoted) == "> one two\nmine end"
    assert unflow(delsp, delete_space=True) == "日本語"


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        # a non-text codec named as charset
        (HEAD + b"Content-Type: text/plain; charset=quopri\r\n\r\ncaf\xe9\r\n", "café"),
        # 8-bit bytes in a boundary-less multipart's type and first line; its one part
        # has no header fields (and a Message without fields is falsy)
        (
            HEAD + b"Content-Type: multipart/mixed\xe9\r\n\r\n--b\xe9\r\n\r\ntext\r\n--b\xe9--\r\n",
            "text",
        ),
    ],
)
def test_odd_bodies_found_by_fuzzing_are_read(raw: bytes, text: str) -> None:
    # When / Then: the text, not an internal error
    assert _ok(raw).text_body == text
