"""The pipeline's job kinds: thin adapters from jobs to the phases and the store."""

from __future__ import annotations

import uuid
from typing import Any

from jobsys.config import Settings
from jobsys.engine import runtime
from jobsys.engine.app import app
from jobsys.engine.context import JobContext
from jobsys.engine.runtime import Runtime
from jobsys.engine.task import job
from jobsys.errors import JobNotFoundError, OptionError
from jobsys.pipeline import canvas, ingest, transform
from jobsys.pipeline.google import parking_on_auth_failure, session
from jobsys.pipeline.guarding import ingesting
from jobsys.pipeline.payloads import Batch, Step, SyncRequest
from jobsys.pipeline.schedule import sync_job
from jobsys.store.status import RunStatus
from jobsys.store.sync import SyncStore
from jobsys.store.users import UserStore


def _sync(ctx: JobContext) -> SyncStore:
    return SyncStore(ctx.runtime.postgres)


def _email(ctx: JobContext) -> str:
    return UserStore(ctx.runtime.postgres).get(ctx.user_id).email


def _canonical_user(rt: Runtime, ident: str) -> str:
    """The user's id, given their id or e-mail: one user has one run key and one waiting sync.

    Raises:
        OptionError: no user has that id or e-mail; nothing is enqueued.
    """
    try:
        return UserStore(rt.postgres).get(ident).id
    except JobNotFoundError:
        raise OptionError("user_id", ident, "must name a user (by id or e-mail)") from None


def _ingestions_per_user(settings: Settings) -> int:
    return settings.ingest_user_concurrency


# A user's Gmail and Calendar ingestions share one key: at most
# JOBSYS_INGEST_USER_CONCURRENCY of them run (or wait in the broker) at once; the
# others wait in the backlog, their place in the run's chord kept in their rows.
INGEST_KEY = "ingest:{user_id}"


def _either_full(waiting: dict[str, Any], requested: dict[str, Any]) -> dict[str, Any]:
    return {"full": bool(waiting.get("full")) or bool(requested.get("full"))}


@job(
    kind="sync.user",
    payload=SyncRequest,
    queue="default",
    max_attempts=5,
    coalesce=_either_full,
    canonical_user=_canonical_user,
)
def sync_user(ctx: JobContext, payload: SyncRequest) -> dict[str, Any]:
    """Start one pipeline run for the user; while one runs, ask for one run after it.

    Requests while a sync waits in the backlog join it (a full sync wins).
    """
    user = UserStore(ctx.runtime.postgres).get(ctx.user_id)  # an unknown user fails here, clearly
    if user.paused:
        # Parked (e.g. revoked token): syncing would only dead-letter its steps again.
        return {"run_id": None, "started": False, "paused": user.paused_reason}
    # By id, whatever name the job was enqueued under: one user, one running run.
    run_id, started = _sync(ctx).start_run(user.id, full=payload.full)
    if started:
        tasks = ctx.runtime.app.tasks
        canvas.sync_canvas(tasks, user.id, run_id, full=payload.full).apply_async()
    return {"run_id": str(run_id), "started": started, "follow_up": not started}


@job(
    kind="sync.ingest_gmail",
    payload=Step,
    queue="ingest",
    results=True,
    internal=True,
    max_attempts=8,
    concurrency_key=INGEST_KEY,
    concurrency=_ingestions_per_user,
)
def ingest_gmail(ctx: JobContext, payload: Step) -> dict[str, Any]:
    rt = ctx.runtime
    with ingesting(rt, ctx.job_id), parking_on_auth_failure(rt, ctx.user_id):
        google = session(rt, ctx.user_id)
        done = ingest.sync_gmail(_sync(ctx), google, ctx.user_id, full=payload.full)
    _sync(ctx).step(ctx.user_id, payload.run_id, "ingest_gmail", **done)
    return done


@job(
    kind="sync.ingest_calendar",
    payload=Step,
    queue="ingest",
    results=True,
    internal=True,
    max_attempts=8,
    concurrency_key=INGEST_KEY,
    concurrency=_ingestions_per_user,
)
def ingest_calendar(ctx: JobContext, payload: Step) -> dict[str, Any]:
    rt = ctx.runtime
    with ingesting(rt, ctx.job_id), parking_on_auth_failure(rt, ctx.user_id):
        google = session(rt, ctx.user_id)
        done = ingest.sync_calendar(_sync(ctx), google, ctx.user_id, full=payload.full)
    _sync(ctx).step(ctx.user_id, payload.run_id, "ingest_calendar", **done)
    return done


@job(kind="sync.plan", payload=Step, queue="cpu", results=True, internal=True)
def plan(ctx: JobContext, payload: Step) -> None:
    """Fan out over what ingestion stored: replaced by chord(normalize..., extract)."""
    sync = _sync(ctx)
    message_ids, event_ids = sync.pending(ctx.user_id)
    parts = canvas.batches(message_ids, event_ids)
    sync.step(ctx.user_id, payload.run_id, "normalize", batches=len(parts), done=0)
    mark_sig = mark.si(str(payload.run_id), ctx.user_id)
    tasks = ctx.runtime.app.tasks
    ctx.replace(canvas.fan_out(tasks, ctx.user_id, payload.run_id, parts, mark_sig))


@job(kind="sync.normalize", payload=Batch, queue="cpu", results=True, internal=True)
def normalize(ctx: JobContext, payload: Batch) -> dict[str, int]:
    sync = _sync(ctx)
    counts = transform.normalize_batch(sync, ctx.user_id, payload.message_ids, payload.event_ids)
    sync.count_step(ctx.user_id, payload.run_id, "normalize", "done", 1)
    return counts


@job(kind="sync.extract", payload=Step, queue="cpu", results=True, internal=True)
def extract(ctx: JobContext, payload: Step) -> dict[str, int]:
    done = transform.extract_user(_sync(ctx), ctx.user_id, _email(ctx))
    _sync(ctx).step(ctx.user_id, payload.run_id, "extract", **done)
    return done


@job(kind="sync.process", payload=Step, queue="cpu", results=True, internal=True)
def process(ctx: JobContext, payload: Step) -> dict[str, int]:
    sync = _sync(ctx)
    done = transform.process_user(sync, ctx.user_id, _email(ctx))
    sync.step(ctx.user_id, payload.run_id, "process", **done)
    sync.finish_run(
        ctx.user_id, payload.run_id, RunStatus.SUCCEEDED, follow_up=sync_job(ctx.runtime)
    )
    return done


@app.task(name="jobsys.pipeline.mark", ignore_result=True)
def mark(run_id: str, user_id: str) -> None:
    """End of the fan-out; holds the planner's task id (see ``canvas``)."""
    SyncStore(runtime.current().postgres).step(user_id, uuid.UUID(run_id), "fan_out", finished=True)
