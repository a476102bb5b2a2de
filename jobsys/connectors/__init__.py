"""Connectors: Google clients and the pipeline phases' domain logic; they never touch Celery."""

from __future__ import annotations
