"""Row-level security: under ``jobsys_api`` with ``jobsys.user_id = A``, every user-owned table
shows A's rows only, writes of B's rows are refused, and a ``jobs`` partition is denied.
"""

from __future__ import annotations

import importlib.util
import uuid
from typing import Any

import pytest
import sqlalchemy as sa

from jobsys.store import roles
from jobsys.store.migrate import MIGRATIONS
from jobsys.store.models import Base
from tests.conftest import Env

A, B = "user-a", "user-b"


def _owned() -> dict[str, str]:
    # 0010 put the policies on the tables of its day; later migrations add their own.
    owned: dict[str, str] = {}
    for name in ("0010_row_security.py", "0014_stats.py"):
        path = MIGRATIONS / "versions" / name
        spec = importlib.util.spec_from_file_location(name.removesuffix(".py"), path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        owned.update(module.OWNED)
    return owned


def test_every_table_with_a_user_column_has_the_policies() -> None:
    # A new table holding users' rows cannot be forgotten by the migration.
    with_user = {t.name for t in Base.metadata.sorted_tables if "user_id" in t.columns}
    assert with_user - {"api_tokens"} <= set(_owned())
    assert _owned()["users"] == "id"


# A value for each NOT NULL column without a default, by type (the rest keep defaults).
_VALUES = {
    "bigint": "1",
    "integer": "1",
    "smallint": "1",
    "double precision": "1",
    "boolean": "false",
    "timestamp with time zone": "now()",
    "jsonb": "'{}'",
    "uuid": "gen_random_uuid()",
    "bytea": "'\\x00'",
    "ARRAY": "'{}'",
    "interval": "'1 minute'",
    "USER-DEFINED": "'queued'",
}


def _seed(conn: sa.Connection, table: str, column: str, user: str) -> None:
    rows = conn.execute(
        sa.text(
            "SELECT column_name, data_type FROM information_schema.columns"
            " WHERE table_name = :t AND is_nullable = 'NO' AND column_default IS NULL"
            " AND is_identity = 'NO' AND table_schema = 'public'"
        ),
        {"t": table},
    ).all()
    # Text unique per user (e-mails are unique), the rest by type.
    values = {name: f"'{user}-{name}'" if kind == "text" else _VALUES[kind] for name, kind in rows}
    values[column] = f"'{user}'"
    names = ", ".join(values)
    conn.execute(sa.text(f"INSERT INTO {table} ({names}) VALUES ({', '.join(values.values())})"))


@pytest.fixture
def seeded(jobsys_env: Env) -> dict[str, str]:
    owned = _owned()
    roles.create(jobsys_env.store)
    with jobsys_env.store.transaction() as conn:
        for user in (A, B):
            for table, column in owned.items():
                _seed(conn, table, column, user)
    return owned


def _as_api(env: Env, user: str | None, sql: str) -> list[Any]:
    with env.store.transaction() as conn:
        conn.execute(sa.text(f"SET LOCAL ROLE {roles.API_ROLE}"))
        if user is not None:
            conn.execute(sa.text("SELECT set_config('jobsys.user_id', :u, true)"), {"u": user})
        return list(conn.execute(sa.text(sql)).all())


def test_the_api_role_sees_only_its_users_rows_in_every_table(
    jobsys_env: Env, seeded: dict[str, str]
) -> None:
    for table, column in seeded.items():
        # As the engine: both users' rows
        with jobsys_env.store.transaction() as conn:
            everyone = conn.execute(sa.text(f"SELECT DISTINCT {column} FROM {table}")).scalars()
            assert sorted(everyone) == [A, B], table
        if table not in {*roles.API_TABLES, *roles.API_SCHEDULING}:
            with pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
                _as_api(jobsys_env, A, f"SELECT 1 FROM {table}")
            continue
        # As jobsys_api for A: A's only; with no user set: nothing
        seen = _as_api(jobsys_env, A, f"SELECT DISTINCT {column} FROM {table}")
        assert [r[0] for r in seen] == [A], table
        assert _as_api(jobsys_env, None, f"SELECT 1 FROM {table}") == [], table


def test_the_api_role_cannot_write_another_users_rows(
    jobsys_env: Env, seeded: dict[str, str]
) -> None:
    # B's rows are invisible to A's updates and deletes
    assert (
        _as_api(jobsys_env, A, f"UPDATE jobs SET priority = 5 WHERE user_id = '{B}' RETURNING 1")
        == []
    )
    assert (
        _as_api(jobsys_env, A, f"DELETE FROM dead_letters WHERE user_id = '{B}' RETURNING 1") == []
    )
    # And a row moved or inserted for B is refused by the policy's check
    with pytest.raises(sa.exc.ProgrammingError, match="row-level security"):
        _as_api(jobsys_env, A, f"UPDATE users SET id = '{B}' WHERE id = '{A}'")
    with pytest.raises(sa.exc.ProgrammingError, match="row-level security"):
        _as_api(
            jobsys_env,
            A,
            f"INSERT INTO audit_events (actor, action, user_id) VALUES ('x', 'y', '{B}')",
        )
    # Nor does an enqueue's bookkeeping take B's place in a queue or charge B's quota
    for row in (
        f"fair_users (queue, user_id) VALUES ('other', '{B}')",
        f"quota_usage (user_id, minute, n) VALUES ('{B}', now(), 1)",
    ):
        with pytest.raises(sa.exc.ProgrammingError, match="row-level security"):
            _as_api(jobsys_env, A, f"INSERT INTO {row}")


def test_a_member_of_the_api_role_is_held_to_the_policies_too(
    jobsys_env: Env, seeded: dict[str, str]
) -> None:
    # A login granted jobsys_api, acting as itself (no SET ROLE), sees A's rows only
    member = f"jobsys_member_{uuid.uuid4().hex[:8]}"
    with jobsys_env.store.transaction() as conn:
        conn.execute(sa.text(f"CREATE ROLE {member} NOLOGIN IN ROLE {roles.API_ROLE}"))
    try:
        with jobsys_env.store.transaction() as conn:
            conn.execute(sa.text(f"SET LOCAL ROLE {member}"))
            conn.execute(sa.text("SELECT set_config('jobsys.user_id', :u, true)"), {"u": A})
            seen = conn.execute(sa.text("SELECT DISTINCT user_id FROM jobs")).scalars().all()
        assert seen == [A]
    finally:
        with jobsys_env.store.transaction() as conn:
            conn.execute(sa.text(f"DROP ROLE {member}"))


def test_a_jobs_partition_read_directly_is_denied(jobsys_env: Env, seeded: dict[str, str]) -> None:
    for i in range(8):
        with pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
            _as_api(jobsys_env, A, f"SELECT * FROM jobs_p{i}")
