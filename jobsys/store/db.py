"""Engines for PostgreSQL, one set per process (engines must not cross a fork)."""

from __future__ import annotations

import sqlalchemy as sa


def make_engine(url: str, *, pool_size: int = 5) -> sa.Engine:
    """Build an engine suited to workers that outlive a database restart."""
    return sa.create_engine(
        normalize_url(url),
        # No pre-ping: it costs a round trip per checkout. A connection broken by a
        # database restart fails its statement instead, SQLAlchemy then discards the
        # pool, and the gateway turns the error into StoreUnavailableError.
        pool_pre_ping=False,
        pool_size=pool_size,
        max_overflow=10,
        pool_recycle=1800,
        connect_args={"connect_timeout": 5, "application_name": "jobsys"},
    )


def normalize_url(url: str) -> str:
    """Accept ``postgresql://`` and pin the psycopg2 driver."""
    if url.startswith("postgresql://"):
        return "postgresql+psycopg2://" + url[len("postgresql://") :]
    return url
