"""``jobsys alerts``: open incidents, then those opened or resolved recently."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import click

from jobsys.interfaces.cli_jobs import JSON_HELP
from jobsys.interfaces.clictx import runtime_of
from jobsys.interfaces.clitypes import Duration

if TYPE_CHECKING:
    from jobsys.store.alerts import Alert

COLUMNS = ["id", "state", "signal", "subject", "fired at", "peak", "baseline", "threshold"]
COLUMNS += ["opened", "resolved", "notified"]


@click.command()
@click.option(
    "--since",
    type=Duration(),
    default="24h",
    show_default=True,
    help="also list incidents opened or resolved within this long (e.g. 30m, 7d)",
)
@click.option(
    "--limit", type=click.IntRange(1, 10_000), default=100, show_default=True, help="most shown"
)
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
def alerts(since: float, limit: int, as_json: bool) -> None:
    """List open alerts, then recent ones (README "Alerts")."""
    from jobsys.interfaces import render
    from jobsys.store.alerts import AlertStore

    start = datetime.now(UTC) - timedelta(seconds=since)
    found = AlertStore(runtime_of().postgres).recent(since=start, limit=limit)
    if as_json:
        render.emit_json([a.as_dict() for a in found])
        return
    rows = [
        (
            a.id,
            a.state,
            a.signal,
            a.subject,
            _num(a.value),
            _num(a.peak),
            _num(a.baseline),
            _num(a.threshold),
            _at(a.opened_at),
            _at(a.resolved_at),
            _notified(a),
        )
        for a in found
    ]
    render.table("alerts", COLUMNS, rows)


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.4g}"


def _at(value: datetime | None) -> str:
    return "" if value is None else value.astimezone(UTC).isoformat(timespec="seconds")


def _notified(alert: Alert) -> str:
    if alert.unsent() is None:
        return "yes"
    return f"pending ({alert.send_error})" if alert.send_error else "pending"
