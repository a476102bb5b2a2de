"""Routing of Gmail/Calendar API calls through auth, faults and quota to handlers.

Order per request, as Google does it: authenticate the bearer token (401),
check the path's user against the token's (403), then injected faults, then
quota (429 with Retry-After), then the method itself. Every request is
counted per user and method in the :class:`QuotaBook`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from jobsys.connectors.google.costs import COSTS
from jobsys.connectors.google.emulator import calendar_api, gmail_api
from jobsys.connectors.google.emulator.faults import Faults
from jobsys.connectors.google.emulator.quota import QuotaBook
from jobsys.connectors.google.emulator.replies import Reply, google_error, not_found
from jobsys.connectors.google.emulator.request import ApiRequest
from jobsys.connectors.google.emulator.world import UserState, World

Handler = Callable[[UserState, ApiRequest, dict[str, str]], Reply]
_USER = r"/gmail/v1/users/(?P<user>[^/]+)"


@dataclass(frozen=True)
class Route:
    """One API method: its id, HTTP method, path pattern and handler."""

    name: str
    method: str
    pattern: re.Pattern[str]
    handler: Handler

    @property
    def api(self) -> str:
        """``gmail`` or ``calendar``: which quota bucket the method draws from."""
        return self.name.split(".", 1)[0]


ROUTES = (
    Route("gmail.users.getProfile", "GET", re.compile(_USER + "/profile"), gmail_api.get_profile),
    Route("gmail.users.labels.list", "GET", re.compile(_USER + "/labels"), gmail_api.list_labels),
    Route("gmail.users.watch", "POST", re.compile(_USER + "/watch"), gmail_api.watch),
    Route("gmail.users.stop", "POST", re.compile(_USER + "/stop"), gmail_api.stop),
    Route(
        "gmail.users.messages.list",
        "GET",
        re.compile(_USER + "/messages"),
        gmail_api.list_messages,
    ),
    Route(
        "gmail.users.messages.get",
        "GET",
        re.compile(_USER + "/messages/(?P<id>[^/]+)"),
        gmail_api.get_message,
    ),
    Route(
        "gmail.users.history.list", "GET", re.compile(_USER + "/history"), gmail_api.list_history
    ),
    # The client drops the servicePath when api_endpoint is set, so accept both forms.
    Route(
        "calendar.events.list",
        "GET",
        re.compile(r"(?:/calendar/v3)?/calendars/(?P<calendar>[^/]+)/events"),
        calendar_api.list_events,
    ),
)


class Dispatcher:
    """Answers API requests against one world.

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
        """Answer one API request (a plain request or one part of a batch)."""
        found = _match(request)
        if found is None:
            return not_found(f"no such method: {request.method} {request.path}")
        route, params = found
        user = self.world.authenticate(request.bearer())
        if user is None:
            self.quota.count("(unauthenticated)", route.name, error=True)
            return _unauthenticated()
        denied = _check_owner(user, route, params)
        if denied is not None:
            self.quota.count(user.email, route.name, error=True)
            return denied
        refused = self._refuse(user.email, route)
        if refused is not None:
            return refused
        with self.world.lock:
            reply = route.handler(user, request, params)
        if reply.status >= 400:
            self.quota.count_error(user.email, route.name)
        return reply

    def note_batch(self, outer: ApiRequest, size: int) -> None:
        """Record a batch's size for its user (the stats endpoint lists them in order)."""
        user = self.world.authenticate(outer.bearer())
        self.quota.note_batch(user.email if user else "(unauthenticated)", size)

    def _refuse(self, email: str, route: Route) -> Reply | None:
        fault = self.faults.decide()
        if fault in ("outage", "error"):
            self.quota.count(email, route.name, error=True)
            return google_error(503, "backendError", "The service is currently unavailable.")
        if fault == "throttle":
            self.quota.count(email, route.name, error=True)
            return _throttled(1.0)
        wait = self.quota.charge(email, route.api, route.name, COSTS[route.name])
        return None if wait is None else _throttled(wait)


def _match(request: ApiRequest) -> tuple[Route, dict[str, str]] | None:
    for route in ROUTES:
        m = route.pattern.fullmatch(request.path)
        if m and request.method == route.method:
            return route, m.groupdict()
    return None


def _check_owner(user: UserState, route: Route, params: dict[str, str]) -> Reply | None:
    if "user" in params and params["user"] not in ("me", user.email):
        return google_error(403, "forbidden", f"Delegation denied for {user.email}")
    if "calendar" in params and params["calendar"] not in ("primary", user.email):
        return not_found("Not Found")
    return None


def _unauthenticated() -> Reply:
    message = "Request had invalid authentication credentials. Expected OAuth 2 access token."
    reply = google_error(401, "authError", message)
    reply.headers["WWW-Authenticate"] = 'Bearer realm="https://accounts.google.com/"'
    return reply


def _throttled(wait: float) -> Reply:
    headers = {"Retry-After": str(int(wait))}
    message = "User-rate limit exceeded. Retry after the time in Retry-After."
    return google_error(
        429, "userRateLimitExceeded", message, domain="usageLimits", headers=headers
    )
