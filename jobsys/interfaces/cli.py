"""The ``jobsys`` command line: the group, its commands, and the one place errors are printed.

Configuration comes from ``JOBSYS_*`` environment variables (see ``--help``).
Every failure ends in :func:`main`: one line on stderr, prefixed ``jobsys: error:``,
and a non-zero exit, never a traceback (``JOBSYS_DEBUG=1`` adds one for a bug).
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from importlib.metadata import PackageNotFoundError, version

import click

from jobsys.interfaces import obs
from jobsys.interfaces.cli_alerts import alerts
from jobsys.interfaces.cli_api import api, db_roles, token
from jobsys.interfaces.cli_db import db
from jobsys.interfaces.cli_dlq import dlq
from jobsys.interfaces.cli_fleet import breakers, sweep, workers
from jobsys.interfaces.cli_google import google
from jobsys.interfaces.cli_jobs import cancel, enqueue, job_cmd, jobs
from jobsys.interfaces.cli_keys import keys
from jobsys.interfaces.cli_schedule import schedule
from jobsys.interfaces.cli_services import demo, emulator, services
from jobsys.interfaces.cli_stats import stats
from jobsys.interfaces.cli_sync import report, sync_cmd
from jobsys.interfaces.cli_users import user
from jobsys.interfaces.clierrors import PREFIX, describe

ENV_HELP = """
\b
Configuration (environment):
  JOBSYS_DATABASE_URL   PostgreSQL URL (postgresql://...)
  JOBSYS_BROKER_URL     Redis broker URL (redis://...)
  JOBSYS_RESULT_BACKEND Redis result backend (defaults to the broker)
  JOBSYS_IMPORTS        comma-separated modules that define job kinds
  APP_ENCRYPTION_KEY    Fernet key(s) for stored OAuth tokens, newest first
When the URLs are unset, the embedded servers recorded in .jobsys/ are used
(`jobsys services up` starts them; `jobsys demo` starts its own).
"""


def _version() -> str:
    try:
        return version("jobsys")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


@click.group(epilog=ENV_HELP, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(_version(), "--version", prog_name="jobsys", message="%(prog)s %(version)s")
def cli() -> None:
    """jobsys: durable per-user jobs on Celery, with PostgreSQL as the source of truth."""


for _command in (
    db,
    enqueue,
    jobs,
    job_cmd,
    cancel,
    dlq,
    workers,
    sweep,
    breakers,
    alerts,
    sync_cmd,
    report,
    stats,
    keys,
    user,
    schedule,
    emulator,
    services,
    demo,
    api,
    token,
    google,
):
    cli.add_command(_command)
db.add_command(db_roles)


def main() -> None:
    """Entry point: run the command; any failure is one line on stderr and exit status 1."""
    _logs_to_stderr()
    # As `celery -A` does: modules of the current directory (JOBSYS_IMPORTS) are found.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        code = cli.main(prog_name="jobsys", standalone_mode=False)
    except click.Abort:
        fail("aborted", 130)
    except Exception as e:
        if os.environ.get("JOBSYS_DEBUG"):
            traceback.print_exc()
        fail(describe(e), getattr(e, "exit_code", 1) or 1)
    if isinstance(code, int) and code:
        sys.exit(code)


def _logs_to_stderr() -> None:
    # Standard output is the command's answer (a sentence, a table, JSON): the
    # engine's structured log lines go to stderr, and only warnings and worse.
    # The settings are not read yet (a bad one must fail as one line, later).
    fmt = os.environ.get("JOBSYS_LOG_FORMAT", "").strip().lower()
    obs.configure_logging(logging.WARNING, fmt=fmt if fmt in ("json", "console") else None)


def fail(line: str, code: int = 1) -> None:
    """Print ``jobsys: error: LINE`` on stderr and exit with ``code``."""
    click.echo(PREFIX + line, err=True)
    sys.exit(code)
