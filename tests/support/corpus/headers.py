"""Corpus messages about header fields: encoded words, 8-bit bytes, long fields, lists."""

from __future__ import annotations

from email.header import Header

from tests.support.corpus.case import Case, mail

DATE = "Date: Tue, 04 Feb 2025 09:30:00 +0100"
FROM = "From: Ann Example <ann@example.org>"
TO = "To: Owner <owner@example.com>"
BODY = "Hello.\r\n"


def _encoded(name: str, text: str, charset: str) -> str:
    return f"{name}: " + Header(text, charset, header_name=name).encode(linesep="\r\n")


def _word(text: str, charset: str) -> str:
    return Header(text, charset).encode()


ENCODED_WORDS = (
    Case(
        "q-subject-latin1",
        "encoded-words",
        mail(FROM, TO, DATE, "Subject: =?iso-8859-1?q?Caf=E9_cr=E8me?="),
    ),
    Case(
        "b-subject-utf8",
        "encoded-words",
        mail(FROM, TO, DATE, "Subject: =?utf-8?b?5Lya6K2w44Gu5Lu2?="),
    ),
    Case(
        "subject-split-over-folded-lines-in-two-charsets",
        "encoded-words",
        mail(FROM, TO, DATE, "Subject: =?iso-8859-1?q?D=E9jeuner_?=\r\n =?utf-8?b?5piO5pel?="),
    ),
    Case(
        "subject-text-folded-before-an-encoded-word",
        "encoded-words",
        mail(FROM, TO, DATE, "Subject: Re: hello\r\n =?UTF-8?Q?w=C3=B6rld?="),
    ),
    Case(
        "long-cjk-subject-in-many-b-words",
        "encoded-words",
        mail(FROM, TO, DATE, _encoded("Subject", "見積もりのお願い、" * 8 + "以上です。", "utf-8")),
    ),
    Case(
        "display-names-q-b-iso-2022-jp-windows-1252",
        "encoded-words",
        mail(
            "From: =?utf-8?q?Jos=C3=A9_=C3=81lvarez?= <jose@example.org>",
            f"To: {_word('山田 太郎', 'iso-2022-jp')} <yamada@example.jp>,\r\n"
            " =?windows-1252?q?=93Quoted=94_Name?= <q@example.net>",
            DATE,
            "Subject: names",
        ),
    ),
    Case(
        "display-name-split-in-two-charsets",
        "encoded-words",
        mail(
            "From: =?iso-8859-1?q?Fran=E7ois_?= =?utf-8?b?5bGx55Sw?= <f@example.org>",
            TO,
            DATE,
            "Subject: mixed name",
        ),
    ),
    Case(
        "display-name-in-adjacent-encoded-words",
        "encoded-words",
        mail(
            "From: =?utf-8?q?Zo=C3=AB_M=C3=BC?=\r\n =?utf-8?q?ller?= <zoe@example.de>",
            TO,
            DATE,
            "Subject: =?utf-8?q?adjacent_wo?=\r\n =?utf-8?q?rds?=",
        ),
        better={"senders": (("zoe@example.de", "Zoë Müller"),)},
        why="RFC 2047 §6.2: whitespace between adjacent encoded words is not text; the "
        "standard parser keeps it in address fields (not in Subject)",
    ),
    Case(
        "encoded-comma-in-display-name",
        "encoded-words",
        mail(
            FROM,
            "To: =?utf-8?q?Doe=2C_John?= <j@example.com>, ann@example.org",
            DATE,
            "Subject: comma",
        ),
    ),
    Case(
        "gb2312-and-ks_c_5601-words",
        "encoded-words",
        mail(
            f"From: {_word('김민준', 'ks_c_5601-1987')} <kim@example.kr>",
            TO,
            DATE,
            _encoded("Subject", "关于会议的通知", "gb2312"),
        ),
    ),
    Case(
        "encoded-word-in-an-unknown-charset",
        "encoded-words",
        mail(FROM, TO, DATE, "Subject: =?x-unknown?q?caf=E9_au_lait?="),
        better={"subject": "café au lait"},
        why="an unknown charset: jobsys decodes by its chain (here Windows-1252), not U+FFFD",
    ),
    Case(
        "encoded-word-with-bytes-invalid-in-its-charset",
        "encoded-words",
        mail("From: =?utf-8?q?Ren=E9e?= <renee@example.fr>", TO, DATE, "Subject: renee"),
        better={"senders": (("renee@example.fr", "Renée"),)},
        why="Latin-1 bytes in a UTF-8 word: jobsys falls back to Windows-1252, not U+FFFD",
    ),
)

