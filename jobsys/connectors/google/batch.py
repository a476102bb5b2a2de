"""Batched ``messages.get``: up to 100 inner requests in one HTTP round trip.

``service.new_batch_http_request()`` ignores ``api_endpoint``, so the batch
is built with an explicit ``batch_uri`` (:func:`clients.gmail_batch_uri`).
Each message succeeds or fails on its own: a batch answers per part, and a
part may be throttled (429) or gone (404) while the others succeed.
"""

from __future__ import annotations

import base64
import functools
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from googleapiclient.http import BatchHttpRequest  # type: ignore[import-untyped]

from jobsys.connectors.google.clients import UNGUARDED, Guard, Service
from jobsys.connectors.google.errors import GoogleError, classify
from jobsys.connectors.google.usage import metered

MAX_BATCH = 100
GET_METHOD = "gmail.users.messages.get"


@dataclass(frozen=True)
class RawMessage:
    """One message in ``format=raw``: the exact RFC 822 bytes plus Gmail's metadata."""

    id: str
    thread_id: str
    label_ids: tuple[str, ...]
    history_id: str
    internal_date_ms: int
    size_estimate: int
    raw: bytes


@dataclass
class BatchResult:
    """Messages fetched and per-message failures, keyed by message id."""

    messages: dict[str, RawMessage] = field(default_factory=dict)
    errors: dict[str, GoogleError] = field(default_factory=dict)
    seconds: float = 0.0  # spent in HTTP round trips, not waiting for quota

    @property
    def retryable_ids(self) -> list[str]:
        """Ids whose failure may succeed on another attempt (quota, transient)."""
        return [i for i, e in self.errors.items() if e.retryable]

    @property
    def retry_after(self) -> float | None:
        """The longest Retry-After among the failures, None if none asked for one."""
        waits = [e.retry_after for e in self.errors.values() if e.retry_after is not None]
        return max(waits) if waits else None


def get_raw_messages(
    gmail: Service,
    ids: Sequence[str],
    *,
    batch_uri: str,
    batch_size: int = 50,
    guard: Guard = UNGUARDED,
) -> BatchResult:
    """Fetch messages in ``format=raw``, ``batch_size`` per HTTP request (5 units each).

    Parameters:
        gmail: the Gmail service.
        ids: message ids (duplicates are fetched once).
        batch_uri: the batch endpoint, from :func:`clients.gmail_batch_uri`.
        batch_size: requests per batch, 1..100 (Gmail advises at most 50).
        guard: spends each batch's quota (5 units a message) and learns from its parts.

    Raises:
        ValueError: ``batch_size`` is out of range.
        GoogleError: a whole batch failed (e.g. the token could not be refreshed).

    Returns:
        The fetched messages and the per-message errors.
    """
    if not 1 <= batch_size <= MAX_BATCH:
        raise ValueError(f"batch_size must be within 1..{MAX_BATCH}, got {batch_size}")
    unique = list(dict.fromkeys(ids))
    result = BatchResult()
    # Building a resource object parses the discovery document (~2 ms): once only.
    messages = gmail.users().messages()
    for start in range(0, len(unique), batch_size):
        chunk = unique[start : start + batch_size]
        run = functools.partial(_run_batch, messages, chunk, batch_uri)
        got = guard.call(
            GET_METHOD,
            len(chunk),
            metered(GET_METHOD, len(chunk), run, _part_errors),
            part_errors=_part_errors,
        )
        result.messages.update(got.messages)
        result.errors.update(got.errors)
        result.seconds += got.seconds
    return result


def _part_errors(result: BatchResult) -> Iterable[GoogleError]:
    return result.errors.values()


def _run_batch(messages: Any, ids: list[str], batch_uri: str) -> BatchResult:
    result = BatchResult()

    def collect(request_id: str, response: Any, exception: Exception | None) -> None:
        if exception is not None:
            result.errors[request_id] = classify(exception)
        else:
            result.messages[request_id] = _raw_message(response)

    batch = BatchHttpRequest(callback=collect, batch_uri=batch_uri)
    for message_id in ids:
        batch.add(
            messages.get(userId="me", id=message_id, format="raw"),
            request_id=message_id,
        )
    started = time.monotonic()
    try:
        batch.execute()
    except Exception as e:
        raise classify(e) from e
    result.seconds = time.monotonic() - started
    return result


def _raw_message(data: dict[str, Any]) -> RawMessage:
    raw = data.get("raw", "")
    return RawMessage(
        id=str(data["id"]),
        thread_id=str(data["threadId"]),
        label_ids=tuple(data.get("labelIds", ())),
        history_id=str(data.get("historyId", "")),
        internal_date_ms=int(data.get("internalDate", 0)),
        size_estimate=int(data.get("sizeEstimate", 0)),
        # Gmail's base64url may come without padding.
        raw=base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)),
    )
