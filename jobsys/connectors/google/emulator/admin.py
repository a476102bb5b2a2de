"""The admin API under ``/_emulator/``: provisioning, mutations, faults and stats.

Routes (``{email}`` URL-encoded or not)::

    GET    /_emulator/users                          emails, names and tokens
    POST   /_emulator/users                          {"email", "name"?} -> new user
    POST   /_emulator/users/{email}/messages         raw RFC 822 body; ?labelIds=X (repeat)
    DELETE /_emulator/users/{email}/messages/{id}
    POST   /_emulator/users/{email}/events           Calendar event JSON
    POST   /_emulator/users/{email}/events/{id}/cancel
    POST   /_emulator/users/{email}/revoke
    POST   /_emulator/users/{email}/expire-token     access tokens only, refresh still works
    POST   /_emulator/users/{email}/expire-cursors
    POST   /_emulator/expire-cursors                 every user
    GET    /_emulator/users/{email}/truth/messages   ground truth (ISO 8601 times)
    GET    /_emulator/users/{email}/truth/events
    POST   /_emulator/topics                         {"topic", "endpoint"}: a push subscription
    POST   /_emulator/faults                         FaultSettings fields as JSON
    DELETE /_emulator/faults
    GET    /_emulator/stats                          per user and method counters
    POST   /_emulator/stats/reset
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime
from typing import Any

from jobsys.connectors.google.emulator.faults import Faults, FaultSettings
from jobsys.connectors.google.emulator.quota import QuotaBook
from jobsys.connectors.google.emulator.replies import Reply, bad_request, json_reply, not_found
from jobsys.connectors.google.emulator.request import ApiRequest
from jobsys.connectors.google.emulator.world import World

_U = "/_emulator/users/(?P<email>[^/]+)"
AdminHandler = Callable[["Admin", ApiRequest, dict[str, str]], Reply]


class Admin:
    """Answers admin requests.

    Parameters:
        world: the users and their data.
        quota: buckets and counters.
        faults: injected faults.
    """

    def __init__(self, world: World, quota: QuotaBook, faults: Faults) -> None:
        self.world = world
        self.quota = quota
        self.faults = faults

    def handle(self, request: ApiRequest) -> Reply:
        """Answer one admin request; 404 for an unknown route or user, 400 for bad input."""
        for method, pattern, handler in _ROUTES:
            m = pattern.fullmatch(request.path)
            if m and method == request.method:
                try:
                    return handler(self, request, m.groupdict())
                except KeyError as e:
                    return not_found(f"no such user or item: {e}")
                except (ValueError, TypeError) as e:
                    return bad_request(str(e))
        return not_found(f"no admin route {request.method} {request.path}")

    def list_users(self, request: ApiRequest, _: dict[str, str]) -> Reply:
        return json_reply({"users": [asdict(u) for u in self.world.users()]})

    def add_user(self, request: ApiRequest, _: dict[str, str]) -> Reply:
        data = _json(request)
        return json_reply(asdict(self.world.add_user(str(data["email"]), data.get("name"))))

    def add_message(self, request: ApiRequest, p: dict[str, str]) -> Reply:
        labels = tuple(request.args("labelIds")) or ("INBOX", "UNREAD")
        stored = self.world.add_message(p["email"], request.body, labels)
        body = {"id": stored.id, "threadId": stored.thread_id, "historyId": str(stored.history_id)}
        return json_reply(body)

    def delete_message(self, request: ApiRequest, p: dict[str, str]) -> Reply:
        if not self.world.delete_message(p["email"], p["id"]):
            return not_found()
        return Reply(204)

    def put_event(self, request: ApiRequest, p: dict[str, str]) -> Reply:
        return json_reply(self.world.put_event(p["email"], _json(request)))

    def cancel_event(self, request: ApiRequest, p: dict[str, str]) -> Reply:
        if not self.world.cancel_event(p["email"], p["id"]):
            return not_found()
        return json_reply({"id": p["id"], "status": "cancelled"})

    def revoke(self, request: ApiRequest, p: dict[str, str]) -> Reply:
        self.world.revoke(p["email"])
        return json_reply({"email": p["email"], "revoked": True})

    def expire_token(self, request: ApiRequest, p: dict[str, str]) -> Reply:
        self.world.expire_access_tokens(p["email"])
        return json_reply({"email": p["email"], "access_tokens": "expired"})

    def expire_cursors(self, request: ApiRequest, p: dict[str, str]) -> Reply:
        email = p.get("email")
        if email is not None:
            self.world.user(email)  # raises KeyError → 404 for an unknown user
        self.world.expire_cursors(email)
        return json_reply({"expired": email or "all"})

    def truth(self, request: ApiRequest, p: dict[str, str]) -> Reply:
        rows: list[Any] = (
            list(self.world.truth_messages(p["email"]))
            if p["what"] == "messages"
            else list(self.world.truth_events(p["email"]))
        )
        return Reply(200, json.dumps(rows, default=_iso).encode())

    def subscribe(self, request: ApiRequest, _: dict[str, str]) -> Reply:
        data = _json(request)
        self.world.push.subscribe(str(data["topic"]), str(data["endpoint"]))
        return json_reply({"topic": data["topic"], "endpoint": data["endpoint"]})

    def set_faults(self, request: ApiRequest, _: dict[str, str]) -> Reply:
        self.faults.configure(FaultSettings(**_json(request)))
        return json_reply(self.faults.describe())

    def clear_faults(self, request: ApiRequest, _: dict[str, str]) -> Reply:
        self.faults.clear()
        return json_reply(self.faults.describe())

    def stats(self, request: ApiRequest, _: dict[str, str]) -> Reply:
        return json_reply({**self.quota.snapshot(), "faults": self.faults.describe()})

    def reset_stats(self, request: ApiRequest, _: dict[str, str]) -> Reply:
        self.quota.reset()
        return json_reply({"reset": True})


def _json(request: ApiRequest) -> dict[str, Any]:
    data = json.loads(request.body or b"{}")
    if not isinstance(data, dict):
        raise ValueError("the body must be a JSON object")
    return data


def _iso(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot serialise {type(value).__name__}")


_ROUTES: tuple[tuple[str, re.Pattern[str], AdminHandler], ...] = tuple(
    (method, re.compile(pattern), handler)
    for method, pattern, handler in (
        ("GET", "/_emulator/users", Admin.list_users),
        ("POST", "/_emulator/users", Admin.add_user),
        ("POST", _U + "/messages", Admin.add_message),
        ("DELETE", _U + "/messages/(?P<id>[^/]+)", Admin.delete_message),
        ("POST", _U + "/events", Admin.put_event),
        ("POST", _U + "/events/(?P<id>[^/]+)/cancel", Admin.cancel_event),
        ("POST", _U + "/revoke", Admin.revoke),
        ("POST", _U + "/expire-token", Admin.expire_token),
        ("POST", _U + "/expire-cursors", Admin.expire_cursors),
        ("POST", "/_emulator/expire-cursors", Admin.expire_cursors),
        ("GET", _U + "/truth/(?P<what>messages|events)", Admin.truth),
        ("POST", "/_emulator/topics", Admin.subscribe),
        ("POST", "/_emulator/faults", Admin.set_faults),
        ("DELETE", "/_emulator/faults", Admin.clear_faults),
        ("GET", "/_emulator/stats", Admin.stats),
        ("POST", "/_emulator/stats/reset", Admin.reset_stats),
    )
)
