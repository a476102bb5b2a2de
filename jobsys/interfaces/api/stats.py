"""``GET /api/stats``: business metrics; a user token's figures are its own user's only."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from jobsys.engine.stats import report
from jobsys.interfaces.api import schemas as s
from jobsys.interfaces.api.auth import Caller, RuntimeDep, api_store
from jobsys.interfaces.api.errors import ApiError
from jobsys.interfaces.clitypes import parse_duration

router = APIRouter(tags=["stats"], responses=s.ERRORS)


class UserStatsOut(BaseModel):
    user_id: str
    runs: int
    success_rate: float | None
    p95_duration_s: float | None
    freshness_s: float | None
    fresh: bool


class KindStatsOut(BaseModel):
    kind: str
    jobs: int
    attempts: int
    success_rate: float | None
    cpu_s_per_job: float | None
    wall_s_per_job: float | None
    requests_per_job: float | None
    units_per_job: float | None
    deadline_s: float | None
    sla_compliance: float | None


class FleetStatsOut(BaseModel):
    jobs: int
    jobs_per_second: float
    start_latency_p95_s: dict[str, float | None]
    dead_letter_rate: dict[str, float]


class StatsOut(BaseModel):
    window_s: float
    freshness_slo_s: float
    users: list[UserStatsOut]
    kinds: list[KindStatsOut]
    fleet: FleetStatsOut


@router.get("/api/stats", response_model=StatsOut)
def stats(
    caller: Caller,
    rt: RuntimeDep,
    since: str = "24h",
    user: s.Name | None = None,
    kind: s.Name | None = None,
) -> StatsOut:
    """Per user, per kind and fleet figures over the last ``since`` (30m, 24h, 7d).

    A user token reads under row-level security as its own user: naming another
    user gives empty figures, as for a user without any history.
    """
    window = _window(since)
    # Row-level security keeps other users' rows out: naming one gives empty figures.
    scope = None if caller.admin else caller.user_id
    if scope is not None and user is None:
        # The policy's filter is no constant to the planner: name the user too, so the
        # statements read the user's index (0.3 s against 4 ms over 10M attempts).
        user = scope
    store = api_store(caller, rt)
    found = report(rt, window=window, user_id=user, kind=kind, store=store, scope=scope)
    return StatsOut.model_validate(found.as_dict())


def _window(since: str) -> float:
    try:
        window = parse_duration(since, unit_required=True)
    except ValueError as e:
        raise ApiError(422, "invalid_option", f"since: {e}", "since") from None
    if not window > 0:
        raise ApiError(422, "invalid_option", f"since: {since!r} must be more than 0", "since")
    return window
