"""``/api/dlq``: dead letters, and retrying them one by one or by filter."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from jobsys.engine import operations
from jobsys.errors import InvalidTransitionError
from jobsys.interfaces.api import schemas as s
from jobsys.interfaces.api.auth import Caller, RuntimeDep, listing, own, sees, writes
from jobsys.interfaces.api.errors import ApiError
from jobsys.store.listing import LetterFilter
from jobsys.store.records import DeadLetter

router = APIRouter(prefix="/api/dlq", tags=["dead letters"], responses=s.ERRORS)


@router.get("", response_model=s.Page[s.LetterOut])
def list_letters(
    caller: Caller,
    rt: RuntimeDep,
    kind: s.Name | None = None,
    user: s.Name | None = None,
    reason: s.Name | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    cursor: str | None = None,
) -> s.Page[s.LetterOut]:
    """Dead letters, newest first (without tracebacks: ask for one letter for it)."""
    if user is not None and not sees(caller, user):
        return s.Page(items=[], next_cursor=None)
    where = LetterFilter(user_id=user if caller.admin else caller.user_id, kind=kind, reason=reason)
    found = listing(caller, rt).letters(where, limit=limit, after=s.decode_cursor(cursor))
    return s.page_of(found, limit, lambda d: letter_out(d, traceback=False))


@router.get("/{letter_id}", response_model=s.LetterOut)
def get_letter(letter_id: s.LetterId, caller: Caller, rt: RuntimeDep) -> s.LetterOut:
    """One dead letter with its full context: payload, every attempt, the traceback."""
    return letter_out(_letter(caller, rt, letter_id).as_dict(), traceback=True)


@router.post("/retry", response_model=s.BulkRetryOut)
def retry_many(body: s.BulkRetryBody, caller: Caller, rt: RuntimeDep) -> s.BulkRetryOut:
    """Retry every unretried dead letter matching the filter (up to ``limit``)."""
    if body.user_id is not None and not sees(caller, body.user_id):
        return s.BulkRetryOut(retried=[], skipped=[])
    user = body.user_id if caller.admin else caller.user_id
    where = LetterFilter(user_id=user, kind=body.kind, reason=body.reason)
    found = listing(caller, rt).letters(where, limit=body.limit, after=None, unretried=True)
    retried: list[s.RetryOut] = []
    skipped: list[dict[str, Any]] = []
    with writes(caller, rt):  # a user token's revivals commit together, then are published
        for letter in found:
            try:
                job_id = operations.retry_dead_letter(rt, letter["id"], actor=caller.actor)
            except InvalidTransitionError as e:  # retried meanwhile by someone else
                skipped.append({"letter_id": letter["id"], "message": str(e)})
                continue
            retried.append(s.RetryOut(letter_id=letter["id"], job_id=str(job_id)))
    return s.BulkRetryOut(retried=retried, skipped=skipped)


@router.post("/{letter_id}/retry", response_model=s.RetryOut)
def retry_one(letter_id: s.LetterId, caller: Caller, rt: RuntimeDep) -> s.RetryOut:
    """Give the dead letter's job a fresh set of attempts."""
    _letter(caller, rt, letter_id)
    with writes(caller, rt):
        job_id = operations.retry_dead_letter(rt, letter_id, actor=caller.actor)
    return s.RetryOut(letter_id=letter_id, job_id=str(job_id))


def _letter(caller: Caller, rt: RuntimeDep, letter_id: int) -> DeadLetter:
    letter = listing(caller, rt).letter(letter_id)
    if letter is None:
        raise ApiError(404, "not_found", f"no dead letter with id {letter_id}")
    own(caller, letter.user_id, "dead letter", letter_id)
    return letter


def letter_out(letter: dict[str, Any], *, traceback: bool) -> s.LetterOut:
    fields = {k: letter[k] for k in s.LetterOut.model_fields if k in letter}
    if not traceback:
        fields.pop("traceback", None)
    return s.LetterOut.model_validate({**fields, "job_id": str(letter["job_id"])})
