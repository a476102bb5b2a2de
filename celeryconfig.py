"""Celery configuration for ``celery -A jobsys``: built once from the JOBSYS_* settings."""

from __future__ import annotations

import sys

from jobsys.engine.celeryconf import celery_config
from jobsys.errors import ConfigError

try:
    globals().update(celery_config())
except ConfigError as e:
    # A malformed setting is the operator's to fix: one line, not a traceback.
    print(f"jobsys: error: {e}", file=sys.stderr)
    raise SystemExit(2) from None
