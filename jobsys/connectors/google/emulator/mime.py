"""Deterministic, realistic synthetic mail.

Each mailbox is drawn from ``random.Random(f"{seed}:{email}")``, so the same
seed gives byte-identical messages. The mix covers what a normalizer must
survive: multipart/alternative, attachments (some with RFC 2231 names),
RFC 2047 subjects and display names, bodies in iso-8859-1, windows-1252 and
shift_jis, and threads whose replies carry In-Reply-To and References.
"""

from __future__ import annotations

import base64
import quopri
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from email.header import Header
from email.message import Message
from email.mime.application import MIMEApplication
from email.mime.multipart import MIMEMultipart
from email.mime.nonmultipart import MIMENonMultipart
from email.policy import compat32
from email.utils import format_datetime, formataddr

from jobsys.connectors.google.emulator.facts import MessageFacts, Person

MAIL_EPOCH = datetime(2025, 1, 6, 8, 0, tzinfo=UTC)
_POLICY = compat32.clone(linesep="\r\n")
_NAMES = (
    "Ada Lovelace",
    "José Álvarez",
    "Zoë Müller",
    "Søren Kierkegaard",
    "山田 太郎",
    "Grace Hopper",
    "François Dupont",
    "Łukasz Nowak",
    "Alan Turing",
    "佐藤 花子",
    "Chloé O'Brien",
    "Ngozi Okafor",
)
_DOMAINS = ("example.org", "example.net", "corp.example", "mail.example.jp")
_TOPICS = (
    "Quarterly report",
    "Déjeuner mardi",
    "会議の件",
    "Über den Vertrag",
    "Offsite — agenda",
    "Invoice 2025-014",
    "Café next week?",
    "見積もりのお願い",
    "Budget review",
    "Hiring plan",
)
_BODIES = {
    "utf-8": "Hi {name},\n\nA quick note about {topic}. Café at 10? — thanks ✓\n",
    "iso-8859-1": "Olá {name},\n\nSobre {topic}: a reunião é às 15h. Até já!\n",
    "windows-1252": "Hello {name},\n\n“{topic}” costs 12 € — see you…\n",
    "shift_jis": "{name}様\n\n{topic}の件、よろしくお願いします。\n",
}
_OFFSETS_MIN = (-300, 0, 60, 330, 540)


@dataclass(frozen=True)
class GeneratedMessage:
    """One generated message: its bytes, Gmail labels, arrival time and facts."""

    raw: bytes
    labels: tuple[str, ...]
    internal_date: datetime
    facts: MessageFacts


def make_contacts(rng: random.Random, count: int = 8) -> list[Person]:
    """Draw ``count`` distinct correspondents.

    Parameters:
        rng: the mailbox's generator.
        count: how many contacts.

    Returns:
        The contacts.
    """
    names = rng.sample(_NAMES, min(count, len(_NAMES)))
    people = []
    for i, name in enumerate(names):
        local = "".join(c for c in name.lower() if c.isascii() and c.isalpha()) or f"contact{i}"
        people.append(Person(name, f"{local}{i}@{rng.choice(_DOMAINS)}"))
    return people


def generate_mailbox(
    rng: random.Random, owner: Person, contacts: list[Person], count: int
) -> list[GeneratedMessage]:
    """Generate ``count`` messages for ``owner``, oldest first.

    Parameters:
        rng: the mailbox's generator.
        owner: the mailbox owner (From on SENT messages, To on received ones).
        contacts: the people the owner corresponds with.
        count: how many messages.

    Returns:
        The messages in arrival order.
    """
    threads: list[list[GeneratedMessage]] = []
    when = MAIL_EPOCH
    out: list[GeneratedMessage] = []
    for n in range(count):
        when += timedelta(minutes=rng.randint(5, 360), seconds=rng.randint(0, 59))
        thread = rng.choice(threads) if threads and rng.random() < 0.35 else None
        msg = _message(rng, n, owner, contacts, when, thread)
        if thread is None:
            threads.append([msg])
        else:
            thread.append(msg)
        out.append(msg)
    return out


def _message(
    rng: random.Random,
    n: int,
    owner: Person,
    contacts: list[Person],
    when: datetime,
    thread: list[GeneratedMessage] | None,
) -> GeneratedMessage:
    sent = rng.random() < 0.3
    other = rng.choice(contacts)
    sender, to = (owner, (other,)) if sent else (other, (owner,))
    cc = tuple(p for p in rng.sample(contacts, 2) if p != other) if rng.random() < 0.3 else ()
    if thread:
        parent = thread[-1].facts
        subject = parent.subject if parent.subject.startswith("Re: ") else "Re: " + parent.subject
        references = (*parent.references, parent.message_id)
    else:
        subject, references = rng.choice(_TOPICS), ()
    facts = MessageFacts(
        subject=subject,
        sender=sender,
        to=to,
        cc=cc,
        sent_at=when,
        message_id=f"<m{n}.{rng.getrandbits(48):012x}@{sender.email.split('@')[1]}>",
        in_reply_to=references[-1] if references else "",
        references=references,
    )
    raw = _render(rng, facts, n)
    return GeneratedMessage(raw, _labels(rng, sent), when, facts)


