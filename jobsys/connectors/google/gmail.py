"""Gmail reads for ingestion: profile, message listing and history since a cursor.

Pure of Celery and of jobsys's engine: each function takes a built Gmail
service (:func:`clients.build_gmail`) and returns plain dataclasses. Each
page is one ``execute(num_retries=0)``; failures raise the classified
:class:`GoogleError` tree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from jobsys.connectors.google.clients import UNGUARDED, Guard, Service, execute

HISTORY_TYPES = ("messageAdded", "messageDeleted")


@dataclass(frozen=True)
class MessageRef:
    """A message id and its thread id, as listings return them."""

    id: str
    thread_id: str


@dataclass(frozen=True)
class Profile:
    """The mailbox's address, size and current history id."""

    email: str
    messages_total: int
    history_id: str


@dataclass(frozen=True)
class MessagePage:
    """One page of ``messages.list``."""

    refs: tuple[MessageRef, ...]
    next_page_token: str | None


@dataclass(frozen=True)
class HistoryDelta:
    """Net changes since a history id.

    Attributes:
        added: messages added and still present at the end of the window.
        deleted: messages deleted in the window (some may never have been seen).
        history_id: the cursor to store once the changes are applied.
    """

    added: tuple[MessageRef, ...]
    deleted: tuple[MessageRef, ...]
    history_id: str


def get_profile(gmail: Service, *, guard: Guard = UNGUARDED) -> Profile:
    """Read ``users.getProfile`` (1 quota unit).

    Raises:
        GoogleError: classified failure.

    Returns:
        The profile; its ``history_id`` is the cursor for a later incremental sync.
    """
    data = execute(gmail.users().getProfile(userId="me"), guard=guard)
    return Profile(str(data["emailAddress"]), int(data["messagesTotal"]), str(data["historyId"]))


def list_message_page(
    gmail: Service,
    page_token: str | None = None,
    *,
    page_size: int = 500,
    label_ids: Sequence[str] = (),
    query: str | None = None,
    guard: Guard = UNGUARDED,
) -> MessagePage:
    """Read one page of ``users.messages.list`` (5 quota units).

    Parameters:
        gmail: the Gmail service.
        page_token: where to continue, None for the first page.
        page_size: ``maxResults`` (Gmail caps it at 500).
        label_ids: only messages carrying all these labels.
        query: a Gmail search query such as ``in:inbox``.

    Raises:
        GoogleError: classified failure.

    Returns:
        The page.
    """
    kwargs: dict[str, object] = {"userId": "me", "maxResults": page_size}
    if page_token:
        kwargs["pageToken"] = page_token
    if label_ids:
        kwargs["labelIds"] = list(label_ids)
    if query:
        kwargs["q"] = query
    data = execute(gmail.users().messages().list(**kwargs), guard=guard)
    refs = tuple(MessageRef(m["id"], m["threadId"]) for m in data.get("messages", []))
    return MessagePage(refs, data.get("nextPageToken"))


def list_message_ids(
    gmail: Service,
    *,
    page_size: int = 500,
    label_ids: Sequence[str] = (),
    query: str | None = None,
    guard: Guard = UNGUARDED,
) -> list[MessageRef]:
    """List every message, following page tokens (5 units per page).

    Parameters:
        gmail: the Gmail service.
        page_size: ``maxResults`` per page.
        label_ids: only messages carrying all these labels.
        query: a Gmail search query.

    Raises:
        GoogleError: classified failure of any page.

    Returns:
        Every message reference, newest first.
    """
    refs: list[MessageRef] = []
    token: str | None = None
    while True:
        page = list_message_page(
            gmail, token, page_size=page_size, label_ids=label_ids, query=query, guard=guard
        )
        refs.extend(page.refs)
        token = page.next_page_token
        if not token:
            return refs


def list_history(
    gmail: Service,
    start_history_id: str,
    *,
    page_size: int = 500,
    history_types: Sequence[str] = HISTORY_TYPES,
    guard: Guard = UNGUARDED,
) -> HistoryDelta:
    """Read every ``users.history.list`` page after ``start_history_id`` (2 units a page).

    Parameters:
        gmail: the Gmail service.
        start_history_id: the stored cursor.
        page_size: ``maxResults`` per page.
        history_types: which changes to ask for.

    Raises:
        ExpiredCursorError: the cursor is older than Gmail's retained history (404).
        GoogleError: any other classified failure.

    Returns:
        The net changes and the new cursor.
    """
    added: dict[str, MessageRef] = {}
    deleted: dict[str, MessageRef] = {}
    token: str | None = None
    while True:
        kwargs: dict[str, object] = {
            "userId": "me",
            "startHistoryId": start_history_id,
            "maxResults": page_size,
            "historyTypes": list(history_types),
        }
        if token:
            kwargs["pageToken"] = token
        data = execute(gmail.users().history().list(**kwargs), cursor=True, guard=guard)
        for record in data.get("history", []):
            _apply(record, added, deleted)
        token = data.get("nextPageToken")
        if not token:
            return HistoryDelta(
                tuple(added.values()), tuple(deleted.values()), str(data["historyId"])
            )


def _apply(
    record: dict[str, Any], added: dict[str, MessageRef], deleted: dict[str, MessageRef]
) -> None:
    for entry in record.get("messagesAdded", []):
        ref = _ref(entry)
        added[ref.id] = ref
    # Records come in history order, so a later deletion cancels an earlier addition
    # (Gmail never reuses a message id, so nothing is re-added after a deletion).
    for entry in record.get("messagesDeleted", []):
        ref = _ref(entry)
        added.pop(ref.id, None)
        deleted[ref.id] = ref


def _ref(entry: dict[str, Any]) -> MessageRef:
    message = entry["message"]
    return MessageRef(str(message["id"]), str(message["threadId"]))


def watch(gmail: Service, topic: str, *, guard: Guard = UNGUARDED) -> dict[str, str]:
    """Ask Gmail to publish the mailbox's changes to ``topic`` (``users.watch``, 100 units).

    A watch lasts seven days: renew it daily (``jobsys google watch --all`` from cron).

    Returns:
        ``historyId`` at the time of the call and ``expiration`` (epoch milliseconds).
    """
    body = {"topicName": topic, "labelIds": ["INBOX"], "labelFilterBehavior": "include"}
    data = execute(gmail.users().watch(userId="me", body=body), guard=guard)
    return {"historyId": str(data["historyId"]), "expiration": str(data["expiration"])}
