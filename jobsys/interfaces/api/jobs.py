"""``/api/jobs``: enqueue, list, show and cancel jobs."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from jobsys.engine import operations
from jobsys.engine.enqueue import enqueue, spec_of
from jobsys.interfaces.api import schemas as s
from jobsys.interfaces.api.auth import Caller, RuntimeDep, listing, own, sees, writes
from jobsys.interfaces.api.errors import ApiError
from jobsys.store import Job, Status
from jobsys.store.listing import JobFilter

router = APIRouter(prefix="/api/jobs", tags=["jobs"], responses=s.ERRORS)

Limit = Annotated[int, Query(ge=1, le=1000, description="rows per page")]


@router.post("", status_code=201, response_model=s.Created)
def create_job(body: s.NewJobBody, caller: Caller, rt: RuntimeDep) -> s.Created:
    """Create a job (a user token's jobs are for its own user)."""
    user_id = _owner(caller, body.user_id)
    _allowed(caller, rt, body)
    with writes(caller, rt):  # the job and its audit event commit together
        result = enqueue(
            body.kind,
            user_id=user_id,
            payload=body.payload,
            priority=body.priority,
            unique_key=body.unique_key,
            delay=body.delay,
            runtime=rt,
        )
        rt.store.audit(caller.actor, "job.created", job_id=uuid.UUID(result.id), user_id=user_id)
    return s.Created(id=result.id, status=Status.QUEUED.value)


@router.get("", response_model=s.Page[s.JobOut])
def list_jobs(
    caller: Caller,
    rt: RuntimeDep,
    user: s.Name | None = None,
    status: Status | None = None,
    kind: s.Name | None = None,
    limit: Limit = 50,
    cursor: str | None = None,
) -> s.Page[s.JobOut]:
    """Jobs, newest first; a user token lists its own user's only."""
    if user is not None and not sees(caller, user):
        return s.Page(items=[], next_cursor=None)
    where = JobFilter(user_id=user if caller.admin else caller.user_id, status=status, kind=kind)
    found = listing(caller, rt).jobs(where, limit=limit, after=s.decode_cursor(cursor))
    return s.page_of(found, limit, job_out)


@router.get("/{job_id}", response_model=s.JobOut)
def get_job(job_id: uuid.UUID, caller: Caller, rt: RuntimeDep) -> s.JobOut:
    """One job, with its attempts' errors and its result."""
    return job_out(_job(caller, rt, job_id))


@router.post("/{job_id}/cancel", response_model=s.CancelOut)
def cancel_job(job_id: uuid.UUID, caller: Caller, rt: RuntimeDep) -> s.CancelOut:
    """Cancel a queued job, or ask a running one to stop."""
    _job(caller, rt, job_id)
    with writes(caller, rt):
        status = operations.cancel(rt, job_id, actor=caller.actor)
    shown = "cancelled" if status is Status.CANCELLED else "cancel_requested"
    return s.CancelOut(id=str(job_id), status=shown)


def _owner(caller: Caller, asked: str | None) -> str:
    if caller.admin:
        if asked is None:
            raise ApiError(422, "invalid_request", "an admin token must name user_id", "user_id")
        return asked
    if asked is not None and asked != caller.user_id:
        raise ApiError(403, "forbidden", "a user token enqueues for its own user", "user_id")
    assert caller.user_id is not None
    return caller.user_id


# Urgent priorities go ahead of every user's jobs ("Fair scheduling"): an operator's.
URGENT = 8


def _allowed(caller: Caller, rt: RuntimeDep, body: s.NewJobBody) -> None:
    if spec_of(rt, body.kind).internal:
        raise ApiError(422, "invalid_request", f"{body.kind!r} is a pipeline step", "kind")
    if not caller.admin and body.priority is not None and body.priority >= URGENT:
        message = f"priority {URGENT}-9 (urgent) needs an admin token; a user token gives 0-7"
        raise ApiError(422, "invalid_request", message, "priority")


def _job(caller: Caller, rt: RuntimeDep, job_id: uuid.UUID) -> Job:
    job = listing(caller, rt).job(job_id)
    if job is None:
        raise ApiError(404, "not_found", f"no job with id {job_id}")
    own(caller, job.user_id, "job", job_id)  # the policies already hid it; and the code agrees
    return job


def job_out(job: Job) -> s.JobOut:
    data = job.as_dict()
    return s.JobOut.model_validate({k: data[k] for k in s.JobOut.model_fields})
