"""Acting as one user: a user token's writes of its own rows, under row-level security.

Inside :func:`acting_as`, the gateway's statements on the user's own rows — a job's
insert (with the coalescing join and the quota charge), a cancel request, a dead
letter's revival, audit events — run in one transaction as ``jobsys_api`` with
``jobsys.user_id`` set, on this thread's ``hot_durable`` connection of the store
given (the API's login). The policies' WITH CHECK then refuses another user's row
whatever the caller's code did. Every other statement keeps its cross-tenant
connection, and nothing leaves the scope before it commits: work that follows a
write (publishing a message, hooks acting for every user) is registered with
:func:`after_commit` and runs once the scope committed, outside the role.

Round trips: ``BEGIN``, the role and the user go in the first statement's round
trip (PostgreSQL runs a multi-statement query in order, and ``BEGIN`` leaves its
transaction open); statements whose answer nobody needs (audit events) go with the
``COMMIT``. A user's enqueue is two round trips and one commit, as one job and its
audit event.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Protocol

import psycopg2
import psycopg2.extensions
import sqlalchemy as sa

from jobsys.errors import ConfigError, StoreUnavailableError
from jobsys.store.roles import API_ROLE

if TYPE_CHECKING:
    from jobsys.store.fastpath import FastPath
    from jobsys.store.gateway import Store

Statement = tuple[str, Mapping[str, Any]]  # psycopg2's ``%(name)s`` style, and its values

_SAVEPOINT = "jobsys_own"
_IDLE = psycopg2.extensions.TRANSACTION_STATUS_IDLE
_LOST = (psycopg2.OperationalError, psycopg2.InterfaceError)


class Rows(Protocol):
    """A transaction over one user's own rows: an open scope's, or a cross-tenant one."""

    def one(self, sql: str, params: Mapping[str, Any]) -> dict[str, Any] | None:
        """Run a statement; its first row, or None."""

    def then(self, sql: str, params: Mapping[str, Any]) -> None:
        """Run a statement whose answer nobody needs and whose rows nothing reads before
        the commit (an audit event): a scope sends it with its ``COMMIT``."""


class Scope:
    """One user's transaction as ``jobsys_api`` on this thread's connection of ``path``."""

    def __init__(self, path: FastPath, user_id: str) -> None:
        self.user_id = user_id
        self._path = path
        self._conn: Any = None  # once BEGIN went out on it
        self._lost = False  # the connection broke under statements already run
        self._then: list[Statement] = []
        self.after: list[Callable[[], object]] = []
        self._begin: tuple[Statement, ...] = (
            ("BEGIN", {}),
            (f"SET LOCAL ROLE {API_ROLE}", {}),
            ("SELECT set_config('jobsys.user_id', %(user)s, true)", {"user": user_id}),
        )

    def one(self, sql: str, params: Mapping[str, Any]) -> dict[str, Any] | None:
        cur = self._run((sql, params))
        try:
            if cur.description is None:
                return None
            row = cur.fetchone()
            names = [d.name for d in cur.description]
        finally:
            cur.close()
        return dict(zip(names, row, strict=True)) if row is not None else None

    def then(self, sql: str, params: Mapping[str, Any]) -> None:
        self._then.append((sql, params))

    @contextmanager
    def savepoint(self) -> Iterator[Any]:
        """A cursor in a savepoint of the scope's transaction: undone alone if the block
        raises (a refused quota, a job not inserted), the rest of the scope kept."""
        cur, later = self._run((f"SAVEPOINT {_SAVEPOINT}", {})), len(self._then)
        try:
            yield cur
        except _LOST as e:
            raise self._broken(e) from e
        except BaseException:
            del self._then[later:]
            self._run((f"ROLLBACK TO SAVEPOINT {_SAVEPOINT}", {})).close()
            raise
        finally:
            cur.close()

    def commit(self) -> None:
        if self._conn is None and not self._then:
            return  # nothing was written
        statements, self._then = self._then, []
        self._run(*statements, ("COMMIT", {})).close()

    def close(self) -> None:
        """Roll back what was not committed; the connection goes back idle, or closed."""
        conn, self._conn = self._conn, None
        if conn is None or conn.closed:
            return
        try:
            if conn.info.transaction_status != _IDLE:
                with conn.cursor() as cur:
                    cur.execute("ROLLBACK")
        except psycopg2.Error:
            pass
        if conn.closed or conn.info.transaction_status != _IDLE:
            self._path.close()  # never leave a user's transaction to the next statement

    def _run(self, *statements: Statement) -> Any:
        """Send ``statements`` in one round trip inside the scope's transaction, begun
        first if need be; the cursor holding the last one's rows."""
        if self._lost:
            raise StoreUnavailableError("PostgreSQL unavailable: the connection broke mid-write")
        begun = self._conn is not None
        conn = self._conn if begun else self._path.connection()
        begin = () if begun else self._begin
        cur = conn.cursor()
        try:
            # Bound here, sent as one simple query: no parameter names can collide.
            text = b";\n".join(_bound(cur, sql, params) for sql, params in (*begin, *statements))
            cur.execute(text)
        except _LOST as e:
            cur.close()
            raise self._broken(e) from e
        except psycopg2.Error as e:
            cur.close()
            self._conn = conn  # its transaction is open and failed: close() rolls it back
            config = _refused(e)
            if config is not None:
                raise config from e
            raise
        self._conn = conn
        return cur

    def _broken(self, error: Exception) -> StoreUnavailableError:
        # Before anything ran on it, a stale connection (a database restart) costs
        # nothing: the next statement begins again on a new one.
        self._lost, self._conn = self._conn is not None, None
        self._path.close()
        return StoreUnavailableError(f"PostgreSQL unavailable: {error}")


