"""``jobsys stats``: business metrics per user, per kind and for the fleet."""

from __future__ import annotations

from typing import Any

import click

from jobsys.errors import UnknownKindError
from jobsys.interfaces.cli_jobs import JSON_HELP
from jobsys.interfaces.clictx import runtime_of
from jobsys.interfaces.clitypes import Duration
from jobsys.store.stats import Stats


class Window(Duration):
    """A duration with a unit, more than zero: the span ``jobsys stats`` reports."""

    def convert(self, value: Any, param: Any, ctx: Any) -> float:
        seconds = super().convert(value, param, ctx)
        if not seconds > 0:
            self.fail(f"duration {value!r} must be more than 0 (e.g. 30m, 24h, 7d)", param, ctx)
        return seconds


@click.command()
@click.option(
    "--since",
    "window",
    type=Window(unit_required=True),
    default="24h",
    show_default=True,
    help="the window reported, back from now: 30m, 24h, 7d (over a day, the p95 and SLA"
    " compliance are estimated from hourly roll-ups)",
)
@click.option("--user", "user_id", default=None, help="one user's figures only")
@click.option("--kind", default=None, help="one job kind's figures only")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
def stats(window: float, user_id: str | None, kind: str | None, as_json: bool) -> None:
    """Runs, success rates, freshness, cost per job, SLA compliance and fleet figures."""
    from jobsys.engine.stats import report
    from jobsys.interfaces import render

    rt = runtime_of()
    rt.load_imports()  # the kinds' deadlines, and the names --kind may take
    try:
        found = report(rt, window=window, user_id=user_id, kind=kind)
    except UnknownKindError as e:
        raise click.BadParameter(str(e), param_hint="--kind") from None
    if as_json:
        render.emit_json(found.as_dict())
        return
    _tables(found)


def _tables(found: Stats) -> None:
    from jobsys.interfaces import render

    slo = f"freshness SLO {found.freshness_slo_s:g} s"
    users = [
        (u.user_id, u.runs, _pct(u.success_rate), _s(u.p95_duration_s), _s(u.freshness_s),
         "yes" if u.fresh else "STALE")
        for u in found.users
    ]  # fmt: skip
    render.table(
        f"users ({slo})",
        ["user", "runs", "success", "p95 sync", "freshness", "fresh"],
        users,
    )
    kinds = [
        (k.kind, k.jobs, k.attempts, _pct(k.success_rate), _s(k.cpu_s_per_job),
         _s(k.wall_s_per_job), _n(k.requests_per_job), _n(k.units_per_job),
         _s(k.deadline_s), _pct(k.sla_compliance))
        for k in found.kinds
    ]  # fmt: skip
    columns = ["kind", "jobs", "attempts", "success", "cpu/job", "wall/job", "requests/job"]
    render.table("kinds", [*columns, "units/job", "deadline", "SLA"], kinds)
    fleet = found.fleet
    rows: list[tuple[str, str]] = [
        ("jobs ended", str(fleet.jobs)),
        ("throughput", f"{fleet.jobs_per_second:.3f} jobs/s"),
    ]
    rows += [(f"start latency p95 ({b})", _s(v)) for b, v in fleet.start_latency_p95_s.items()]
    rows += [(f"dead-letter rate ({r})", _pct(v)) for r, v in fleet.dead_letter_rate.items()]
    render.table(f"fleet, last {found.window_s:g} s", ["figure", "value"], rows)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f} s"


def _n(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"
