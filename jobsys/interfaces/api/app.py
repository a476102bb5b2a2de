"""The HTTP API: ``create_app(runtime)``, served by ``jobsys api`` under uvicorn."""

from __future__ import annotations

from fastapi import FastAPI

from jobsys.engine.runtime import Runtime
from jobsys.interfaces.api import dlq, errors, jobs, ops, push, syncs

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
    app = FastAPI(title="jobsys", version=_version(), description=DESCRIPTION)
    app.state.runtime = rt
    errors.install(app)
    for module in (jobs, syncs, dlq, ops, push):
        app.include_router(module.router)
    return app


def _version() -> str:
    from importlib.metadata import version

    return version("jobsys")
