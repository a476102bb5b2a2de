"""Gmail v1 methods: getProfile, labels.list, messages.list, messages.get, history.list.

Handlers run with the world lock held and return a :class:`Reply`; auth,
quota and faults are handled before them by the dispatcher.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from jobsys.connectors.google.emulator.gmail_format import message_resource
from jobsys.connectors.google.emulator.mailbox import (
    SYSTEM_LABELS,
    USER_LABELS,
    HistoryRecord,
    StoredMessage,
)
from jobsys.connectors.google.emulator.replies import Reply, bad_request, json_reply, not_found
from jobsys.connectors.google.emulator.request import ApiRequest
from jobsys.connectors.google.emulator.world import UserState

_HISTORY_TYPES = {"messageAdded", "messageDeleted"}
_QUERY_ALIASES = {"is:unread": "UNREAD", "is:starred": "STARRED", "is:important": "IMPORTANT"}


def get_profile(user: UserState, request: ApiRequest, _: dict[str, str]) -> Reply:
    """``users.getProfile``: address, totals and the current historyId."""
    box = user.mailbox
    threads = {m.thread_id for m in box.messages.values()}
    return json_reply(
        {
            "emailAddress": user.email,
            "messagesTotal": len(box.messages),
            "threadsTotal": len(threads),
            "historyId": str(box.history_id),
        }
    )


def watch(user: UserState, request: ApiRequest, _: dict[str, str]) -> Reply:
    """``users.watch``: publish the mailbox's changes to ``topicName``."""
    assert user.hub is not None
    try:
        body = json.loads(request.body or b"{}")
        made = user.hub.watch(user.email, str(body["topicName"]))
    except (ValueError, KeyError, TypeError) as e:
        return bad_request(f"Invalid topicName: {e}")
    history = str(user.mailbox.history_id)
    return json_reply({"historyId": history, "expiration": str(made.expiration_ms)})


def stop(user: UserState, request: ApiRequest, _: dict[str, str]) -> Reply:
    """``users.stop``: no more notifications for the mailbox."""
    assert user.hub is not None
    user.hub.stop(user.email)
    return Reply(204)


def list_labels(user: UserState, request: ApiRequest, _: dict[str, str]) -> Reply:
    """``users.labels.list``: system labels and the generated user label."""
    labels: list[dict[str, str]] = [{"id": x, "name": x, "type": "system"} for x in SYSTEM_LABELS]
    labels += [{"id": k, "name": v, "type": "user"} for k, v in USER_LABELS.items()]
    return json_reply({"labels": labels})


def list_messages(user: UserState, request: ApiRequest, _: dict[str, str]) -> Reply:
    """``users.messages.list``: newest first, keyset-paged, filtered by labels and ``q``."""
    try:
        size = request.int_arg("maxResults", 100, 500)
        wanted = set(request.args("labelIds")) | _labels_from_query(request.arg("q"))
        after = _decode_key(request.arg("pageToken")) if request.arg("pageToken") else None
    except ValueError as e:
        return bad_request(str(e))
    listing = user.mailbox.listing(wanted, request.flag("includeSpamTrash"))
    if after is not None:
        listing = [m for m in listing if _key(m) > after]
    page = listing[:size]
    body: dict[str, Any] = {"resultSizeEstimate": len(listing)}
    if page:
        body["messages"] = [{"id": m.id, "threadId": m.thread_id} for m in page]
    if len(listing) > size:
        body["nextPageToken"] = _encode_key(_key(page[-1]))
    return json_reply(body)


def get_message(user: UserState, request: ApiRequest, params: dict[str, str]) -> Reply:
    """``users.messages.get`` in format full, metadata, minimal or raw."""
    stored = user.mailbox.messages.get(params["id"])
    if stored is None:
        return not_found()
    try:
        resource = message_resource(
            stored, request.arg("format", "full"), request.args("metadataHeaders")
        )
    except ValueError as e:
        return bad_request(str(e))
    return json_reply(resource)


def list_history(user: UserState, request: ApiRequest, _: dict[str, str]) -> Reply:
    """``users.history.list``: changes after ``startHistoryId``; 404 when it has expired."""
    try:
        start = int(request.arg("startHistoryId"))
        size = request.int_arg("maxResults", 100, 500)
        after = int(request.arg("pageToken") or start)
    except ValueError:
        return bad_request("startHistoryId (and pageToken) must be integers")
    types = set(request.args("historyTypes")) or _HISTORY_TYPES
    if not types <= _HISTORY_TYPES | {"labelAdded", "labelRemoved"}:
        return bad_request(f"unknown historyTypes {sorted(types - _HISTORY_TYPES)}")
    records = user.mailbox.history_since(start)
    if records is None:
        return not_found()
    label = request.arg("labelId")
    chosen = [
        r for r in records if r.id > after and r.kind in types and (not label or label in r.labels)
    ]
    page = chosen[:size]
    body: dict[str, Any] = {"historyId": str(user.mailbox.history_id)}
    if page:
        body["history"] = [_history_json(r) for r in page]
    if len(chosen) > size:
        body["nextPageToken"] = str(page[-1].id)
    return json_reply(body)


def _history_json(record: HistoryRecord) -> dict[str, Any]:
    ref = {"id": record.message_id, "threadId": record.thread_id}
    entry = {**ref, "labelIds": list(record.labels)}
    key = "messagesAdded" if record.kind == "messageAdded" else "messagesDeleted"
    return {"id": str(record.id), "messages": [ref], key: [{"message": entry}]}


def _labels_from_query(q: str) -> set[str]:
    labels: set[str] = set()
    names = {v.lower(): k for k, v in USER_LABELS.items()}
    for term in q.split():
        lowered = term.lower()
        if lowered in _QUERY_ALIASES:
            labels.add(_QUERY_ALIASES[lowered])
            continue
        prefix, _, name = lowered.partition(":")
        if prefix not in ("label", "in") or not name:
            raise ValueError(f"the emulator supports only label:/in:/is: terms in q, got {term!r}")
        labels.add(names.get(name, name.upper().replace("-", "_")))
    return labels


def _key(message: StoredMessage) -> tuple[int, str]:
    return (-message.internal_date_ms, message.id)


def _encode_key(key: tuple[int, str]) -> str:
    return base64.urlsafe_b64encode(f"{key[0]}:{key[1]}".encode()).decode()


def _decode_key(token: str) -> tuple[int, str]:
    try:
        ms, _, ident = base64.urlsafe_b64decode(token).decode().partition(":")
        return int(ms), ident
    except (binascii.Error, UnicodeDecodeError, ValueError) as e:
        raise ValueError(f"invalid pageToken {token!r}") from e
