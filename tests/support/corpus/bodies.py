"""Corpus messages about bodies: charsets, flowed text, nesting, related parts, TNEF, invites.

The compared header fields are plain; ``body`` names a text the normalized
body must contain, which is where these cases differ.
"""

from __future__ import annotations

import base64
import quopri
from email import policy
from email.message import EmailMessage

from tests.support.corpus.case import Case, mail

HEAD = (
    "From: Ann Example <ann@example.org>",
    "To: Owner <owner@example.com>",
    "Date: Tue, 04 Feb 2025 09:30:00 +0100",
    "MIME-Version: 1.0",
)


def _text(subject: str, text: str, encoding: str, label: str | None, cte: str = "base64") -> bytes:
    data = text.encode(encoding)
    ctype = "Content-Type: text/plain" + (f"; charset={label}" if label else "")
    if cte == "base64":
        payload = base64.encodebytes(data)
    elif cte == "quoted-printable":
        payload = quopri.encodestring(data)
    else:
        payload = data
    return mail(
        *HEAD, f"Subject: {subject}", ctype, f"Content-Transfer-Encoding: {cte}", body=payload
    )


_CHARSETS = (
    (
        "iso-8859-1",
        "Olá, a reunião é às 15h. Até já!",
        "iso-8859-1",
        "iso-8859-1",
        "quoted-printable",
    ),
    (
        "windows-1252",
        "“Quoted” costs 12 € — see you…",
        "cp1252",
        "windows-1252",
        "quoted-printable",
    ),
    ("windows-1252-labelled-iso-8859-1", "“Quoted” — 12 €", "cp1252", "iso-8859-1", "8bit"),
    ("utf-8-labelled-iso-8859-1", "Grüße aus Köln — ✓", "utf-8", "iso-8859-1", "8bit"),
    ("utf-8-labelled-us-ascii", "naïve façade", "utf-8", "us-ascii", "8bit"),
    ("latin-1-labelled-utf-8", "Olá, até já", "latin-1", "utf-8", "8bit"),
    ("iso-2022-jp", "会議の件、よろしくお願いします。", "iso-2022-jp", "iso-2022-jp", "7bit"),
    ("iso-2022-jp-undeclared", "見積もりのお願い", "iso-2022-jp", None, "7bit"),
    ("shift_jis", "日本語のメールです。", "shift_jis", "shift_jis", "base64"),
    ("shift_jis-labelled-iso-2022-jp", "日本語のメールです。", "shift_jis", "iso-2022-jp", "8bit"),
    ("gb2312", "关于会议的通知，请查收。", "gb2312", "gb2312", "base64"),  # noqa: RUF001
    ("gbk-labelled-gb2312", "王镕先生已经确认。", "gbk", "gb2312", "base64"),
)
CHARSETS = tuple(
    Case(
        f"body-{name}",
        "charsets",
        _text(f"charset {name}", text, encoding, label, cte),
        body=text,
    )
    for name, text, encoding, label, cte in _CHARSETS
)

FLOWED = (
    Case(
        "format-flowed",
        "format-flowed",
        mail(
            *HEAD,
            "Subject: flowed",
            "Content-Type: text/plain; charset=utf-8; format=flowed",
            body="This paragraph was wrapped by the sender's \r\nclient and flows back "
            "\r\ninto one line.\r\n\r\n From here on: stuffed.\r\n-- \r\nAnn\r\n",
        ),
        body="This paragraph was wrapped by the sender's client and flows back into one line.",
    ),
    Case(
        "format-flowed-delsp-quoted",
        "format-flowed",
        mail(
            *HEAD,
            "Subject: Re: flowed",
            'Content-Type: text/plain; charset="utf-8"; format="flowed"; delsp="yes"',
            body="> Quoted text that was \r\n> wrapped.\r\nMy answer is 日本 \r\n語です。\r\n",
        ),
        body="My answer is 日本語です。",
    ),
)

_INNER = mail(
    "From: Vendor Legal <legal@vendor.example>",
    "To: someone.else@vendor.example",
    "Subject: Original terms",
    "Date: Mon, 03 Feb 2025 08:00:00 +0000",
    body="The original, kept as sent.\r\n",
)


