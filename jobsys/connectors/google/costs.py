"""What each Google method costs against the per-user and per-project quotas.

Gmail charges documented quota units per method; Calendar counts requests.
The emulator charges the same table, and jobsys's rate limiter spends it.
"""

from __future__ import annotations

GMAIL_COSTS: dict[str, int] = {
    "gmail.users.getProfile": 1,
    "gmail.users.labels.list": 1,
    "gmail.users.messages.list": 5,
    "gmail.users.messages.get": 5,
    "gmail.users.history.list": 2,
}
# Push setup: a watch a day per user, so it need not fit the sync's smallest burst.
GMAIL_PUSH_COSTS: dict[str, int] = {"gmail.users.watch": 100, "gmail.users.stop": 50}
CALENDAR_COSTS: dict[str, int] = {"calendar.events.list": 1}
COSTS: dict[str, int] = {**GMAIL_COSTS, **GMAIL_PUSH_COSTS, **CALENDAR_COSTS}


def api_of(method: str) -> str:
    """The API a method id belongs to: ``gmail.users.getProfile`` -> ``gmail``."""
    return method.partition(".")[0]


def units(method: str, count: int = 1) -> int:
    """Quota units of ``count`` calls of ``method``.

    Raises:
        KeyError: a method the table does not know, so that no call goes uncharged.
    """
    return COSTS[method] * count
