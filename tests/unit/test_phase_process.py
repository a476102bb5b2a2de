"""rank and digest: exact scores on hand-made inputs, determinism under any input order."""

from __future__ import annotations

import itertools
import json
import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jobsys.connectors.google.emulator.settings import EmulatorConfig
from jobsys.connectors.google.emulator.world import World
from jobsys.connectors.phases.extract import Interaction, extract
from jobsys.connectors.phases.normalize import (
    Address,
    Attendee,
    NormalizedEvent,
    NormalizedMessage,
    normalize_event,
    normalize_message,
)
from jobsys.connectors.phases.process import ContactScore, digest, rank
from tests.unit.test_phase_extract import ME, attendee, event, message

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def test_scores_follow_the_documented_formula() -> None:
    # Given interactions at ages that are whole half-lives (exact binary fractions)
    interactions = [
        Interaction("bob@x.org", "message", "outbound", NOW, "m1"),
        Interaction("bob@x.org", "message", "inbound", NOW - 30 * DAY, "m2"),
        Interaction("carol@x.org", "meeting", "mutual", NOW - 60 * DAY, "e1"),
        Interaction("dan@x.org", "message", "inbound", NOW, "m3"),
        Interaction("fay@x.org", "message", "outbound", NOW - 30 * DAY, "m4"),
        Interaction("erin@x.org", "meeting", "mutual", NOW + DAY, "e2"),
    ]

    # When ranked with the default 30-day half-life
    scores = rank(interactions, NOW)

    # Then bob = (1.0 + 0.5 * 1/2) * 1.5 (reciprocal); the 0.5 ties go by address;
    # a future meeting scores nothing and counts nothing
    assert scores == (
        ContactScore("bob@x.org", 1.875, 1, 1, 1, 0, NOW),
        ContactScore("carol@x.org", 0.5, 2, 0, 0, 1, NOW - 60 * DAY),
        ContactScore("dan@x.org", 0.5, 3, 0, 1, 0, NOW),
        ContactScore("fay@x.org", 0.5, 4, 1, 0, 0, NOW - 30 * DAY),
        ContactScore("erin@x.org", 0.0, 5, 0, 0, 0, None),
    )


def test_meeting_counts_as_reciprocal_for_an_outbound_contact() -> None:
    # Given a contact the user wrote to and met
    interactions = [
        Interaction("a@x.org", "message", "outbound", NOW, "m1"),
        Interaction("a@x.org", "meeting", "mutual", NOW, "e1"),
    ]

    # When / Then: (1.0 + 2.0) * 1.5
    assert rank(interactions, NOW)[0].score == 4.5


def test_half_life_parameter() -> None:
    # Given one outbound message ten days older than the user's latest activity
    interactions = [
        Interaction("a@x.org", "message", "outbound", NOW - 10 * DAY, "m1"),
        Interaction("b@x.org", "message", "outbound", NOW, "m2"),
    ]

    # When / Then: with a 10-day half-life it is worth one half
    assert rank(interactions, NOW, half_life_days=10)[0].score == 1.0
    assert rank(interactions, NOW, half_life_days=10)[1].score == 0.5


def test_duplicates_count_once() -> None:
    # Given the same interaction three times
    once = Interaction("a@x.org", "message", "inbound", NOW, "m1")

    # When / Then
    assert rank([once, once, once], NOW) == rank([once], NOW)


@pytest.mark.parametrize(
    ("now", "half_life", "match"),
    [
        (datetime(2024, 6, 1), 30.0, "now must be timezone-aware"),
        (NOW, 0.0, "half_life_days"),
        (NOW, float("nan"), "half_life_days"),
    ],
)
def test_invalid_arguments(now: datetime, half_life: float, match: str) -> None:
    # When / Then
    with pytest.raises(ValueError, match=match):
        rank([], now, half_life_days=half_life)


_interactions = st.builds(
    Interaction,
    addr=st.sampled_from([f"p{i}@x.org" for i in range(8)]),
    kind=st.sampled_from(["message", "meeting"]),
    direction=st.sampled_from(["outbound", "inbound", "mutual"]),
    at=st.integers(-400, 10).map(lambda days: NOW + days * DAY),
    source_id=st.sampled_from([f"s{i}" for i in range(12)]),
)


@settings(max_examples=200, deadline=None)
@given(items=st.lists(_interactions, max_size=60), seed=st.randoms(use_true_random=False))
def test_rank_is_deterministic_and_ranks_are_a_permutation(
    items: list[Interaction], seed: random.Random
) -> None:
    # Given the same interactions in another order
    shuffled = list(items)
    seed.shuffle(shuffled)

    # When both are ranked
    first = rank(items, NOW)
    second = rank(shuffled, NOW)

    # Then the results are identical, ranks are 1..n and scores never increase
    assert first == second
    assert sorted(s.rank for s in first) == list(range(1, len(first) + 1))
    assert {s.addr for s in first} == {i.addr for i in items}
    assert all(a.score >= b.score for a, b in itertools.pairwise(first))


