"""Bodies of generated mail: the MIME structures and charsets a normalizer meets.

``body(rng, ...)`` draws one shape — plain text (sometimes ``format=flowed``,
sometimes a ``name=`` parameter without a disposition), multipart/alternative,
a PDF attachment (some with RFC 2231 file names), ``multipart/related`` with
inline images, a forwarded ``message/rfc822``, a TNEF ``winmail.dat``, or a
calendar invitation (``text/calendar``, Google and Outlook style) — and one
text charset: UTF-8, ISO-8859-1, Windows-1252, Shift_JIS, ISO-2022-JP or
GB2312, declared correctly or mislabelled the ways mailers mislabel them.
The header block is written by :mod:`.mail_headers`; this module returns the
MIME tree whose root headers (Content-Type, transfer encoding) follow it.
"""

from __future__ import annotations

import base64
import quopri
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import Message
from email.mime.application import MIMEApplication
from email.mime.image import MIMEImage
from email.mime.message import MIMEMessage
from email.mime.multipart import MIMEMultipart
from email.mime.nonmultipart import MIMENonMultipart
from email.policy import compat32
from email.utils import format_datetime

from jobsys.connectors.google.emulator.facts import MessageFacts, Person

_TEMPLATES = {
    "latin": "Olá {name},\n\nSobre {topic}: a reunião é às 15h. Até já!\n",
    "western": "Hello {name},\n\n“{topic}” costs 12 € — see you…\n",
    "utf-8": "Hi {name},\n\nA quick note about {topic}. Café at 10? — thanks ✓\n",
    "japanese": "{name}様\n\n{topic}の件、よろしくお願いします。\n",
    # Full-width punctuation is what Chinese text uses.
    "chinese": "{name}，你好！\n\n关于“{topic}”的事情，请查收。\n",  # noqa: RUF001
    "gbk": "{name}，你好！\n\n关于“{topic}”，王镕先生已经确认。\n",  # noqa: RUF001
}
# (template, bytes encoding, declared label or None): the last ones are mislabelled.
CHARSETS = (
    ("utf-8", "utf-8", "utf-8"),
    ("latin", "iso-8859-1", "iso-8859-1"),
    ("western", "windows-1252", "windows-1252"),
    ("japanese", "shift_jis", "shift_jis"),
    ("japanese", "iso-2022-jp", "iso-2022-jp"),
    ("chinese", "gb2312", "gb2312"),
    ("western", "windows-1252", "iso-8859-1"),
    ("utf-8", "utf-8", "iso-8859-1"),
    ("japanese", "shift_jis", "iso-2022-jp"),
    ("gbk", "gbk", "gb2312"),
    ("japanese", "iso-2022-jp", None),
)
SHAPES = (
    ("plain", 18),
    ("flowed", 5),
    ("named", 3),
    ("alternative", 22),
    ("attachment", 12),
    ("related", 8),
    ("html_related", 4),
    ("forwarded", 7),
    ("tnef", 5),
    ("invite", 10),
    ("invite_outlook", 6),
)
_PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)
_TNEF_SIGNATURE = b"\x78\x9f\x3e\x22"
POLICY = compat32.clone(linesep="\r\n")


@dataclass(frozen=True)
class Body:
    """A generated body: its MIME tree, shape and text charset (for tests and coverage)."""

    root: Message
    shape: str
    charset: tuple[str, str, str | None]


def body(rng: random.Random, facts: MessageFacts, owner: Person, n: int) -> Body:
    """Draw one body shape and charset for ``facts`` (see the module docstring)."""
    charset = rng.choice(CHARSETS)
    template, encoding, _ = charset
    name = facts.to[0].name.split()[0] if facts.to and facts.to[0].name else "there"
    text = _encodable(_TEMPLATES[template].format(name=name, topic=facts.subject), encoding)
    shape = rng.choices([s for s, _ in SHAPES], weights=[w for _, w in SHAPES])[0]
    return Body(_build(rng, shape, text, charset, facts, owner, n, name), shape, charset)


def _build(
    rng: random.Random,
    shape: str,
    text: str,
    charset: tuple[str, str, str | None],
    facts: MessageFacts,
    owner: Person,
    n: int,
    name: str,
) -> Message:
    match shape:
        case "flowed":
            return _flowed(rng, name)
        case "named":
            # A name= parameter without Content-Disposition: still the body.
            return text_part(text, "plain", charset, name=f"message-{n}.txt")
        case "alternative":
            return _alternative(rng, text, charset)
        case "attachment":
            return _with_attachment(rng, _alternative(rng, text, charset), n)
        case "related":
            return _alternative(rng, text, charset, related=True)
        case "html_related":
            return _related(rng, _html(text), charset)
        case "forwarded":
            return _forwarded(rng, text, charset, facts)
        case "tnef":
            return _mixed(rng, text_part(text, "plain", charset), _tnef(rng))
        case "invite" | "invite_outlook":
            return _invite(rng, text, charset, facts, owner, n, outlook=shape != "invite")
    return text_part(text, "plain", charset)


