"""Processing: relationship scores and ranks per contact, and a per-user digest.

Score (``rank``), for contact *c* at time ``now``, over *c*'s interactions that
are unique by natural key (see ``extract.unique_interactions``) and not in the
future (``at <= now``), measured from the user's latest activity ``ref`` —
the latest ``at`` of any of the user's interactions up to ``now``::

    age(i)   = (ref - i.at) in days
    decay(i) = 2 ** (-age(i) / half_life_days)            # 1 at ref, 1/2 a half-life before
    w(i)     = 1.0 outbound message | 0.5 inbound message | 2.0 meeting
    base(c)  = Σ w(i) · decay(i)                          # math.fsum: order-independent
    score(c) = base(c) · (1 + 0.5 · reciprocal(c))

``reciprocal(c)`` is 1 when *c* has at least one outbound message and at least
one inbound message or meeting — the user reached out and the contact answered
or met them — and 0 otherwise, so newsletters (inbound only) and cold outreach
(outbound only) earn no bonus. Future interactions (upcoming meetings) score
nothing and are not counted; a contact known only from them ranks with score 0.
Ranks run 1..n by score descending, ties broken by address ascending.

Scale: one point is what one message the user sent at ``ref`` earns, so a
score reads as "worth N fresh messages from the user": an inbound message is
worth 0.5, a meeting 2, and each halves per ``half_life_days`` of age before
``ref``. Decaying from ``ref`` rather than from ``now`` multiplies every score
of a user by the same factor, so ranks are the same either way; what it
changes is that a mailbox that went quiet months ago (or a demo mailbox)
keeps readable scores instead of ones like ``9e-06``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from jobsys.connectors.phases.events import NormalizedEvent
from jobsys.connectors.phases.extract import (
    SKIPPED_LABELS,
    Interaction,
    is_meeting,
    is_outbound,
    message_interactions,
    unique_interactions,
)
from jobsys.connectors.phases.normalize import NormalizedMessage

WEIGHT_OUTBOUND = 1.0
WEIGHT_INBOUND = 0.5
WEIGHT_MEETING = 2.0
RECIPROCITY_BONUS = 0.5
DIGEST_WINDOW = timedelta(days=7)
DIGEST_TOP = 5
DIGEST_MAX_MEETINGS = 20


@dataclass(frozen=True)
class ContactScore:
    """A contact's relationship strength at one moment (natural key: addr per user)."""

    addr: str
    score: float
    rank: int
    messages_out: int
    messages_in: int
    meetings: int
    last_at: datetime | None


@dataclass
class _Tally:
    """Mutable accumulator used only inside ``rank``."""

    terms: list[float]
    messages_out: int = 0
    messages_in: int = 0
    meetings: int = 0
    last_at: datetime | None = None


def rank(
    interactions: Iterable[Interaction], now: datetime, *, half_life_days: float = 30
) -> tuple[ContactScore, ...]:
    """Score and rank every address that appears in ``interactions`` (formula above).

    Parameters:
        interactions: interactions of one user, any order, duplicates allowed.
        now: the moment scores are computed for (later interactions do not
            count; decay runs from the latest one up to it); timezone-aware.
        half_life_days: days after which an interaction's weight halves.

    Raises:
        ValueError: ``now`` or an interaction's ``at`` is naive, or
            ``half_life_days`` is not a positive finite number.

    Returns:
        ContactScores ordered by rank (1 first).
    """
    _require_aware(now, "now")
    if not (math.isfinite(half_life_days) and half_life_days > 0):
        raise ValueError(f"half_life_days must be positive and finite, got {half_life_days!r}")
    unique = list(unique_interactions(interactions).values())
    for interaction in unique:
        _require_aware(interaction.at, "interaction.at")
    reference = latest_activity(unique, now)
    tallies: dict[str, _Tally] = {}
    for interaction in unique:
        tally = tallies.setdefault(interaction.addr, _Tally(terms=[]))
        if interaction.at <= now:
            _add(tally, interaction, reference, half_life_days)
    scored = sorted(
        ((addr, _score(tally), tally) for addr, tally in tallies.items()),
        key=lambda row: (-row[1], row[0]),
    )
    return tuple(
        ContactScore(
            addr=addr,
            score=score,
            rank=position,
            messages_out=tally.messages_out,
            messages_in=tally.messages_in,
            meetings=tally.meetings,
            last_at=tally.last_at,
        )
        for position, (addr, score, tally) in enumerate(scored, start=1)
    )


def latest_activity(interactions: Iterable[Interaction], now: datetime) -> datetime:
    """The latest ``at`` up to ``now`` (the moment scores are measured from), else ``now``."""
    return max((i.at for i in interactions if i.at <= now), default=now)


def _require_aware(moment: datetime, what: str) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware, got {moment!r}")


