"""The Celery app: ``celery -A jobsys worker`` finds it as ``jobsys.app``."""

from __future__ import annotations

from celery import Celery

app = Celery("jobsys")
app.config_from_object("celeryconfig")
