"""Repairing pipeline runs whose canvas broke.

A chord's counter lives in Redis and a retry published by the sweeper carries
no canvas context, so a run can stall with every member finished and its next
step never sent. Each sweep looks at runs still ``running``: a dead member
fails the run; a run whose jobs have all finished and stayed quiet for
``JOBSYS_PIPELINE_REPAIR_AFTER`` seconds gets its missing steps sent again.

A run already under way when the broker lost everything (a flush, a restart
without persistence: a new broker epoch) has lost its chord's counter if a
member had finished by then, so its next step is not coming: it is resumed
after ``AFTER_RESET`` quiet seconds instead. A run whose counter survived gets
its next step within milliseconds of its last member, so the short wait does
not race it in practice; if it did, the steps are idempotent.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from celery import chain

from jobsys.engine.hooks import Hook
from jobsys.engine.runtime import Runtime
from jobsys.engine.sweeper import broker_epoch
from jobsys.pipeline.schedule import sync_job
from jobsys.store.status import RunStatus
from jobsys.store.sync import SyncStore

log = structlog.get_logger("jobsys.pipeline")
# Quiet seconds before resuming a run that was under way when the broker was reset.
AFTER_RESET = 3.0
_LIVE = {"queued", "running"}


class RunRepair(Hook):
    """The sweeper's pass over the pipeline's runs (registered by ``jobsys.tasks``)."""

    def on_sweep(self, runtime: Runtime) -> int:
        return repair_runs(runtime)


def repair_runs(rt: Runtime) -> int:
    """One pass over running runs; returns how many it failed or restarted."""
    quiet = rt.settings.pipeline_repair_after
    epoch = broker_epoch(rt)
    sync = SyncStore(rt.postgres)
    fixed = 0
    # A dead step fails its run at the next sweep; only resuming waits for quiet.
    for run in sync.running_runs(idle_for=min(quiet, AFTER_RESET)):
        jobs = sync.jobs_of_run(run["user_id"], run["id"])
        if any(j["status"] == "dead" for j in jobs):
            error = f"dead step(s): {_dead_steps(jobs)}"
            sync.finish_run(
                run["user_id"], run["id"], RunStatus.FAILED, error, follow_up=sync_job(rt)
            )
            fixed += 1
        elif _stalled(jobs, _quiet_for(run, quiet, epoch)):
            _resume(rt, run, jobs)
            fixed += 1
    return fixed


def _quiet_for(run: dict[str, Any], quiet: float, epoch: datetime | None) -> float:
    if epoch is not None and run["created_at"] < epoch:
        return min(quiet, AFTER_RESET)
    return quiet


def _dead_steps(jobs: list[dict[str, Any]]) -> str:
    """Each dead step's kind with its reason: ``sync.ingest_gmail (postponed_too_long)``."""
    dead = sorted({(j["kind"], j["reason"] or "?") for j in jobs if j["status"] == "dead"})
    return ", ".join(f"{kind} ({reason})" for kind, reason in dead)


def _stalled(jobs: list[dict[str, Any]], quiet: float) -> bool:
    if any(j["status"] in _LIVE for j in jobs):
        return False
    last = max((j["finished_at"] for j in jobs if j["finished_at"]), default=None)
    return last is None or last < datetime.now(UTC) - timedelta(seconds=quiet)


def _resume(rt: Runtime, run: dict[str, Any], jobs: list[dict[str, Any]]) -> None:
    tasks = rt.app.tasks
    done = {j["kind"] for j in jobs if j["status"] == "succeeded"}
    user, step = run["user_id"], {"run_id": str(run["id"]), "full": run["full_sync"]}
    missing = [k for k in ("sync.ingest_gmail", "sync.ingest_calendar") if k not in done]
    if missing:
        steps = [tasks[k].si(user, **step) for k in missing]
        steps.append(tasks["sync.plan"].si(user, **step))
    elif "sync.extract" not in done:
        steps = [tasks["sync.plan"].si(user, **step)]
    else:
        steps = []
    steps.append(tasks["sync.process"].si(user, **step))
    log.warning(
        "pipeline.resume", run_id=str(run["id"]), user_id=user, steps=[s.task for s in steps]
    )
    chain(*steps).apply_async()