def _encodable(text: str, encoding: str) -> str:
    try:
        text.encode(encoding)
    except UnicodeEncodeError:
        return text.encode(encoding, "replace").decode(encoding)
    return text


def text_part(
    text: str, subtype: str, charset: tuple[str, str, str | None], **params: str
) -> MIMENonMultipart:
    """One text part: the bytes in the charset's encoding, labelled with its label."""
    _, encoding, label = charset
    part = MIMENonMultipart("text", subtype)
    del part["MIME-Version"]
    for key, value in {**({"charset": label} if label else {}), **params}.items():
        part.set_param(key, value)
    data = text.replace("\n", "\r\n").encode(encoding)
    # As real clients send them: ISO-2022-JP is 7-bit, CJK base64, Latin quoted-printable.
    if encoding == "iso-2022-jp":
        part["Content-Transfer-Encoding"] = "7bit"
        part.set_payload(data.decode("ascii"))
    elif encoding in ("shift_jis", "gb2312", "gbk"):
        part["Content-Transfer-Encoding"] = "base64"
        part.set_payload(base64.encodebytes(data).decode("ascii"))
    else:
        part["Content-Transfer-Encoding"] = "quoted-printable"
        part.set_payload(quopri.encodestring(data).decode("ascii"))
    return part


def _html(text: str) -> str:
    lines = "".join(f"<p>{line}</p>" for line in text.splitlines() if line)
    return f'<html><body>{lines}<img src="cid:logo@emulator"></body></html>\n'


def _multipart(rng: random.Random, subtype: str, *parts: Message, **params: str) -> MIMEMultipart:
    container = MIMEMultipart(subtype, boundary=f"=_{subtype[:3]}_{rng.getrandbits(64):016x}")
    for key, value in params.items():
        container.set_param(key, value)
    del container["MIME-Version"]
    for part in parts:
        container.attach(part)
    return container


def _mixed(rng: random.Random, *parts: Message) -> MIMEMultipart:
    return _multipart(rng, "mixed", *parts)


def _alternative(
    rng: random.Random, text: str, charset: tuple[str, str, str | None], *, related: bool = False
) -> MIMEMultipart:
    html = _html(text) if related else _html(text).replace('<img src="cid:logo@emulator">', "")
    rich = _related(rng, html, charset) if related else text_part(html, "html", charset)
    return _multipart(rng, "alternative", text_part(text, "plain", charset), rich)


def _related(rng: random.Random, html: str, charset: tuple[str, str, str | None]) -> MIMEMultipart:
    image = MIMEImage(_PNG, "png")
    del image["MIME-Version"]
    image["Content-ID"] = "<logo@emulator>"
    image.add_header("Content-Disposition", "inline", filename="logo.png")
    return _multipart(rng, "related", text_part(html, "html", charset), image, type="text/html")


def _flowed(rng: random.Random, name: str) -> MIMENonMultipart:
    words = ["Thanks", "for", "the", "notes,", name, "—", "the", "plan", "for", "next"]
    words += ["week", "looks", "right", "to", "me", "and", "I", "will", "send", "the"]
    words += ["minutes", "to", "everyone", "on", "Friday", "morning."] * rng.randint(1, 3)
    lines, line = [], ""
    for word in words:
        if line and len(line) + len(word) > 60:
            lines.append(line + " ")  # the trailing space: this line flows into the next
            line = ""
        line = f"{line} {word}".strip() if line else word
    lines.append(line)
    text = "\n".join(lines) + "\n\nFrom here on, fixed lines.\n"
    charset = ("utf-8", "utf-8", "utf-8")
    # " From" is space-stuffed (RFC 3676 §4.4); the receiver removes that space.
    return text_part(text.replace("\nFrom ", "\n From "), "plain", charset, format="flowed")


def _with_attachment(rng: random.Random, inner: Message, n: int) -> MIMEMultipart:
    part = MIMEApplication(rng.randbytes(rng.randint(200, 2000)), "pdf")
    del part["MIME-Version"]
    if rng.random() < 0.5:
        part.add_header("Content-Disposition", "attachment", filename=f"report-{n}.pdf")
    else:
        # RFC 2231 encoded file name, which many parsers get wrong.
        part.add_header(
            "Content-Disposition", "attachment", filename=("utf-8", "", f"résumé-{n}.pdf")
        )
    return _mixed(rng, inner, part)


def _tnef(rng: random.Random) -> Message:
    part = MIMEApplication(_TNEF_SIGNATURE + rng.randbytes(rng.randint(300, 1500)), "ms-tnef")
    del part["MIME-Version"]
    part.set_param("name", "winmail.dat")
    part.add_header("Content-Disposition", "attachment", filename="winmail.dat")
    return part


def _forwarded(
    rng: random.Random, text: str, charset: tuple[str, str, str | None], facts: MessageFacts
) -> MIMEMultipart:
    inner = text_part("Original message, kept as sent.\n", "plain", ("utf-8", "utf-8", "utf-8"))
    inner["From"] = "Vendor Legal <legal@vendor.example>"
    inner["To"] = "someone.else@vendor.example"
    inner["Subject"] = "Original: terms"
    inner["Date"] = format_datetime((facts.sent_at or datetime.now(UTC)) - timedelta(days=3))
    attached = MIMEMessage(inner)
    del attached["MIME-Version"]
    disposition = "attachment" if rng.random() < 0.5 else "inline"
    attached.add_header("Content-Disposition", disposition, filename="forwarded.eml")
    return _mixed(rng, text_part(text, "plain", charset), attached)


