"""Ingestion: Gmail and Calendar pages into raw rows, full or incremental.

A full sync reads the history id (or sync token) before listing, stores raw
rows in chunks as they arrive (a retry skips what it already has), then drops
what Google no longer lists and stores the cursor, in one transaction. An
incremental sync stores the delta and the new cursor together. An expired
cursor degrades to a full sync.
"""

from __future__ import annotations

import time
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
from jobsys.guards.batching import Observation
from jobsys.pipeline.google import Session
from jobsys.store.sync import SyncStore

# Seconds a job waits out 429s in-process before failing the attempt.
QUOTA_PATIENCE = 60.0
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
    vanished = fetch_messages(sync, google, user_id, todo)
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


def fetch_messages(sync: SyncStore, google: Session, user_id: str, ids: list[str]) -> list[str]:
    """Fetch and store raw messages in adaptive batches; returns ids deleted meanwhile.

    Parts of a batch answered 429 are fetched again after their Retry-After, for
    up to ``QUOTA_PATIENCE`` seconds, so a user's quota slows ingestion down
    instead of failing it; the job fails (and retries later) only past that.

    Raises:
        GoogleError: a non-quota failure, or quota still exhausted after waiting.
    """
    vanished: list[str] = []
    deadline = time.monotonic() + QUOTA_PATIENCE
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
        vanished += [k for k, e in got.errors.items() if isinstance(e, NotFoundError)]
        todo = _wait_for_quota(got, deadline) + todo
    return vanished


def _observation(size: int, got: batch.BatchResult) -> Observation:
    errors = got.errors.values()
    throttled = sum(isinstance(e, QuotaError) for e in errors)
    failed = sum(isinstance(e, TransientError) for e in errors)
    return Observation(size, got.seconds, throttled, failed)


def _failed(size: int, error: GoogleError) -> Observation:
    quota = isinstance(error, QuotaError)
    return Observation(size, 0.0, throttled=size if quota else 0, failed=0 if quota else size)


def _wait_for_quota(got: batch.BatchResult, deadline: float) -> list[str]:
    """Ids to fetch again after waiting out the quota; raises any other failure."""
    failed = {k: e for k, e in got.errors.items() if not isinstance(e, NotFoundError)}
    if not failed:
        return []
    other = [e for e in failed.values() if not isinstance(e, QuotaError)]
    wait = min(got.retry_after or 1.0, 10.0)
    if other or time.monotonic() + wait > deadline:
        raise (other or list(failed.values()))[0]
    log.info("gmail.quota_wait", seconds=wait, ids=len(failed))
    time.sleep(wait)
    return list(failed)


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
