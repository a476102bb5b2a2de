"""Celery configuration for ``celery -A jobsys``: built once from the JOBSYS_* settings."""

from __future__ import annotations

from jobsys.engine.celeryconf import celery_config

globals().update(celery_config())