def _add(
    tally: _Tally, interaction: Interaction, reference: datetime, half_life_days: float
) -> None:
    age_days = (reference - interaction.at).total_seconds() / 86_400
    if interaction.kind == "meeting":
        weight = WEIGHT_MEETING
        tally.meetings += 1
    elif interaction.direction == "outbound":
        weight = WEIGHT_OUTBOUND
        tally.messages_out += 1
    else:
        weight = WEIGHT_INBOUND
        tally.messages_in += 1
    tally.terms.append(weight * 2.0 ** (-age_days / half_life_days))
    if tally.last_at is None or interaction.at > tally.last_at:
        tally.last_at = interaction.at


def _score(tally: _Tally) -> float:
    reciprocal = tally.messages_out > 0 and (tally.messages_in > 0 or tally.meetings > 0)
    return math.fsum(tally.terms) * (1 + RECIPROCITY_BONUS * reciprocal)


def digest(
    user_email: str,
    scores: Iterable[ContactScore],
    messages: Iterable[NormalizedMessage],
    events: Iterable[NormalizedEvent],
    now: datetime,
) -> dict[str, Any]:
    """Summarise one user's week as a JSON-serialisable dict.

    Windows: the past week is ``(now - 7 days, now]``, the coming week
    ``[now, now + 7 days)``. Messages labelled DRAFT or SPAM or without a
    ``sent_at`` are not counted; meetings follow ``extract.is_meeting``.

    Keys: ``user``, ``generated_at`` (ISO 8601), ``window_days``;
    ``messages`` ``{"sent", "received"}`` in the past week; ``meetings``
    ``{"held", "upcoming"}``; ``top_contacts`` (the 5 best ranks:
    ``rank, addr, score, last_at``); ``busiest_correspondents`` (up to 5 by
    messages in the past week, ties by address: ``addr, messages, sent,
    received``); ``upcoming_meetings`` (up to 20 by start: ``event_id, summary,
    start_at, end_at, all_day, attendees``).

    Parameters:
        user_email: the user's address.
        scores: output of ``rank``.
        messages: the user's normalized messages (duplicates are ignored).
        events: the user's normalized events (duplicates are ignored).
        now: the digest's moment; must be timezone-aware.

    Raises:
        ValueError: ``now`` is naive or ``user_email`` is empty.

    Returns:
        The digest.
    """
    _require_aware(now, "now")
    user = user_email.strip().lower()
    if not user:
        raise ValueError("user_email must not be empty")
    recent = [
        m
        for m in {m.gmail_id: m for m in messages}.values()
        if m.sent_at is not None
        and now - DIGEST_WINDOW < m.sent_at <= now
        and not SKIPPED_LABELS.intersection(m.labels)
    ]
    sent = sum(1 for m in recent if is_outbound(user, m))
    meetings = [e for e in {e.event_id: e for e in events}.values() if is_meeting(user, e)]
    held = [e for e in meetings if e.start_at and now - DIGEST_WINDOW < e.start_at <= now]
    upcoming = sorted(
        (e for e in meetings if e.start_at and now <= e.start_at < now + DIGEST_WINDOW),
        key=lambda e: (e.start_at, e.event_id),
    )
    top = sorted(scores, key=lambda s: s.rank)[:DIGEST_TOP]
    return {
        "user": user,
        "generated_at": now.isoformat(),
        "window_days": DIGEST_WINDOW.days,
        "messages": {"sent": sent, "received": len(recent) - sent},
        "meetings": {"held": len(held), "upcoming": len(upcoming)},
        "top_contacts": [_score_json(s) for s in top],
        "busiest_correspondents": _busiest(user, recent),
        "upcoming_meetings": [_meeting_json(user, e) for e in upcoming[:DIGEST_MAX_MEETINGS]],
    }


def _busiest(user: str, recent: list[NormalizedMessage]) -> list[dict[str, Any]]:
    sent: dict[str, int] = {}
    received: dict[str, int] = {}
    for message in recent:
        for interaction in message_interactions(user, message):
            bucket = sent if interaction.direction == "outbound" else received
            bucket[interaction.addr] = bucket.get(interaction.addr, 0) + 1
    totals = {addr: sent.get(addr, 0) + received.get(addr, 0) for addr in {*sent, *received}}
    ordered = sorted(totals.items(), key=lambda item: (-item[1], item[0]))[:DIGEST_TOP]
    return [
        {
            "addr": addr,
            "messages": total,
            "sent": sent.get(addr, 0),
            "received": received.get(addr, 0),
        }
        for addr, total in ordered
    ]


def _score_json(score: ContactScore) -> dict[str, Any]:
    return {
        "rank": score.rank,
        "addr": score.addr,
        "score": round(score.score, 4),
        "last_at": _iso(score.last_at),
    }


def _meeting_json(user: str, event: NormalizedEvent) -> dict[str, Any]:
    return {
        "event_id": event.event_id,
        "summary": event.summary,
        "start_at": _iso(event.start_at),
        "end_at": _iso(event.end_at),
        "all_day": event.all_day,
        "attendees": [a.addr for a in event.attendees if a.addr != user and not a.self],
    }


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()