def _forward(disposition: str, inner: bytes) -> bytes:
    return mail(
        *HEAD,
        "Subject: Fwd: Original terms",
        'Content-Type: multipart/mixed; boundary="OUT"',
        body=b"--OUT\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nSee below.\r\n"
        b"--OUT\r\nContent-Type: message/rfc822\r\n"
        + disposition.encode()
        + b"\r\n"
        + inner
        + b"\r\n--OUT--\r\n",
    )


NESTED = (
    Case("forwarded-as-attachment", "message-rfc822",
         _forward("Content-Disposition: attachment; filename=fwd.eml\r\n", _INNER),
         body="See below."),
    Case("forwarded-inline", "message-rfc822", _forward("", _INNER), body="See below."),
    Case(
        "forwarded-twice",
        "message-rfc822",
        _forward("", _forward("", _INNER).replace(b"--OUT", b"--MID").replace(b'"OUT"', b'"MID"')),
        body="See below.",
    ),
)  # fmt: skip

_PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(40))
RELATED = (
    Case(
        "alternative-with-related-html",
        "multipart-related",
        mail(
            *HEAD,
            "Subject: newsletter",
            'Content-Type: multipart/alternative; boundary="ALT"',
            body=b"--ALT\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nPlain version.\r\n"
            b'--ALT\r\nContent-Type: multipart/related; boundary="REL"; type="text/html"\r\n\r\n'
            b"--REL\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
            b'<p>HTML <img src="cid:logo"> version.</p>\r\n'
            b"--REL\r\nContent-Type: image/png\r\nContent-ID: <logo>\r\n"
            b"Content-Transfer-Encoding: base64\r\nContent-Disposition: inline\r\n\r\n"
            + _PNG
            + b"\r\n--REL--\r\n--ALT--\r\n",
        ),
        body="Plain version.",
    ),
    Case(
        "related-with-start-parameter",
        "multipart-related",
        mail(
            *HEAD,
            "Subject: start",
            'Content-Type: multipart/related; boundary="REL"; start="<root@x>"',
            body=b"--REL\r\nContent-Type: image/png\r\nContent-ID: <img@x>\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\n" + _PNG + b"\r\n"
            b"--REL\r\nContent-Type: text/html; charset=utf-8\r\nContent-ID: <root@x>\r\n\r\n"
            b"<div>The root part.</div>\r\n--REL--\r\n",
        ),
        body="The root part.",
    ),
)

_TNEF = base64.b64encode(b"\x78\x9f\x3e\x22" + bytes(range(200)))
TNEF = (
    Case(
        "tnef-winmail-dat",
        "tnef",
        mail(
            *HEAD,
            "Subject: from Outlook",
            'Content-Type: multipart/mixed; boundary="M"',
            body=b"--M\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nSee attached.\r\n"
            b'--M\r\nContent-Type: application/ms-tnef; name="winmail.dat"\r\n'
            b"Content-Transfer-Encoding: base64\r\n"
            b'Content-Disposition: attachment; filename="winmail.dat"\r\n\r\n'
            + _TNEF
            + b"\r\n--M--\r\n",
        ),
        body="See attached.",
    ),
    Case(
        "tnef-only",
        "tnef",
        mail(
            *HEAD,
            "Subject: rich text only",
            'Content-Type: application/ms-tnef; name="winmail.dat"',
            "Content-Transfer-Encoding: base64",
            body=_TNEF + b"\r\n",
        ),
    ),
)


