"""Alembic environment: runs against the URL the caller puts in the config."""

from __future__ import annotations

from typing import Any

from alembic import context
from sqlalchemy import create_engine, pool

from jobsys.store.db import normalize_url
from jobsys.store.models import Base

config = context.config
target_metadata = Base.metadata


def include_object(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    # The jobs table's hash partitions are DDL the models do not describe.
    return not (type_ == "table" and reflected and compare_to is None and _is_partition(name))


def _is_partition(name: str | None) -> bool:
    return bool(name) and str(name).startswith("jobs_p")


def run_migrations_online() -> None:
    url = normalize_url(config.get_main_option("sqlalchemy.url") or "")
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            include_object=include_object,
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run_migrations_online()