def _labels(rng: random.Random, sent: bool) -> tuple[str, ...]:
    if sent:
        return ("SENT",) if rng.random() < 0.8 else ("IMPORTANT", "SENT")
    labels = {"INBOX"} if rng.random() < 0.85 else set()
    labels.add(rng.choice(("CATEGORY_PERSONAL", "CATEGORY_UPDATES", "CATEGORY_SOCIAL")))
    for label, p in (("UNREAD", 0.4), ("IMPORTANT", 0.2), ("STARRED", 0.1), ("Label_1", 0.15)):
        if rng.random() < p:
            labels.add(label)
    return tuple(sorted(labels))


def _render(rng: random.Random, facts: MessageFacts, n: int) -> bytes:
    charset = rng.choice(tuple(_BODIES))
    name = facts.to[0].name.split()[0] if facts.to else "there"
    text = _encodable(_BODIES[charset].format(name=name, topic=facts.subject), charset)
    kind = rng.random()
    root: Message
    if kind < 0.3:
        root = _text_part(text, "plain", charset)
    else:
        root = _alternative(rng, text, charset)
        if kind > 0.75:
            root = _with_attachment(rng, root, n)
    _headers(root, facts, rng)
    return root.as_bytes(policy=_POLICY)


def _encodable(text: str, charset: str) -> str:
    try:
        text.encode(charset)
    except UnicodeEncodeError:
        return text.encode(charset, "replace").decode(charset)
    return text


def _text_part(text: str, subtype: str, charset: str) -> MIMENonMultipart:
    part = MIMENonMultipart("text", subtype, charset=charset)
    del part["MIME-Version"]
    data = text.replace("\n", "\r\n").encode(charset)
    # Latin charsets go quoted-printable and shift_jis base64, as real clients send them.
    if charset == "shift_jis":
        part["Content-Transfer-Encoding"] = "base64"
        part.set_payload(base64.encodebytes(data).decode("ascii"))
    else:
        part["Content-Transfer-Encoding"] = "quoted-printable"
        part.set_payload(quopri.encodestring(data).decode("ascii"))
    return part


def _alternative(rng: random.Random, text: str, charset: str) -> MIMEMultipart:
    html = "<html><body>" + "".join(f"<p>{line}</p>" for line in text.splitlines() if line)
    alt = MIMEMultipart("alternative", boundary=f"=_alt_{rng.getrandbits(64):016x}")
    del alt["MIME-Version"]
    alt.attach(_text_part(text, "plain", charset))
    alt.attach(_text_part(html + "</body></html>\n", "html", charset))
    return alt


def _with_attachment(rng: random.Random, body: Message, n: int) -> MIMEMultipart:
    mixed = MIMEMultipart("mixed", boundary=f"=_mix_{rng.getrandbits(64):016x}")
    del mixed["MIME-Version"]
    mixed.attach(body)
    data = rng.randbytes(rng.randint(200, 2000))
    part = MIMEApplication(data, "pdf")
    del part["MIME-Version"]
    if rng.random() < 0.5:
        part.add_header("Content-Disposition", "attachment", filename=f"report-{n}.pdf")
    else:
        # RFC 2231 encoded file name, which many parsers get wrong.
        part.add_header(
            "Content-Disposition", "attachment", filename=("utf-8", "", f"résumé-{n}.pdf")
        )
    mixed.attach(part)
    return mixed


def _headers(msg: Message, facts: MessageFacts, rng: random.Random) -> None:
    if facts.sender is None or facts.sent_at is None:
        raise ValueError("generated messages need a sender and a date")
    offset = timezone(timedelta(minutes=rng.choice(_OFFSETS_MIN)))
    msg["Date"] = format_datetime(facts.sent_at.astimezone(offset))
    msg["From"] = _address(facts.sender)
    msg["To"] = ", ".join(_address(p) for p in facts.to)
    if facts.cc:
        msg["Cc"] = ", ".join(_address(p) for p in facts.cc)
    msg["Subject"] = _encoded_subject(facts.subject)
    msg["Message-ID"] = facts.message_id
    if facts.in_reply_to:
        msg["In-Reply-To"] = facts.in_reply_to
        msg["References"] = " ".join(facts.references)
    msg["MIME-Version"] = "1.0"


def _encoded_subject(subject: str) -> str:
    if subject.isascii():
        return subject
    # Latin-1 encoded words (Q) where they fit, UTF-8 (B) otherwise: both occur in the wild.
    try:
        subject.encode("iso-8859-1")
    except UnicodeEncodeError:
        return Header(subject, "utf-8").encode()
    return Header(subject, "iso-8859-1").encode()


def _address(person: Person) -> str:
    return formataddr((person.name, person.email), charset="utf-8")
