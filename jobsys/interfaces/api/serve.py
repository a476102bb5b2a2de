"""The application uvicorn imports in each of its worker processes."""

from __future__ import annotations

from jobsys.interfaces.api.app import create_app

app = create_app()
