"""``/api/users/{id}/sync``, ``/api/users/{id}/runs``, ``/api/runs/{id}``: the sync pipeline."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query

from jobsys.interfaces.api import schemas as s
from jobsys.interfaces.api.auth import Caller, RuntimeDep, listing, own, writes
from jobsys.interfaces.api.errors import ApiError
from jobsys.store.users import UserStore

router = APIRouter(tags=["sync"], responses=s.ERRORS)


@router.post("/api/users/{user}/sync", status_code=202, response_model=s.SyncOut)
def start_sync(
    user: s.Name,
    caller: Caller,
    rt: RuntimeDep,
    body: Annotated[s.SyncBody | None, Body()] = None,
) -> s.SyncOut:
    """Ask for a sync of the user (by id or e-mail); requests made meanwhile join it."""
    from jobsys.tasks import sync_user

    found = UserStore(rt.postgres).get(_user(caller, rt, user))
    if found.paused:
        raise ApiError(409, "paused", f"user {found.id} is paused: {found.paused_reason}")
    full = body.full if body else False
    with writes(caller, rt):  # the request (joined or new) and its audit event commit together
        result = sync_user.delay(found.id, full=full)
        rt.store.audit(caller.actor, "sync.requested", user_id=found.id, detail={"full": full})
    running = listing(caller, rt).running_run(found.id)
    return s.SyncOut(job_id=result.id, user_id=found.id, full=full, running_run=running)


@router.get("/api/users/{user}/runs", response_model=s.Page[s.RunOut])
def list_runs(
    user: s.Name,
    caller: Caller,
    rt: RuntimeDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
    cursor: str | None = None,
) -> s.Page[s.RunOut]:
    """The user's pipeline runs, newest first."""
    runs = listing(caller, rt).runs(
        _user(caller, rt, user), limit=limit, after=s.decode_cursor(cursor)
    )
    return s.page_of(runs, limit, run_out)


@router.get("/api/runs/{run_id}", response_model=s.RunOut)
def get_run(run_id: uuid.UUID, caller: Caller, rt: RuntimeDep) -> s.RunOut:
    """One run: its steps (counts and timings) and the state of each of its jobs."""
    reads = listing(caller, rt)
    run = reads.run(run_id)
    if run is None:
        raise ApiError(404, "not_found", f"no run with id {run_id}")
    own(caller, run["user_id"], "run", run_id)
    jobs = reads.jobs_of_run(run["user_id"], run_id)
    return run_out(run, jobs=[_jsonable(j) for j in jobs])


def _user(caller: Caller, rt: RuntimeDep, ident: str) -> str:
    """The id of the user the caller named (by id or e-mail) and may see."""
    found = listing(caller, rt).user(ident)
    if found is None:
        raise ApiError(404, "not_found", f"no user with id {ident}")
    own(caller, found, "user", ident)
    return found


def run_out(run: dict[str, Any], jobs: list[dict[str, Any]] | None = None) -> s.RunOut:
    fields = {k: run[k] for k in s.RunOut.model_fields if k in run}
    return s.RunOut.model_validate({**fields, "id": str(run["id"]), "jobs": jobs})


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: _text(v) for k, v in row.items()}


def _text(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return value.isoformat() if hasattr(value, "isoformat") else str(value)
