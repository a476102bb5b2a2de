"""The hot path's own connections: one psycopg2 connection per thread, autocommit.

A job's claim and its result are each one statement; run through SQLAlchemy's
pool, text compilation and row mapping they cost twice what the database
does (0.6 ms against 0.3 ms measured here). These connections run the
gateway's named statements directly. A broken connection is dropped and the
error raised as :class:`StoreUnavailableError`; the next call reconnects.

The two statements every job runs, its claim and its success, are
:class:`Prepared`: prepared once per connection and run on a generic plan
(``plan_cache_mode``), since planning a statement on the partitioned ``jobs``
table costs PostgreSQL more than running it (claim and success: 0.27 ms of
backend CPU a job prepared, 0.58 ms planned each time). A generic plan is
chosen without the parameters' values, so these statements let only the
row's key find the row (``queries.checked``). Session-level prepared
statements need a session: no PgBouncer in transaction mode between the
workers and PostgreSQL (the promoters' statements need the same).
"""

from __future__ import annotations

import dataclasses
import re
import threading
from typing import Any

import psycopg2
import psycopg2.extras
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import psycopg2 as pg_dialect

from jobsys.errors import StoreUnavailableError
from jobsys.store.db import normalize_url

psycopg2.extras.register_uuid()  # type: ignore[no-untyped-call]
_DIALECT = pg_dialect.dialect()  # type: ignore[no-untyped-call]


_PARAM = re.compile(r"%\((\w+)\)s")


def compiled(statement: sa.TextClause) -> str:
    """A text() statement in psycopg2's ``%(name)s`` style, compiled once."""
    return str(statement.compile(dialect=_DIALECT))


@dataclasses.dataclass(frozen=True)
class Prepared:
    """A statement a :class:`FastPath` prepares once per connection, by name."""

    name: str
    prepare: str  # PREPARE name AS ... $1 ... (PostgreSQL infers the types)
    execute: str  # EXECUTE name (%(param)s, ...)

    @classmethod
    def of(cls, name: str, statement: sa.TextClause) -> Prepared:
        names: list[str] = []

        def numbered(match: re.Match[str]) -> str:
            if match.group(1) not in names:
                names.append(match.group(1))
            return f"${names.index(match.group(1)) + 1}"

        # A PREPARE is sent without parameters, so psycopg2 leaves "%%" as it is.
        body = _PARAM.sub(numbered, compiled(statement)).replace("%%", "%")
        params = ", ".join(f"%({n})s" for n in names)
        return cls(name, f"PREPARE {name} AS {body}", f"EXECUTE {name} ({params})")


class FastPath:
    """Per-thread autocommit connections to one database."""

    def __init__(
        self, url: str, *, synchronous_commit: bool, connection_factory: Any = None
    ) -> None:
        self._dsn = sa.engine.make_url(normalize_url(url)).set(drivername="postgresql")
        # plan_cache_mode applies to prepared statements only: the plain ones are
        # planned with their values as before.
        self._options = "-c plan_cache_mode=force_generic_plan" + (
            "" if synchronous_commit else " -c synchronous_commit=off"
        )
        self._factory = connection_factory  # psycopg2's, e.g. a LoggingConnection
        self._local = threading.local()

    def one(self, sql: str | Prepared, params: dict[str, Any]) -> dict[str, Any] | None:
        """Run one statement; its first row as a dict, or None."""
        conn = self.connection()
        try:
            with conn.cursor() as cur:
                if isinstance(sql, Prepared):
                    sql = self._prepared(cur, sql)
                cur.execute(sql, params)
                if cur.description is None:
                    return None
                row = cur.fetchone()
                names = [d.name for d in cur.description]
        except (psycopg2.OperationalError, psycopg2.InterfaceError) as e:
            self._drop()
            raise StoreUnavailableError(f"PostgreSQL unavailable: {e}") from e
        return dict(zip(names, row, strict=True)) if row is not None else None

    def close(self) -> None:
        """Close this thread's connection (the next statement opens a new one)."""
        self._drop()

    def connection(self) -> Any:
        """This thread's connection, opened if need be (a user's scope borrows it)."""
        conn = getattr(self._local, "conn", None)
        if conn is None or conn.closed:
            conn = connect(self._dsn, options=self._options, factory=self._factory)
            conn.autocommit = True
            self._local.conn = conn
            self._local.prepared = set()
        return conn

    def _prepared(self, cur: Any, statement: Prepared) -> str:
        """The EXECUTE of ``statement``, prepared on this thread's connection first."""
        done: set[str] = self._local.prepared
        if statement.name not in done:
            cur.execute(statement.prepare)
            done.add(statement.name)
        return statement.execute

    def _drop(self) -> None:
        close_thread_connection(self._local)


def connect(
    dsn: sa.URL, *, options: str = "", application_name: str = "jobsys", factory: Any = None
) -> Any:
    """A direct psycopg2 connection; a failure to connect is StoreUnavailableError."""
    try:
        return psycopg2.connect(
            dsn.render_as_string(hide_password=False),
            options=options,
            connect_timeout=5,
            application_name=application_name,
            connection_factory=factory,
        )
    except psycopg2.OperationalError as e:
        raise StoreUnavailableError(f"PostgreSQL unavailable: {e}") from e


def close_thread_connection(local: threading.local) -> None:
    """Close and forget the connection a thread keeps in ``local.conn``."""
    conn = getattr(local, "conn", None)
    local.conn = None
    if conn is not None:
        try:
            conn.close()
        except psycopg2.Error:
            pass
