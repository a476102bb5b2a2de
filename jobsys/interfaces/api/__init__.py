"""The HTTP API (FastAPI): jobs, runs, dead letters, operations."""

from __future__ import annotations

from jobsys.interfaces.api.app import create_app

__all__ = ["create_app"]
