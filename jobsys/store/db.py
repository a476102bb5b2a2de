"""Engines for PostgreSQL, one set per process (engines must not cross a fork)."""

from __future__ import annotations

import sqlalchemy as sa


def make_engine(
    url: str, *, synchronous_commit: bool = True, pool_size: int = 5, autocommit: bool = False
) -> sa.Engine:
    """Build an engine with health checks suited to workers that outlive a DB restart.

    ``synchronous_commit=False`` is for job state transitions only: a transition
    lost in a crash re-runs an idempotent job, and skipping the WAL flush is
    what keeps the per-job cost near bare Celery's. ``autocommit=True`` is for
    engines that only run single statements: each is its own transaction, without
    the separate COMMIT round trip.
    """
    options = "-c synchronous_commit=off" if not synchronous_commit else ""
    extra = {"isolation_level": "AUTOCOMMIT"} if autocommit else {}
    return sa.create_engine(
        normalize_url(url),
        # No pre-ping: it costs a round trip per checkout. A connection broken by a
        # database restart fails its statement instead, SQLAlchemy then discards the
        # pool, and the gateway turns the error into StoreUnavailableError.
        pool_pre_ping=False,
        pool_size=pool_size,
        max_overflow=10,
        pool_recycle=1800,
        connect_args={"options": options, "connect_timeout": 5, "application_name": "jobsys"},
        **extra,
    )


def normalize_url(url: str) -> str:
    """Accept ``postgresql://`` and pin the psycopg2 driver."""
    if url.startswith("postgresql://"):
        return "postgresql+psycopg2://" + url[len("postgresql://") :]
    return url
