"""What the ``jobsys`` command says when a command fails: one line, never a traceback.

:func:`describe` turns an exception into that line. A user's mistake, a
server that is down, a database not migrated yet: each is named with what
to do about it. Whatever it prints has passwords masked and control
characters removed.
"""

from __future__ import annotations

import errno

import click

from jobsys.config import mask_secrets
from jobsys.errors import JobsysError, StoreUnavailableError
from jobsys.interfaces.render import clean

PREFIX = "jobsys: error: "


def one_line(text: str) -> str:
    """``text`` on one line, its passwords masked."""
    parts = (part.strip() for part in str(text).splitlines())
    return mask_secrets(clean(" ".join(p for p in parts if p)))


def describe(exc: BaseException) -> str:
    """The one line (without prefix) that tells a user what went wrong."""
    return one_line(_explain(exc))


def _explain(exc: BaseException) -> str:
    if isinstance(exc, click.UsageError):
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
        return exc.format_message() + hint
    if isinstance(exc, click.ClickException):
        return exc.format_message()
    if isinstance(exc, StoreUnavailableError):  # worded as when a connection is refused
        return "cannot reach PostgreSQL: " + str(exc).removeprefix("PostgreSQL unavailable: ")
    if isinstance(exc, JobsysError | ValueError | LookupError):
        return str(exc)
    if isinstance(exc, RecursionError):
        return "input is nested too deeply to read"
    return (
        _servers(exc)
        or _os(exc)
        or (f"unexpected {type(exc).__name__}: {exc} (JOBSYS_DEBUG=1 shows the traceback)")
    )


def _servers(exc: BaseException) -> str | None:
    # Imported on use: the servers' client libraries load only when something failed.
    import kombu.exceptions
    import psycopg2
    import redis
    import sqlalchemy.exc

    if isinstance(exc, redis.RedisError | kombu.exceptions.OperationalError):
        return f"cannot reach Redis: {exc}"
    if isinstance(exc, sqlalchemy.exc.DBAPIError):
        return _database(exc.orig or exc)
    if isinstance(exc, psycopg2.Error):
        return _database(exc)
    return None


def _database(orig: BaseException) -> str:
    import psycopg2.errors

    if isinstance(orig, psycopg2.errors.UndefinedTable | psycopg2.errors.UndefinedColumn):
        # The primary message only: the rest quotes the statement, a screenful of SQL.
        what = getattr(getattr(orig, "diag", None), "message_primary", None) or orig
        return (
            f"the database's schema is missing or older than this jobsys ({what}): "
            "run `jobsys db upgrade`"
        )
    if isinstance(orig, psycopg2.OperationalError | psycopg2.InterfaceError):
        return f"cannot reach PostgreSQL: {orig}"
    if isinstance(orig, psycopg2.DataError):
        return f"PostgreSQL refused a value: {orig}"
    return f"PostgreSQL failed: {orig}"


def _os(exc: BaseException) -> str | None:
    if not isinstance(exc, OSError):
        return None
    if exc.errno == errno.EADDRINUSE:
        return f"address already in use: another process listens on that port ({exc.strerror})"
    return str(exc)