EIGHT_BIT = (
    Case(
        "undeclared-utf8-subject-and-names",
        "8bit-headers",
        mail(
            "From: Zoë Müller <zoe@example.de>",
            "To: 山田 太郎 <yamada@example.jp>, Søren <soren@example.dk>",
            DATE,
            "Subject: naïve café — 会議",
        ),
    ),
    Case(
        "undeclared-windows-1252-subject-and-name",
        "8bit-headers",
        mail(
            "From: Zoë Müller <zoe@example.de>".encode("cp1252"),
            TO,
            DATE,
            "Subject: “naïve” café — 12 €".encode("cp1252"),
        ),
        better={
            "subject": "“naïve” café — 12 €",
            "senders": (("zoe@example.de", "Zoë Müller"),),
        },
        why="undeclared 8-bit bytes that are not UTF-8 are read as Windows-1252",
    ),
    Case(
        "undeclared-latin1-cc-names",
        "8bit-headers",
        mail(
            FROM,
            TO,
            "Cc: François Dupont <fd@example.fr>, José <jose@example.es>".encode("latin-1"),
            DATE,
            "Subject: latin-1 names",
        ),
        better={"cc": (("fd@example.fr", "François Dupont"), ("jose@example.es", "José"))},
        why="Latin-1 letters are the same bytes in Windows-1252",
    ),
    Case(
        "undeclared-utf8-mixed-with-encoded-words",
        "8bit-headers",
        mail(FROM, TO, DATE, "Subject: Ré: =?utf-8?q?caf=C3=A9?= à 10h"),
    ),
)

_MANY = ",\r\n ".join(f"Person {i} <p{i}@example.org>" for i in range(120))
_REFERENCES = " ".join(f"<ref{i}.{'x' * 30}@example.org>" for i in range(120))
LONG = (
    Case(
        "to-with-120-recipients-folded",
        "long-headers",
        mail(FROM, f"To: {_MANY}", DATE, "Subject: all hands"),
    ),
    Case(
        "references-of-5000-characters-on-one-line",
        "long-headers",
        mail(FROM, TO, DATE, "Subject: Re: thread", f"References: {_REFERENCES}"),
    ),
    Case(
        "subject-of-600-characters-folded",
        "long-headers",
        mail(
            FROM,
            TO,
            DATE,
            "Subject: "
            + "\r\n ".join(" ".join(f"word{i}x{j}" for j in range(8)) for i in range(10)),
        ),
    ),
    Case(
        "subject-of-1200-characters-unfolded",
        "long-headers",
        mail(FROM, TO, DATE, "Subject: " + "unbroken" * 150),
    ),
    Case(
        "x-header-of-10000-characters",
        "long-headers",
        mail(FROM, TO, DATE, "Subject: big trace", "X-Trace: " + "ab" * 5000),
    ),
)

LISTS = (
    Case(
        "mailing-list-post",
        "mailing-list",
        mail(
            "From: Ann Example <ann@example.org>",
            "Sender: team-bounces@lists.example.org",
            "To: Team list <team@lists.example.org>",
            "Reply-To: Team list <team@lists.example.org>",
            "List-Id: Team list <team.lists.example.org>",
            "List-Unsubscribe: <mailto:team-leave@lists.example.org>,\r\n"
            " <https://lists.example.org/unsubscribe/team>",
            "List-Post: <mailto:team@lists.example.org>",
            "Precedence: list",
            DATE,
            "Subject: [team] Weekly notes",
        ),
    ),
    Case(
        "mailing-list-rewritten-from",
        "mailing-list",
        mail(
            '"Ann Example via Team" <team@lists.example.org>'.join(("From: ", "")),
            "Reply-To: Ann Example <ann@example.org>",
            "To: team@lists.example.org",
            "Cc: Owner <owner@example.com>",
            "List-Id: <team.lists.example.org>",
            "X-Original-From: Ann Example <ann@example.org>",
            DATE,
            "Subject: Re: [team] Weekly notes",
        ),
    ),
)

CASES = (*ENCODED_WORDS, *EIGHT_BIT, *LONG, *LISTS)
