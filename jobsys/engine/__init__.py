"""The engine: Celery app, the job task (claim -> run -> record), retries, DLQ, sweeper."""

from __future__ import annotations
