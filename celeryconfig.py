"""Celery configuration for ``celery -A jobsys``: built once from the JOBSYS_* settings."""

from __future__ import annotations

import sys
from pathlib import Path

from jobsys.engine.celeryconf import celery_config
from jobsys.errors import ConfigError


def _celery_command() -> bool:
    """Whether this process is the ``celery`` command (``celery`` or ``python -m celery``)."""
    argv0 = Path(sys.argv[0] if sys.argv else "")
    return argv0.name == "celery" or argv0.parent.name == "celery"


try:
    globals().update(celery_config())
except ConfigError as e:
    if not _celery_command():
        raise
    # A malformed or missing setting is the operator's to fix: one line, not a traceback.
    print(f"jobsys: error: {e}", file=sys.stderr)
    raise SystemExit(2) from None