def _invite(
    rng: random.Random,
    text: str,
    charset: tuple[str, str, str | None],
    facts: MessageFacts,
    owner: Person,
    n: int,
    *,
    outlook: bool,
) -> MIMEMultipart:
    ics = invitation(rng, facts, owner, n, outlook=outlook)
    calendar = MIMENonMultipart("text", "calendar", charset="utf-8", method="REQUEST")
    del calendar["MIME-Version"]
    calendar["Content-Transfer-Encoding"] = "7bit" if ics.isascii() else "base64"
    data = ics.encode()
    calendar.set_payload(ics if ics.isascii() else base64.encodebytes(data).decode("ascii"))
    html = _html(text).replace('<img src="cid:logo@emulator">', "")
    alternative = _multipart(
        rng, "alternative", text_part(text, "plain", charset), text_part(html, "html", charset)
    )
    alternative.attach(calendar)
    if outlook:
        return alternative
    attached = MIMEApplication(data, "ics", name="invite.ics")
    del attached["MIME-Version"]
    attached.add_header("Content-Disposition", "attachment", filename="invite.ics")
    return _mixed(rng, alternative, attached)


def invitation(
    rng: random.Random, facts: MessageFacts, owner: Person, n: int, *, outlook: bool
) -> str:
    """An iTIP REQUEST from the message's sender to its recipients, lines folded at 75."""
    sent = facts.sent_at or datetime.now(UTC)
    start = (sent + timedelta(days=rng.randint(1, 10))).replace(minute=0, second=0)
    start = start.replace(hour=rng.randint(8, 16), microsecond=0)
    end = start + timedelta(minutes=rng.choice((30, 60)))
    organizer = facts.sender or owner
    people = dict.fromkeys((*facts.to, *facts.cc, owner))
    lines = ["BEGIN:VCALENDAR", "PRODID:-//jobsys emulator//EN", "VERSION:2.0", "METHOD:REQUEST"]
    if outlook:
        # Windows zone names are not IANA names: the VTIMEZONE gives the offsets.
        zone, local = "W. Europe Standard Time", timedelta(hours=1)
        lines += [
            "BEGIN:VTIMEZONE", f"TZID:{zone}",
            "BEGIN:STANDARD", "DTSTART:16010101T030000", "TZOFFSETFROM:+0200",
            "TZOFFSETTO:+0100", "END:STANDARD",
            "BEGIN:DAYLIGHT", "DTSTART:16010101T020000", "TZOFFSETFROM:+0100",
            "TZOFFSETTO:+0200", "END:DAYLIGHT", "END:VTIMEZONE",
        ]  # fmt: skip
        when = [
            f'DTSTART;TZID="{zone}":{(start + local).strftime("%Y%m%dT%H%M%S")}',
            f'DTEND;TZID="{zone}":{(end + local).strftime("%Y%m%dT%H%M%S")}',
        ]
    else:
        when = [f"DTSTART:{start:%Y%m%dT%H%M%SZ}", f"DTEND:{end:%Y%m%dT%H%M%SZ}"]
    lines += ["BEGIN:VEVENT", *when, f"DTSTAMP:{sent.astimezone(UTC):%Y%m%dT%H%M%SZ}"]
    lines.append(f'ORGANIZER;CN="{organizer.name}":mailto:{organizer.email}')
    lines.append(f"UID:invite-{n}-{rng.getrandbits(40):010x}@emulator.example")
    for person in people:
        lines.append(
            "ATTENDEE;CUTYPE=INDIVIDUAL;ROLE=REQ-PARTICIPANT;PARTSTAT=NEEDS-ACTION;"
            f'RSVP=TRUE;CN="{person.name}":mailto:{person.email}'
        )
    summary = facts.subject.replace("\\", "\\\\").replace(",", "\\,").replace(";", "\\;")
    lines += ["SEQUENCE:0", "STATUS:CONFIRMED", f"SUMMARY:{summary}"]
    lines += ["BEGIN:VALARM", "ACTION:DISPLAY", "TRIGGER:-PT10M", "END:VALARM"]
    lines += ["END:VEVENT", "END:VCALENDAR"]
    return "".join(_fold_ical(line) for line in lines)


def _fold_ical(line: str) -> str:
    """RFC 5545 §3.1: lines of at most 75 octets, continued with a leading space."""
    data = line.encode()
    chunks: list[bytes] = []
    while len(data) > 75:
        cut = 75 if not chunks else 74
        while cut and (data[cut] & 0xC0) == 0x80:  # never split a UTF-8 sequence
            cut -= 1
        chunks.append(data[:cut])
        data = data[cut:]
    chunks.append(data)
    return "\r\n ".join(c.decode() for c in chunks) + "\r\n"
