"""The HTTP API: ``create_app(runtime)``, served by ``jobsys api`` under uvicorn."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import anyio.to_thread
from fastapi import FastAPI

from jobsys.engine.runtime import Runtime
from jobsys.interfaces import tracing
from jobsys.interfaces.api import dlq, errors, jobs, metrics, ops, push, stats, syncs
from jobsys.interfaces.api.auth import TokenCache

DESCRIPTION = """\
Jobs, pipeline runs and dead letters of jobsys. Every `/api` call needs
`Authorization: Bearer <token>` (`jobsys token create`). A user token sees and acts
on its own user's rows only; another user's id answers 404. Every failure has the
body `{"error": {"type", "message", "field"?}}`.
"""


def create_app(runtime: Runtime | None = None) -> FastAPI:
    """The API on ``runtime`` (one built from the environment by default)."""
    rt = runtime or Runtime.from_env()
    rt.load_imports()
    tracing.install(rt)
    app = FastAPI(title="jobsys", version=_version(), description=DESCRIPTION, lifespan=_lifespan)
    app.state.runtime = rt
    app.state.tokens = TokenCache(rt.settings.api_token_cache)
    errors.install(app)
    for module in (jobs, syncs, dlq, ops, push, metrics, stats):
        app.include_router(module.router)
    app.include_router(ops.health)
    return app


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    # Each request thread holds its own PostgreSQL connection (the hot path's), so
    # the thread pool is what bounds a worker's connections: anyio's default of 40
    # per worker exhausts a default server (100) with two workers under load.
    rt: Runtime = app.state.runtime
    anyio.to_thread.current_default_thread_limiter().total_tokens = rt.settings.api_threads
    yield
    rt.close()


def _version() -> str:
    from importlib.metadata import version

    return version("jobsys")