def _ics(method: str, extra: str = "", when: str = "DTSTART:20250210T090000Z") -> str:
    return (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//corpus//EN\r\n"
        f"METHOD:{method}\r\n{extra}BEGIN:VEVENT\r\n{when}\r\n"
        "DTEND:20250210T093000Z\r\nUID:corpus-1@example.org\r\nSEQUENCE:0\r\n"
        "ORGANIZER;CN=Ann Example:mailto:ann@example.org\r\n"
        'ATTENDEE;CN="Owner";PARTSTAT=NEEDS-ACTION;RSVP=TRUE:mailto:owner@example.com\r\n'
        "ATTENDEE;CN=Bob;PARTSTAT=ACCEPTED:mailto:bob@example.org\r\n"
        "ATTENDEE;CUTYPE=ROOM;CN=Room 1:mailto:room1@resource.example.org\r\n"
        "SUMMARY:Design review\\, round 2\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )


def _invite(method: str, ics: str) -> bytes:
    return mail(
        *HEAD,
        f"Subject: Invitation: Design review ({method})",
        'Content-Type: multipart/mixed; boundary="M"',
        body=(
            '--M\r\nContent-Type: multipart/alternative; boundary="A"\r\n\r\n'
            "--A\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nYou are invited.\r\n"
            f"--A\r\nContent-Type: text/calendar; charset=utf-8; method={method}\r\n\r\n{ics}"
            "--A--\r\n"
            '--M\r\nContent-Type: application/ics; name="invite.ics"\r\n'
            'Content-Disposition: attachment; filename="invite.ics"\r\n\r\n'
            f"{ics}--M--\r\n"
        ),
    )


_OUTLOOK_ZONE = (
    "BEGIN:VTIMEZONE\r\nTZID:W. Europe Standard Time\r\nBEGIN:STANDARD\r\n"
    "DTSTART:16010101T030000\r\nTZOFFSETFROM:+0200\r\nTZOFFSETTO:+0100\r\nEND:STANDARD\r\n"
    "BEGIN:DAYLIGHT\r\nDTSTART:16010101T020000\r\nTZOFFSETFROM:+0100\r\nTZOFFSETTO:+0200\r\n"
    "END:DAYLIGHT\r\nEND:VTIMEZONE\r\n"
)
INVITES = (
    Case("invitation-request", "calendar", _invite("REQUEST", _ics("REQUEST")),
         body="You are invited.", invites=1),
    Case(
        "invitation-outlook-zone",
        "calendar",
        _invite("REQUEST", _ics("REQUEST", _OUTLOOK_ZONE,
                                'DTSTART;TZID="W. Europe Standard Time":20250210T100000')),
        invites=1,
    ),
    Case("invitation-cancel", "calendar", _invite("CANCEL", _ics("CANCEL")), invites=1),
    Case("invitation-reply", "calendar", _invite("REPLY", _ics("REPLY")), invites=1),
)  # fmt: skip


def _generated(name: str, build: EmailMessage, smtp: bool = True) -> Case:
    chosen = policy.SMTP if smtp else policy.default
    return Case(name, "email-generator", build.as_bytes(policy=chosen))


def _message(sender: str, to: str, subject: str, cc: str | None = None) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    if cc:
        msg["Cc"] = cc
    msg["Subject"] = subject
    msg["Date"] = "Wed, 05 Feb 2025 17:45:00 -0800"
    msg["Message-ID"] = "<gen@example.org>"
    msg.set_content("Grüße,\nsee attached.\n")
    return msg


def _with_parts() -> EmailMessage:
    msg = _message(
        '"Smith, J. (Sales)" <j.smith@example.com>',
        "Zoë Müller <zoe@example.de>, Grace Hopper <grace@example.org>",
        "Réunion — ordre du jour",
        cc='"O\'Brien, Chloé" <chloe@example.ie>',
    )
    msg.add_alternative("<p>Grüße</p>", subtype="html")
    msg.add_attachment(b"%PDF-1.4", maintype="application", subtype="pdf", filename="ré.pdf")
    return msg


def _quoted_names() -> EmailMessage:
    return _message(
        'Dr. "Ann" Example <ann@example.org>',
        '"Back\\\\slash" <bs@example.org>, "team: all" <all@example.org>',
        "Quotes, backslashes and colons",
    )


GENERATED = (
    _generated("generator-multipart-with-attachment", _with_parts()),
    _generated("generator-multipart-default-policy", _with_parts(), smtp=False),
    _generated("generator-quoted-names", _quoted_names()),
    _generated(
        "generator-long-cjk-names",
        _message(
            "山田 太郎 <yamada@example.jp>",
            ", ".join(f"佐藤 花子{i} <sato{i}@example.jp>" for i in range(6)),
            "見積もりのお願い" * 6,
        ),
    ),
    _generated(
        "generator-group-syntax",
        _message("ann@example.org", "Team: bob@example.org, cid@example.org;", "group"),
    ),
    _generated(
        "generator-undisclosed-recipients",
        _message("ann@example.org", "undisclosed-recipients:;", "nobody listed"),
    ),
)

CASES = (*CHARSETS, *FLOWED, *NESTED, *RELATED, *TNEF, *INVITES, *GENERATED)