def _meeting(event_id: str, at: datetime, *others: str) -> NormalizedEvent:
    people: tuple[Attendee, ...] = (attendee(ME, self=True), *(attendee(o) for o in others))
    return event(event_id, people, at=at)


def test_digest_counts_top_contacts_and_upcoming_meetings() -> None:
    # Given a week of mail and meetings around NOW
    bob, carol = Address("bob@x.org", "Bob"), Address("carol@x.org", "")
    me = Address(ME, "")
    messages = [
        message("m1", me, to=(bob, carol), at=NOW - DAY, labels=("SENT",)),
        message("m2", bob, to=(me,), at=NOW - 2 * DAY),
        message("m3", bob, to=(me,), at=NOW - 10 * DAY),  # outside the window
        message("m4", carol, to=(me,), at=NOW - DAY, labels=("SPAM",)),  # not counted
        message("m2", bob, to=(me,), at=NOW - 2 * DAY),  # duplicate
    ]
    events = [
        _meeting("past", NOW - 3 * DAY, "bob@x.org"),
        _meeting("soon", NOW + DAY, "carol@x.org", "bob@x.org"),
        _meeting("later", NOW + 8 * DAY, "bob@x.org"),  # outside the window
    ]
    scores = [
        ContactScore("carol@x.org", 0.25, 2, 1, 0, 0, NOW - DAY),
        ContactScore("bob@x.org", 2.123456, 1, 1, 1, 1, NOW - DAY),
    ]

    # When the digest is built
    result = digest(ME, scores, messages, events, NOW)

    # Then it holds exactly these figures and survives a JSON round trip
    assert result == {
        "user": ME,
        "generated_at": "2024-06-01T12:00:00+00:00",
        "window_days": 7,
        "messages": {"sent": 1, "received": 1},
        "meetings": {"held": 1, "upcoming": 1},
        "top_contacts": [
            {
                "rank": 1,
                "addr": "bob@x.org",
                "score": 2.1235,
                "last_at": "2024-05-31T12:00:00+00:00",
            },
            {
                "rank": 2,
                "addr": "carol@x.org",
                "score": 0.25,
                "last_at": "2024-05-31T12:00:00+00:00",
            },
        ],
        "busiest_correspondents": [
            {"addr": "bob@x.org", "messages": 2, "sent": 1, "received": 1},
            {"addr": "carol@x.org", "messages": 1, "sent": 1, "received": 0},
        ],
        "upcoming_meetings": [
            {
                "event_id": "soon",
                "summary": "meet",
                "start_at": "2024-06-02T12:00:00+00:00",
                "end_at": "2024-06-02T12:00:00+00:00",
                "all_day": False,
                "attendees": ["carol@x.org", "bob@x.org"],
            }
        ],
    }
    assert json.loads(json.dumps(result)) == result


def test_digest_of_nothing() -> None:
    # When / Then
    assert digest(ME, [], [], [], NOW)["top_contacts"] == []


# -- issue 13 item 11: rankings that make sense ----------------------------------


def test_scores_are_measured_from_the_latest_activity() -> None:
    # Given a mailbox whose latest activity is 400 days before now
    last = NOW - 400 * DAY
    interactions = [
        Interaction("a@x.org", "message", "outbound", last, "m1"),
        Interaction("b@x.org", "message", "inbound", last - 30 * DAY, "m2"),
    ]

    # When / Then: one message the user sent at that moment is worth one point
    scores = rank(interactions, NOW)
    assert [(s.addr, s.score) for s in scores] == [("a@x.org", 1.0), ("b@x.org", 0.25)]


def test_an_active_long_term_contact_outranks_a_one_off_sender() -> None:
    # Given a generated mailbox and calendar dated as the emulator dates them by default,
    # and one message from a new sender arriving now
    world = World(EmulatorConfig(users=1, seed=7, messages_per_user=150, events_per_user=30))
    state = world.user(world.users()[0].email)
    messages = [
        normalize_message(m.id, m.thread_id, m.raw, m.labels)
        for m in state.mailbox.messages.values()
    ]
    now = datetime.now(UTC)
    one_off = (
        "From: New Colleague <new@partner.example>\r\nTo: user1@example.com\r\n"
        f"Date: {format_datetime(now)}\r\n\r\nhi"
    )
    messages.append(normalize_message("new", "new", one_off.encode(), ["INBOX"]))
    events = [normalize_event(e) for e in state.calendar.events.values()]

    # When the user's contacts are ranked now
    found = extract(
        state.email,
        [m for m in messages if isinstance(m, NormalizedMessage)],
        [e for e in events if isinstance(e, NormalizedEvent)],
    )
    scores = {s.addr: s for s in rank(found.interactions, now)}

    # Then the contact the user exchanged most with ranks first, far above the newcomer,
    # and the scores are numbers a person can read (points, not 1e-06)
    busiest = max(scores.values(), key=lambda s: s.messages_out + s.messages_in + s.meetings)
    assert busiest.messages_out >= 5 and busiest.messages_in >= 5
    assert busiest.rank < scores["new@partner.example"].rank
    assert busiest.score > 10 * scores["new@partner.example"].score
    assert 1 <= busiest.score <= 1000
