"""Migrations: ``upgrade head`` on an empty database matches the models exactly."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic.script import ScriptDirectory

from jobsys.store import migrate

pytestmark = pytest.mark.integration


def test_upgrade_head_on_an_empty_database_leaves_nothing_for_check(empty_db: str) -> None:
    # Given an empty database
    # When it is migrated to head
    migrate.upgrade(empty_db)

    # Then Alembic's autogenerate check finds no difference from the models
    migrate.check(empty_db)

    # And the tables, the partitions and the revision are there
    engine = sa.create_engine(empty_db.replace("postgresql://", "postgresql+psycopg2://", 1))
    try:
        inspector = sa.inspect(engine)
        tables = set(inspector.get_table_names())
        with engine.connect() as conn:
            revision = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
    finally:
        engine.dispose()
    assert {"jobs", "dead_letters", "workers", "audit_events", "alembic_version"} <= tables
    assert {f"jobs_p{i}" for i in range(8)} <= tables
    assert (
        revision == ScriptDirectory.from_config(migrate.alembic_config(empty_db)).get_current_head()
    )


def test_upgrade_is_idempotent(empty_db: str) -> None:
    # Given a database at head
    migrate.upgrade(empty_db)

    # When it is upgraded again
    migrate.upgrade(empty_db)

    # Then nothing changed and the check still passes
    migrate.check(empty_db)
