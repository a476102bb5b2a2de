"""Operations: workers, breakers, the scheduler's trigger, health and readiness."""

from __future__ import annotations

import dataclasses
from typing import Any

import redis
from fastapi import APIRouter
from fastapi.responses import JSONResponse

from jobsys.errors import StoreUnavailableError
from jobsys.interfaces.api import schemas as s
from jobsys.interfaces.api.auth import Admin, RuntimeDep
from jobsys.interfaces.api.errors import ApiError
from jobsys.store import migrate, roles

router = APIRouter(tags=["operations"], responses=s.ERRORS)


@router.post("/api/jobs/runner", response_model=s.TickOut)
def runner(caller: Admin, rt: RuntimeDep) -> s.TickOut:
    """One tick of the periodic-sync scheduler (the trigger a cron calls): what it enqueued."""
    from jobsys.pipeline.schedule import tick

    done = tick(rt).as_dict()
    rt.store.audit(caller.actor, "schedule.ticked", detail={"enqueued": done["enqueued"]})
    return s.TickOut.model_validate(done)


@router.get("/api/workers", response_model=list[s.WorkerOut])
def workers(caller: Admin, rt: RuntimeDep) -> list[s.WorkerOut]:
    """Worker nodes as PostgreSQL records them (Flower shows them live)."""
    return [s.WorkerOut.model_validate(dataclasses.asdict(w)) for w in rt.store.list_workers()]


@router.get("/api/breakers")
def breakers(caller: Admin, rt: RuntimeDep) -> list[dict[str, Any]]:
    """Every circuit breaker's shared state and its last transitions."""
    from jobsys.guards.breaker import breaker_states

    client = redis.Redis.from_url(rt.urls.broker, socket_connect_timeout=5)
    try:
        found = breaker_states(client)
    except redis.RedisError as e:
        raise ApiError(503, "unavailable", f"cannot read breakers from Redis: {e}") from e
    finally:
        client.close()
    return [_jsonable(dataclasses.asdict(b)) for b in found]


# Health probes answer without a token; their only statuses are their own.
health = APIRouter(tags=["health"])


@health.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@health.get(
    "/readyz",
    response_model=s.ReadyOut,
    responses={503: {"model": s.ReadyOut, "description": "a check failed (named)"}},
)
def readyz(rt: RuntimeDep) -> JSONResponse:
    """PostgreSQL and Redis reachable, the schema at the newest migration, the roles made."""
    checks = {"postgres": _postgres(rt), "redis": _redis(rt)}
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse({"ready": ready, "checks": checks}, 200 if ready else 503)


def _postgres(rt: RuntimeDep) -> str:
    try:
        at = migrate.current(rt.postgres)
    except StoreUnavailableError:
        return "unreachable"
    if at != migrate.head():
        return "schema not at the newest migration: jobsys db upgrade"
    return "roles missing: jobsys db roles" if roles.missing(rt.postgres) else "ok"


def _redis(rt: RuntimeDep) -> str:
    client = redis.Redis.from_url(rt.urls.broker, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
        return "ok"
    except redis.RedisError:
        return "unreachable"
    finally:
        client.close()


def _jsonable(data: dict[str, Any]) -> dict[str, Any]:
    opened = data.get("opened_at")
    return {**data, "opened_at": opened.isoformat() if opened else None}
