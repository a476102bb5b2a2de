"""The application uvicorn imports in each of its worker processes."""

from __future__ import annotations

import logging
import sys

from jobsys.interfaces import obs
from jobsys.interfaces.api.app import create_app

app = create_app()
# uvicorn runs with log_config=None: its records (startup, errors, the access log)
# reach the root logger, which gets the same processors as a worker node's.
obs.configure_logging(logging.INFO, fmt=obs.log_format(app.state.runtime.settings, sys.stderr))
