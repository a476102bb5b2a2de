"""What Google calls cost: the Prometheus counters, and the running attempt's own tally.

Counted where a request reaches Google (inside the guard, after quota was
spent and the breakers admitted it): a batch of n calls is n requests. Quota
units follow the emulator's and Google's bookkeeping: an answer refused for
quota (429) or for credentials (401/403), a server fault (5xx) or no answer at
all costs no units; every other answer costs the method's units.

The tally is a context variable, so each thread of a thread pool and each
prefork child counts its own attempt; :func:`tallying` opens one around a
handler (the engine's meter does) and calls outside any tally are counted in
Prometheus only. No label names a user.
"""

from __future__ import annotations

import contextvars
import dataclasses
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, TypeVar

from prometheus_client import Counter

from jobsys.connectors.google.costs import COSTS, api_of

if TYPE_CHECKING:  # the engine imports this module; the Google client stays unloaded
    from jobsys.connectors.google.errors import GoogleError

T = TypeVar("T")
NO_ANSWER = "none"  # the status label of a call that got no HTTP answer

REQUESTS = Counter(
    "jobsys_google_requests",
    "Google API requests made (a batch's parts each count), by API, method and HTTP status",
    ["api", "method", "status"],
)
QUOTA_UNITS = Counter(
    "jobsys_quota_units", "Google quota units spent by the requests made, by API", ["api"]
)


@dataclasses.dataclass
class Tally:
    """Google requests made and quota units spent during one attempt."""

    requests: int = 0
    units: int = 0


_current: contextvars.ContextVar[Tally | None] = contextvars.ContextVar(
    "jobsys_google_tally", default=None
)


def tallying() -> tuple[Tally, Callable[[], None]]:
    """Start counting this context's calls into a new tally; returns it and its stop."""
    tally = Tally()
    token = _current.set(tally)
    return tally, lambda: _current.reset(token)


def metered(
    method: str,
    count: int,
    fn: Callable[[], T],
    part_errors: Callable[[T], Iterable[GoogleError]] | None = None,
) -> Callable[[], T]:
    """``fn`` (``count`` calls of ``method`` in one HTTP request), counted when it runs."""

    def call() -> T:
        try:
            result = fn()
        except Exception as e:  # classified by the caller's fn: a GoogleError
            record(method, [_status(e)] * count)
            raise
        failed = [_status(e) for e in part_errors(result)] if part_errors else []
        record(method, failed + ["200"] * (count - len(failed)))
        return result

    return call


def record(method: str, statuses: list[str]) -> None:
    """Count one request of ``method`` per answer status given."""
    api, charged = api_of(method), 0
    for status in statuses:
        REQUESTS.labels(api, method, status).inc()
        charged += int(_charged(status))
    units = COSTS.get(method, 0) * charged
    if units:
        QUOTA_UNITS.labels(api).inc(units)
    tally = _current.get()
    if tally is not None:
        tally.requests += len(statuses)
        tally.units += units


def _status(error: BaseException) -> str:
    status = getattr(error, "status", None)
    return str(status) if isinstance(status, int) else NO_ANSWER


def _charged(status: str) -> bool:
    if status == NO_ANSWER:
        return False
    code = int(status)
    return code not in (401, 403, 429) and code < 500
