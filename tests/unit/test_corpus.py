"""The corpus (tests/support/corpus): every message lands as the standard parser reads it.

"As the standard parser reads it" is ``email.policy.default``'s reading, with the
deliberate improvements each case states in ``better`` (see the corpus package).
The same corpus is synced end to end in tests/integration/test_pipeline_corpus.py.
"""

from __future__ import annotations

import email.policy
from collections import Counter
from email.message import EmailMessage, Message
from email.parser import BytesParser

import pytest

from jobsys.connectors.google.emulator.facts import describe_raw
from jobsys.connectors.phases import body, headers
from jobsys.connectors.phases.normalize import NormalizedMessage, normalize_message
from tests.support.corpus import ARRIVED, CASES, Case, Reading, standard_reading

CATEGORIES = {
    "encoded-words",
    "charsets",
    "8bit-headers",
    "format-flowed",
    "message-rfc822",
    "multipart-related",
    "tnef",
    "calendar",
    "long-headers",
    "mailing-list",
    "email-generator",
    *(f"item-{n}-" for n in range(1, 10)),
}


def reading(message: NormalizedMessage) -> Reading:
    """The compared fields of a normalized message."""
    return Reading(
        subject=message.subject,
        senders=tuple((a.addr, a.name) for a in message.senders),
        to=tuple((a.addr, a.name) for a in message.to),
        cc=tuple((a.addr, a.name) for a in message.cc),
        sent_at=message.sent_at,
    )


def _normalized(case: Case) -> NormalizedMessage:
    result = normalize_message("g1", "t1", case.raw, ["INBOX"], ARRIVED)
    assert isinstance(result, NormalizedMessage), result
    return result


def test_the_corpus_has_sixty_messages_and_every_category() -> None:
    # Given the corpus / Then it is large enough, names are unique, every category is in it
    assert len(CASES) >= 60
    assert len({c.name for c in CASES}) == len(CASES)
    present = Counter(c.category for c in CASES)
    for category in CATEGORIES:
        assert any(p.startswith(category) for p in present), category
    # And every deliberate improvement says why
    assert all(c.why for c in CASES if c.better)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_every_message_lands_with_the_standard_reading(case: Case) -> None:
    # Given a corpus message and how the standard parser reads it
    standard = standard_reading(case.raw, ARRIVED)

    # When it is normalized
    message = _normalized(case)

    # Then subject, From, To, Cc and sent_at are that reading, improved where the case says
    assert reading(message) == case.expected(ARRIVED)
    for field, value in case.better.items():
        assert getattr(standard, field) != value, f"{field} needs no override"
    # And its body and invitations are found
    if case.body is not None:
        assert case.body in message.text_body
    assert len(message.invites) == case.invites


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_the_body_is_the_part_get_body_picks(case: Case) -> None:
    # Given the message parsed by jobsys and by the standard parser
    ours = headers.parse(case.raw, [])
    theirs = BytesParser(policy=email.policy.default).parsebytes(case.raw)
    assert isinstance(theirs, EmailMessage)

    # When each picks the body part
    found = body.find_body(ours)
    expected = theirs.get_body(preferencelist=("plain", "html"))

    # Then both pick the part at the same place in the tree (jobsys's header repair
    # aside, which gives the standard parser a different tree)
    if case.category != "item-9-header-block":
        assert _path(ours, found) == _path(theirs, expected)


def _path(root: Message, part: Message | None) -> tuple[int, ...] | None:
    if part is None:
        return None
    stack: list[tuple[Message, tuple[int, ...]]] = [(root, ())]
    while stack:
        node, path = stack.pop()
        if node is part:
            return path
        payload = node.get_payload() if node.is_multipart() else []
        for index, child in enumerate(payload if isinstance(payload, list) else []):
            stack.append((child, (*path, index)))
    raise AssertionError("part not in tree")


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_the_emulators_truth_is_the_standard_reading(case: Case) -> None:
    # When the emulator describes a corpus message delivered to it
    facts = describe_raw(case.raw, ARRIVED)

    # Then its truth is the standard reading (issue 13 item 5), improvements not included
    people = [tuple((p.email, p.name) for p in ps) for ps in (facts.senders, facts.to, facts.cc)]
    truth = Reading(facts.subject, people[0], people[1], people[2], facts.sent_at)
    assert truth == standard_reading(case.raw, ARRIVED)


def test_normalizing_the_corpus_again_changes_nothing() -> None:
    # When every corpus message is normalized twice / Then the results are equal
    first = [normalize_message(c.name, "t", c.raw, ["INBOX"], ARRIVED) for c in CASES]
    again = [normalize_message(c.name, "t", c.raw, ["INBOX"], ARRIVED) for c in CASES]
    assert first == again
