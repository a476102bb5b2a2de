"""Database roles: ``jobsys_api`` (row-level security applies) and ``jobsys_worker`` (cross-tenant).

Migration 0010 puts two policies on every user-owned table; this module creates
the roles they name and grants them what they need (``jobsys db roles``), or
gives the statements to an operator whose role cannot create roles.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import sqlalchemy as sa

from jobsys.errors import ConfigError

if TYPE_CHECKING:
    # Only named: the gateway's own modules import this one (``tenancy.py``).
    from jobsys.store.gateway import Store

API_ROLE = "jobsys_api"
WORKER_ROLE = "jobsys_worker"

# What the API role reads and writes: one user's rows, through the policies.
API_TABLES = (
    "jobs",
    "dead_letters",
    "audit_events",
    "users",
    "pipeline_runs",
    "messages",
    "events",
    "contacts",
    "interactions",
    "contact_scores",
    "digests",
    "sync_cursors",
    "raw_messages",
    "raw_events",
    "credentials",
    "attempts",
)

# What a user's own enqueue also reads and writes (``tenancy.py``): the fair scheduler's
# tables and the user's quotas. 0010's policies hold the per-user ones to the user.
API_SCHEDULING = {
    "fair_queues": "SELECT",  # each queue's virtual clock: no user's rows
    "fair_users": "SELECT, INSERT, UPDATE",
    "user_limits": "SELECT",
    "quota_usage": "SELECT, INSERT, UPDATE, DELETE",
}


def statements() -> list[str]:
    """Every statement ``jobsys db roles`` runs, in order (each one idempotent)."""
    tables = ", ".join(API_TABLES)
    return [
        *_create(API_ROLE, "NOLOGIN"),
        *_create(WORKER_ROLE, "NOLOGIN BYPASSRLS"),
        "DO $$ BEGIN EXECUTE format('GRANT CONNECT ON DATABASE %I TO"
        f" {API_ROLE}, {WORKER_ROLE}', current_database()); END $$",
        f"GRANT USAGE ON SCHEMA public TO {API_ROLE}, {WORKER_ROLE}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON {tables} TO {API_ROLE}",
        *(f"GRANT {granted} ON {t} TO {API_ROLE}" for t, granted in API_SCHEDULING.items()),
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {API_ROLE}",
        # Through `jobs` only: a partition read directly would skip the policies.
        "DO $$ DECLARE p regclass; BEGIN"
        " FOR p IN SELECT inhrelid::regclass FROM pg_inherits WHERE inhparent = 'jobs'::regclass"
        f" LOOP EXECUTE format('REVOKE ALL ON %s FROM {API_ROLE}', p); END LOOP; END $$",
        f"GRANT ALL ON ALL TABLES IN SCHEMA public TO {WORKER_ROLE}",
        f"GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {WORKER_ROLE}",
    ]


def _create(role: str, options: str) -> list[str]:
    # CREATE ROLE has no IF NOT EXISTS; a DO block keeps the statement re-runnable,
    # and the exception clause covers two sessions creating it at once.
    return [
        "DO $$ BEGIN"
        f" IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN"
        f" CREATE ROLE {role} {options};"
        " END IF;"
        " EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;"
        " END $$"
    ]


def create(store: Store) -> list[str]:
    """Run :func:`statements` in one transaction; return them.

    Raises:
        ConfigError: the connected role may not create roles or grant (the
            message says so; ``jobsys db roles --print`` gives the statements).
    """
    done = statements()
    with store.transaction() as conn:
        try:
            for statement in done:
                conn.execute(sa.text(statement))
        except sa.exc.ProgrammingError as e:
            raise ConfigError(
                f"cannot create the roles as {_who(store)}: {_first_line(e)};"
                " run the statements of `jobsys db roles --print` as a superuser"
            ) from e
    return done


@contextmanager
def scoped(store: Store, user_id: str) -> Iterator[sa.Connection]:
    """A transaction as ``jobsys_api`` for one user: the policies filter every row.

    Raises:
        ConfigError: the role does not exist or this login may not take it.
    """
    with store.transaction() as conn:
        try:
            conn.execute(sa.text(f"SET LOCAL ROLE {API_ROLE}"))
        except sa.exc.ProgrammingError as e:
            raise ConfigError(
                f"cannot act as {API_ROLE}: {_first_line(e)}; run `jobsys db roles`"
            ) from e
        conn.execute(sa.text("SELECT set_config('jobsys.user_id', :u, true)"), {"u": user_id})
        yield conn


def _who(store: Store) -> str:
    return str(store.durable.url.username or "this role")


def _first_line(error: sa.exc.DBAPIError) -> str:
    return (str(error.orig).strip() or type(error.orig).__name__).splitlines()[0]


def missing(store: Store) -> list[str]:
    """What :func:`create` makes that the server does not have: roles, or the API role's
    newest grants (roles made by an older ``jobsys db roles``)."""
    sql = sa.text("SELECT rolname FROM pg_roles WHERE rolname IN (:api, :worker)")
    with store.transaction() as conn:
        found = set(conn.execute(sql, {"api": API_ROLE, "worker": WORKER_ROLE}).scalars())
        granted = API_ROLE not in found or conn.execute(_NEWEST_GRANT, {"api": API_ROLE}).scalar()
    absent = [r for r in (API_ROLE, WORKER_ROLE) if r not in found]
    return absent if granted else [*absent, f"{API_ROLE}'s grants"]


_NEWEST_GRANT = sa.text("SELECT has_table_privilege(CAST(:api AS name), 'fair_users', 'INSERT')")