def _bound(cur: Any, sql: str, params: Mapping[str, Any]) -> bytes:
    return bytes(cur.mogrify(sql, params)) if params else sql.encode()


def _refused(error: psycopg2.Error) -> ConfigError | None:
    """A refusal that says the API role is missing or lacks grants (not a policy's)."""
    text = (str(error).strip() or type(error).__name__).splitlines()[0]
    role_missing = f'role "{API_ROLE}" does not exist' in text
    ungranted = error.pgcode == "42501" and "row-level security" not in text
    if role_missing or ungranted:
        return ConfigError(f"cannot write as {API_ROLE}: {text}; run `jobsys db roles`")
    return None


_SCOPE: ContextVar[Scope | None] = ContextVar("jobsys_tenant_scope", default=None)


@contextmanager
def acting_as(store: Store, user_id: str) -> Iterator[Scope]:
    """Run the user's own-row writes in the block as ``jobsys_api`` on ``store``, in one
    transaction committed when the block ends (rolled back if it raises); then what
    :func:`after_commit` registered, outside the scope.

    Inside an open scope of the same user, the block joins it.

    Raises:
        ValueError: a scope of another user is open.
        ConfigError: ``jobsys_api`` is missing, or this login may not take it.
        StoreUnavailableError: PostgreSQL went away; what was written is rolled back.
    """
    open_ = _SCOPE.get()
    if open_ is not None:
        if open_.user_id != user_id:
            raise ValueError(f"already acting as user {open_.user_id!r}, not {user_id!r}")
        yield open_
        return
    scope = Scope(store.hot_durable, user_id)
    token = _SCOPE.set(scope)
    try:
        yield scope
        scope.commit()
    finally:
        _SCOPE.reset(token)
        scope.close()
    for action in scope.after:
        action()


def current() -> Scope | None:
    """The scope open in this context, if any."""
    return _SCOPE.get()


def after_commit(action: Callable[[], object]) -> None:
    """Run ``action`` once the open scope committed, outside it; at once when none is open.

    For work that must not see the user's writes uncommitted nor run as the user: a
    message naming the row, hooks acting for every user. An action that raises
    leaves the later ones undone; the rows are committed (the sweeper republishes
    messages that never went out).
    """
    scope = _SCOPE.get()
    if scope is None:
        action()
    else:
        scope.after.append(action)


def one(path: FastPath, sql: str, params: Mapping[str, Any]) -> dict[str, Any] | None:
    """``sql`` in the open scope, else on ``path`` (a transaction of its own)."""
    scope = _SCOPE.get()
    return path.one(sql, dict(params)) if scope is None else scope.one(sql, params)


def then(path: FastPath, sql: str, params: Mapping[str, Any]) -> None:
    """``sql``, whose answer nobody needs, in the open scope (with its commit), else on ``path``."""
    scope = _SCOPE.get()
    if scope is None:
        path.one(sql, dict(params))
    else:
        scope.then(sql, params)


def own_transaction(
    raw: Callable[[], AbstractContextManager[Any]],
) -> AbstractContextManager[Any]:
    """A cursor in a savepoint of the open scope, else in the transaction ``raw`` opens."""
    scope = _SCOPE.get()
    return raw() if scope is None else scope.savepoint()


@contextmanager
def own_rows(transaction: Callable[[], AbstractContextManager[sa.Connection]]) -> Iterator[Rows]:
    """The open scope, else a cross-tenant transaction that ``transaction`` opens."""
    scope = _SCOPE.get()
    if scope is not None:
        yield scope
        return
    with transaction() as conn:
        yield _Cross(conn)


class _Cross:
    """The same statements on a cross-tenant SQLAlchemy transaction."""

    def __init__(self, conn: sa.Connection) -> None:
        self._conn = conn

    def one(self, sql: str, params: Mapping[str, Any]) -> dict[str, Any] | None:
        result = self._conn.exec_driver_sql(sql, dict(params))
        row = result.mappings().first() if result.returns_rows else None
        return dict(row) if row is not None else None

    def then(self, sql: str, params: Mapping[str, Any]) -> None:
        self._conn.exec_driver_sql(sql, dict(params))
