"""Server-side prepared statements on connections of their own, one per thread.

A statement on the partitioned ``jobs`` table costs PostgreSQL about a
millisecond to plan, several times what it costs to run on a short promotion.
Statements prepared once per connection are parsed once, and PostgreSQL plans
them once where the generic plan is as good (runtime partition pruning). Used
where a transaction runs often and its statements are few: admission's
promotions.

PostgreSQL keeps planning the pick at each execution: its best plan depends on
the slots and on the table's size now. Forcing the generic plan halved a
promotion's PostgreSQL time in a bench, but it freezes a plan made on whatever
statistics the table had then: one made while the table looked empty read every
row of the user's backlog for each job it marked, until an ANALYZE replaced it.
"""

from __future__ import annotations

import dataclasses
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg2
import sqlalchemy as sa

from jobsys.errors import StoreUnavailableError
from jobsys.store.db import normalize_url
from jobsys.store.fastpath import close_thread_connection, connect

# Every statement here reaches its rows through an index. With statistics taken while
# the table was small, a plan of a grown table read each user's whole backlog to pick
# a few jobs (1,930 rows for 10 in the plan tests): scans of whole tables are off.
SESSION_OPTIONS = "-c synchronous_commit=off -c enable_seqscan=off"
_PARAM = re.compile(r"(?<![:\w]):(\w+)\b")
Run = Callable[["Statement", dict[str, Any]], list[dict[str, Any]]]


@dataclasses.dataclass(frozen=True)
class Statement:
    """A named statement; ``params`` are its ``:name`` parameters with their SQL types."""

    name: str
    sql: str
    params: Sequence[tuple[str, str]]

    def prepare(self) -> str:
        order = {name: i for i, (name, _) in enumerate(self.params, 1)}
        body = _PARAM.sub(lambda m: f"${order[m.group(1)]}", self.sql)
        types = ", ".join(t for _, t in self.params)
        return f"PREPARE {self.name} ({types}) AS {body}"

    def execute(self) -> str:
        return f"EXECUTE {self.name} ({', '.join(['%s'] * len(self.params))})"


class PreparedSession:
    """Per-thread connections (``synchronous_commit`` off) running prepared statements."""

    def __init__(self, url: str) -> None:
        self._dsn = sa.engine.make_url(normalize_url(url)).set(drivername="postgresql")
        self._local = threading.local()

    @contextmanager
    def transaction(self) -> Iterator[Run]:
        """One transaction; yields ``run(statement, params) -> rows``."""
        conn = self._connection()
        try:
            with conn, conn.cursor() as cur:
                yield lambda st, params: self._run(cur, st, params)
        except (psycopg2.OperationalError, psycopg2.InterfaceError) as e:
            self.close()
            raise StoreUnavailableError(f"PostgreSQL unavailable: {e}") from e

    def close(self) -> None:
        close_thread_connection(self._local)

    def _run(self, cur: Any, st: Statement, params: dict[str, Any]) -> list[dict[str, Any]]:
        prepared: set[str] = self._local.prepared
        if st.name not in prepared:
            cur.execute(st.prepare())
            prepared.add(st.name)
        cur.execute(st.execute(), [params[name] for name, _ in st.params])
        if cur.description is None:
            return []
        names = [d.name for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def _connection(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None or conn.closed:
            conn = connect(
                self._dsn,
                options=SESSION_OPTIONS,
                application_name="jobsys-admission",
            )
            self._local.conn = conn
            self._local.prepared = set()
        return conn
