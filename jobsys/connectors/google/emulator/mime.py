"""Deterministic, realistic synthetic mail.

Each mailbox is drawn from ``random.Random(f"{seed}:{email}")``, so the same
seed and anchor give byte-identical messages. Mail is dated backwards from the
``end`` moment (the emulator's anchor, by default the start of the current UTC
day), so rankings computed today see recent mail. The mix covers what a
normalizer must survive: header encodings and traits from
:mod:`.mail_headers` (RFC 2047 Q and B words split across folded lines in mixed
charsets, undeclared 8-bit headers, very long lines, mailing-list headers, two
From mailboxes, repeated Cc fields, no Date), bodies from :mod:`.mail_bodies`
(alternative, attachments, related with inline images, forwarded
``message/rfc822``, TNEF, calendar invitations, ``format=flowed``; seven
charsets, declared and mislabelled), and threads whose replies carry
In-Reply-To and References.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from jobsys.connectors.google.emulator import mail_bodies, mail_headers
from jobsys.connectors.google.emulator.facts import MessageFacts, Person

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
_LONG_TAIL = " — " + " ".join(f"item {i} of the long agenda" for i in range(1, 13))
_TRAITS = (("list", 0.07), ("two-from", 0.05), ("split-cc", 0.5), ("no-date", 0.04))


@dataclass(frozen=True)
class GeneratedMessage:
    """One generated message: bytes, Gmail labels, arrival time, facts and how it was made."""

    raw: bytes
    labels: tuple[str, ...]
    internal_date: datetime
    facts: MessageFacts
    style: str = "encoded"
    traits: frozenset[str] = frozenset()
    shape: str = "plain"
    charset: tuple[str, str, str | None] = ("utf-8", "utf-8", "utf-8")


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
    rng: random.Random, owner: Person, contacts: list[Person], count: int, end: datetime
) -> list[GeneratedMessage]:
    """Generate ``count`` messages for ``owner``, oldest first, the last one at ``end``.

    Parameters:
        rng: the mailbox's generator.
        owner: the mailbox owner (From on SENT messages, To on received ones).
        contacts: the people the owner corresponds with.
        count: how many messages.
        end: when the newest message was sent (aware).

    Returns:
        The messages in arrival order.
    """
    gaps = [
        timedelta(minutes=rng.randint(5, 360), seconds=rng.randint(0, 59)) for _ in range(count)
    ]
    when = end - sum(gaps[1:], timedelta())
    threads: list[list[GeneratedMessage]] = []
    out: list[GeneratedMessage] = []
    for n in range(count):
        if n:
            when += gaps[n]
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
    style = mail_headers.draw_style(rng)
    traits = frozenset(t for t, p in _TRAITS if rng.random() < p)
    if sent:
        traits -= {"list", "two-from"}
    other = rng.choice(contacts)
    senders: tuple[Person, ...] = (owner,) if sent else (other,)
    to: tuple[Person, ...] = (other,) if sent else (owner,)
    if "two-from" in traits:
        senders = (other, next(p for p in contacts if p != other))
    if "list" in traits:
        to = (mail_headers.LIST,)
    cc = tuple(p for p in rng.sample(contacts, 2) if p not in (other, *senders))
    cc = cc if rng.random() < 0.3 else ()
    facts = MessageFacts(
        subject=_subject(rng, thread, style),
        senders=senders,
        to=to,
        cc=cc,
        sent_at=when,
        message_id=f"<m{n}.{rng.getrandbits(48):012x}@{senders[0].email.split('@')[1]}>",
        in_reply_to="",
        references=(),
    )
    if thread:
        parent = thread[-1].facts
        references = (*parent.references, parent.message_id)
        facts = replace(facts, in_reply_to=references[-1], references=references)
    made = mail_bodies.body(rng, facts, owner, n)
    head = mail_headers.header_block(rng, facts, style, traits)
    # The MIME tree renders its own root fields (Content-Type...), the empty line, the body.
    raw = head + made.root.as_bytes(policy=mail_bodies.POLICY)
    labels = _labels(rng, sent)
    return GeneratedMessage(raw, labels, when, facts, style, traits, made.shape, made.charset)


def _subject(rng: random.Random, thread: list[GeneratedMessage] | None, style: str) -> str:
    if thread:
        parent = thread[-1].facts.subject
        return parent if parent.startswith("Re: ") else "Re: " + parent
    topic = rng.choice(_TOPICS)
    return topic + _LONG_TAIL if style == "long" else topic


def _labels(rng: random.Random, sent: bool) -> tuple[str, ...]:
    if sent:
        return ("SENT",) if rng.random() < 0.8 else ("IMPORTANT", "SENT")
    labels = {"INBOX"} if rng.random() < 0.85 else set()
    labels.add(rng.choice(("CATEGORY_PERSONAL", "CATEGORY_UPDATES", "CATEGORY_SOCIAL")))
    for label, p in (("UNREAD", 0.4), ("IMPORTANT", 0.2), ("STARRED", 0.1), ("Label_1", 0.15)):
        if rng.random() < p:
            labels.add(label)
    return tuple(sorted(labels))
