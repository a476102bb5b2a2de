"""Corpus messages for the defects of issue 13, items 1-9: what real mailers get wrong."""

from __future__ import annotations

from datetime import UTC, datetime

from tests.support.corpus.case import Case, mail

DATE = "Date: Tue, 04 Feb 2025 09:30:00 +0100"
FROM = "From: Ann Example <ann@example.org>"
TO = "To: Owner <owner@example.com>"
OWNER = (("owner@example.com", "Owner"),)
SENT = datetime(2025, 2, 4, 8, 30, tzinfo=UTC)  # DATE in UTC

IDENTITY_GATE = (  # item 1: a header block without From/To/Subject/Date is still a message
    Case(
        "mime-headers-only",
        "item-1-identity-gate",
        mail(
            "MIME-Version: 1.0",
            "Content-Type: text/plain; charset=utf-8",
            body="A body worth keeping.\r\n",
        ),
        body="A body worth keeping.",
    ),
    Case(
        "custom-headers-only",
        "item-1-identity-gate",
        mail("X-Mailer: batch-tool 1.2", "Content-Type: text/html", body="<p>Report ready.</p>"),
        body="Report ready.",
    ),
)

BODIES = (  # item 2: bodies the parser kept, and name= parts that are not attachments
    Case(
        "multipart-without-boundary-parameter",
        "item-2-bodies",
        mail(FROM, TO, DATE, "Subject: no boundary", "Content-Type: multipart/mixed",
             body="--XYZ\r\nContent-Type: text/plain\r\n\r\nFirst part text.\r\n--XYZ--\r\n"),
        body="First part text.",
    ),
    Case(
        "multipart-whose-boundary-never-occurs",
        "item-2-bodies",
        mail(FROM, TO, DATE, "Subject: wrong boundary",
             'Content-Type: multipart/alternative; boundary="declared"',
             body="Just text, no parts at all.\r\n"),
        body="Just text, no parts at all.",
    ),
    Case(
        "text-part-with-a-name-parameter",
        "item-2-bodies",
        mail(FROM, TO, DATE, "Subject: named", 'Content-Type: text/plain; name="msg.txt"',
             body="Named but inline text.\r\n"),
        body="Named but inline text.",
    ),
)  # fmt: skip

DATES = (  # item 3: without a usable Date, Gmail's internalDate is sent_at
    Case("no-date-header", "item-3-internal-date", mail(FROM, TO, "Subject: undated")),
    Case("unparseable-date", "item-3-internal-date",
         mail(FROM, TO, "Date: yesterday-ish", "Subject: bad date")),
)  # fmt: skip

WITHOUT_AT = (  # item 4: mailboxes without "@" are kept as read
    Case("to-without-at", "item-4-no-at", mail("From: foo", "To: XX", DATE, "Subject: local")),
    Case(
        "cc-mixing-valid-and-local",
        "item-4-no-at",
        mail(FROM, TO, "Cc: Dave <dave@example.org>, not-an-address, postmaster", DATE,
             "Subject: mixed cc"),
    ),
)  # fmt: skip

REPEATED = (  # item 5: several To and Cc fields
    Case(
        "repeated-to-and-cc",
        "item-5-repeated",
        mail(FROM, TO, "To: second@example.org", "Cc: c1@example.org", "Cc: C2 <c2@example.org>",
             "Cc: c3@example.org", DATE, "Subject: three cc fields"),
    ),
)  # fmt: skip

FOLDED = (  # item 6: unfold before decoding
    Case(
        "folded-quoted-display-name",
        "item-6-folding",
        mail(FROM, 'To: "Doe,\r\n John" <j@d.com>, "Roe,\r\n\tJane" <jr@d.com>', DATE,
             "Subject: folded names"),
    ),
    Case(
        "folded-subject-and-name-with-encoded-words",
        "item-6-folding",
        mail("From: Ann\r\n =?utf-8?q?M=C3=BCller?= <ann@example.org>", TO, DATE,
             "Subject: Re: hello\r\n =?UTF-8?Q?w=C3=B6rld?=\r\n again"),
    ),
)  # fmt: skip

SALVAGE = (  # item 7: malformed mailboxes; never an address made of a display name
    Case(
        "mailbox-without-angle-brackets",
        "item-7-salvage",
        mail("From: Big Bug bb@bug.com", TO, DATE, "Subject: big bug"),
        better={"senders": (("bb@bug.com", "Big Bug"),)},
        why="the addr-spec is recognisable; the standard parser quotes the whole phrase",
    ),
    Case(
        "two-mailboxes-without-a-comma",
        "item-7-salvage",
        mail(FROM, "To: Foo <foo@x.com> Bar <bar@y.com>", DATE, "Subject: no comma"),
        better={"to": (("foo@x.com", "Foo"), ("bar@y.com", "Bar"))},
        why="the standard parser keeps the first mailbox only",
    ),
    Case(
        "two-bare-addresses-without-a-comma",
        "item-7-salvage",
        mail(FROM, "To: foo@x.com bar@y.com", "Cc: Owner <owner@example.com>", DATE,
             "Subject: bare"),
        better={"to": (("foo@x.com", ""), ("bar@y.com", ""))},
        why="the standard parser keeps the first address only",
    ),
    Case(
        "display-name-with-an-at-sign",
        "item-7-salvage",
        mail("From: Mikel@Lindsaar <raasdnil@gmail.com>", TO, DATE, "Subject: at in name"),
        better={"senders": (("raasdnil@gmail.com", "Mikel@Lindsaar"),)},
        why="the standard parser takes the display name for the address",
    ),
    Case(
        "comments-in-mailboxes",
        "item-7-salvage",
        mail("From: Pete(A wonderful \\) chap) <pete(his account)@silly.test(his host)>",
             "To: Pete (A wonderful ) chap <pete@silly.test>", DATE, "Subject: comments"),
    ),
    Case(
        "unclosed-quote-in-display-name",
        "item-7-salvage",
        mail(FROM, 'To: "Unclosed <u@example.org>', DATE, "Subject: quote"),
        better={"to": (("u@example.org", "Unclosed"),)},
        why="the standard parser reads the rest of the field as a quoted local part",
    ),
)  # fmt: skip

SENDERS = (  # item 8: every From mailbox
    Case(
        "two-from-mailboxes-and-a-sender",
        "item-8-senders",
        mail("From: Ann <ann@example.org>, Bob <bob@example.org>", "Sender: Ann <ann@example.org>",
             TO, DATE, "Subject: co-authored"),
    ),
)  # fmt: skip

HEADER_BLOCK = (  # item 9: one bad line no longer ends the header block
    Case(
        "junk-line-inside-the-headers",
        "item-9-header-block",
        mail(FROM, "quite Delivered-To: owner@example.com", TO, DATE, "Subject: after junk"),
        better={"to": OWNER, "subject": "after junk", "sent_at": SENT},
        why="the standard parser ends the header block at the junk line",
    ),
    Case(
        "obsolete-space-before-colon",
        "item-9-header-block",
        mail("From    : Ann Example <ann@example.org>", "To    : Owner <owner@example.com>",
             "Subject : old syntax", DATE),
        better={
            "senders": (("ann@example.org", "Ann Example"),),
            "to": OWNER,
            "subject": "old syntax",
            "sent_at": SENT,
        },
        why="RFC 5322 obs-optional fields; the standard parser finds no header at all",
    ),
)  # fmt: skip

CASES = (
    *IDENTITY_GATE,
    *BODIES,
    *DATES,
    *WITHOUT_AT,
    *REPEATED,
    *FOLDED,
    *SALVAGE,
    *SENDERS,
    *HEADER_BLOCK,
)
