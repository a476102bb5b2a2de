"""Run Alembic migrations programmatically (``jobsys db upgrade``)."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from jobsys.store.gateway import Store

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Migrate the database at ``url`` to ``revision``."""
    command.upgrade(alembic_config(url), revision)


def check(url: str) -> None:
    """Raise if the models and the migrated schema differ (Alembic's autogenerate check)."""
    command.check(alembic_config(url))


def head() -> str:
    """The newest revision the migrations define."""
    from alembic.script import ScriptDirectory

    found = ScriptDirectory.from_config(alembic_config("postgresql://")).get_current_head()
    assert found is not None
    return found


def current(store: Store) -> str | None:
    """The revision the database is at (None: never migrated).

    Raises:
        StoreUnavailableError: PostgreSQL cannot be reached.
    """
    exists = sa.text("SELECT to_regclass('alembic_version') IS NOT NULL")
    with store.transaction() as conn:
        if not conn.execute(exists).scalar():
            return None
        found = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
    return str(found) if found is not None else None
