"""Ingestion: Gmail and Calendar pages into raw rows, full or incremental.

A full sync reads the history id (or sync token) before listing, stores raw
rows in chunks as they arrive (a retry skips what it already has), then drops
what Google no longer lists and stores the cursor, in one transaction. An
incremental sync stores the delta and the new cursor together. An expired
cursor degrades to a full sync.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog

from jobsys.connectors.google import batch, calendar_events, gmail
from jobsys.connectors.google.errors import (
    ExpiredCursorError,
    GoogleError,
    NotFoundError,
    QuotaError,
    TransientError,
)
from jobsys.errors import JobPostponed
from jobsys.guards.batching import Observation
from jobsys.pipeline import transient
from jobsys.pipeline.google import Session
from jobsys.store.sync import SyncStore

# Seconds a job waits out 429s in-process before failing the attempt.
QUOTA_PATIENCE = 60.0
# Seconds before a full sync that stored messages and then failed transiently runs again.
PROGRESS_PAUSE = 1.0
log = structlog.get_logger("jobsys.pipeline")


def sync_gmail(sync: SyncStore, google: Session, user_id: str, *, full: bool) -> dict[str, Any]:
    cursor = None if full else sync.cursor(user_id, "gmail")
    if cursor is not None:
        try:
            return _gmail_delta(sync, google, user_id, cursor)
        except ExpiredCursorError:
            log.info("gmail.cursor_expired", user_id=user_id, cursor=cursor)
    return _gmail_full(sync, google, user_id)


def _gmail_full(sync: SyncStore, google: Session, user_id: str) -> dict[str, Any]:
    start = gmail.get_profile(google.gmail, guard=google.guard).history_id
    listed = [ref.id for ref in gmail.list_message_ids(google.gmail, guard=google.guard)]
    known = sync.known_message_ids(user_id)
    todo = [i for i in listed if i not in known]
    progress = Progress()
    try:
        vanished = fetch_messages(sync, google, user_id, todo, progress)
    except TransientError as e:
        if not progress.stored:
            raise
        # Stored messages are skipped next time, so the work left shrinks with each
        # such attempt: handing the attempt back cannot loop forever.
        raise JobPostponed(
            f"{e} after storing {progress.stored} messages",
            delay=transient.pause(1) + PROGRESS_PAUSE,
            reason="transient",
        ) from e
    keep = set(listed) - set(vanished)
    sync.save_raw_messages(user_id, [], keep_only=keep, cursor=start)
    return {"mode": "full", "listed": len(listed), "fetched": len(todo) - len(vanished)}


def _gmail_delta(sync: SyncStore, google: Session, user_id: str, cursor: str) -> dict[str, Any]:
    delta = gmail.list_history(google.gmail, cursor, guard=google.guard)
    added = [ref.id for ref in delta.added]
    vanished = fetch_messages(sync, google, user_id, added)
    deleted = [ref.id for ref in delta.deleted] + vanished
    sync.save_raw_messages(user_id, [], deleted=deleted, cursor=delta.history_id)
    return {"mode": "incremental", "added": len(added) - len(vanished), "deleted": len(deleted)}


def fetch_messages(
    sync: SyncStore,
    google: Session,
    user_id: str,
    ids: list[str],
    progress: Progress | None = None,
) -> list[str]:
    """Fetch and store raw messages in adaptive batches; returns ids deleted meanwhile.

    Parts of a batch answered 429 are fetched again after their Retry-After, for
    up to ``QUOTA_PATIENCE`` seconds, so a user's quota slows ingestion down
    instead of failing it. Parts answered 5xx are fetched again after a backoff
    (see :mod:`transient`), up to ``google.transient_tries`` tries each; a batch
    refused whole was already tried that often by the session's guard.
    ``progress`` counts the messages stored, also when this raises.

    Raises:
        GoogleError: a non-quota, non-transient failure; quota still exhausted
            after waiting; or a part that failed every try.
    """
    progress = progress if progress is not None else Progress()
    retry = _PartRetry(google.transient_tries, time.monotonic() + QUOTA_PATIENCE)
    vanished: list[str] = []
    todo = list(ids)
    while todo:
        size = google.batches.size()
        chunk, todo = todo[:size], todo[size:]
        try:
            got = batch.get_raw_messages(
                google.gmail, chunk, batch_uri=google.batch_uri, batch_size=size, guard=google.guard
            )
        except (QuotaError, TransientError) as e:
            # The whole batch was refused: as bad as every part failing.
            google.batches.observe(_failed(size, e))
            raise
        google.batches.observe(_observation(size, got))
        sync.save_raw_messages(user_id, [_raw_row(m) for m in got.messages.values()])
        progress.stored += len(got.messages)
        vanished += [k for k, e in got.errors.items() if isinstance(e, NotFoundError)]
        todo = retry.again(got) + todo
    return vanished


@dataclass
class Progress:
    """What an ingestion stored before it ended, however it ended."""

    stored: int = 0


class _PartRetry:
    """Which failed parts of a batch to fetch again, and how long to wait first."""

    def __init__(self, tries: int, quota_deadline: float) -> None:
        self.tries, self.deadline = tries, quota_deadline
        self.failures: Counter[str] = Counter()

    def again(self, got: batch.BatchResult) -> list[str]:
        """Ids to fetch again after waiting out their quota or 5xx; raises any other failure."""
        failed = {k: e for k, e in got.errors.items() if not isinstance(e, NotFoundError)}
        if not failed:
            return []
        other = [e for e in failed.values() if not isinstance(e, QuotaError | TransientError)]
        if other:
            raise other[0]
        waits = [self._transient([k for k, e in failed.items() if isinstance(e, TransientError)])]
        if any(isinstance(e, QuotaError) for e in failed.values()):
            waits.append(self._quota(got, failed))
        wait = max(waits)
        log.info("gmail.parts_again", seconds=round(wait, 3), ids=len(failed))
        time.sleep(wait)
        return list(failed)

    def _transient(self, ids: list[str]) -> float:
        if not ids:
            return 0.0
        self.failures.update(ids)
        worst = max(ids, key=self.failures.__getitem__)
        if self.failures[worst] >= self.tries:
            raise TransientError(f"message {worst} failed {self.failures[worst]} tries")
        return transient.pause(self.failures[worst])

    def _quota(self, got: batch.BatchResult, failed: dict[str, GoogleError]) -> float:
        wait = min(got.retry_after or 1.0, 10.0)
        if time.monotonic() + wait > self.deadline:
            raise next(e for e in failed.values() if isinstance(e, QuotaError))
        return wait


def _observation(size: int, got: batch.BatchResult) -> Observation:
    errors = got.errors.values()
    throttled = sum(isinstance(e, QuotaError) for e in errors)
    failed = sum(isinstance(e, TransientError) for e in errors)
    return Observation(size, got.seconds, throttled, failed)


def _failed(size: int, error: GoogleError) -> Observation:
    quota = isinstance(error, QuotaError)
    return Observation(size, 0.0, throttled=size if quota else 0, failed=0 if quota else size)


def _raw_row(m: batch.RawMessage) -> dict[str, Any]:
    return {
        "gmail_id": m.id,
        "thread_id": m.thread_id,
        "label_ids": list(m.label_ids),
        "raw": m.raw,
        "internal_date": datetime.fromtimestamp(m.internal_date_ms / 1000, UTC),
    }


def sync_calendar(sync: SyncStore, google: Session, user_id: str, *, full: bool) -> dict[str, Any]:
    cursor = None if full else sync.cursor(user_id, "calendar")
    if cursor is not None:
        try:
            changes = calendar_events.list_events(
                google.calendar, sync_token=cursor, guard=google.guard
            )
            sync.save_raw_events(user_id, changes.events, cursor=changes.next_sync_token)
            return {"mode": "incremental", "changed": len(changes.events)}
        except ExpiredCursorError:
            log.info("calendar.cursor_expired", user_id=user_id)
    listing = calendar_events.list_events(google.calendar, guard=google.guard)
    keep = {e["id"] for e in listing.events}
    sync.save_raw_events(user_id, listing.events, keep_only=keep, cursor=listing.next_sync_token)
    return {"mode": "full", "listed": len(listing.events)}
