"""rollups: attempts summed per hour, with latency and age histograms, for wide stats windows

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-03 11:45:00.000000

No user column: the roll-ups serve the per-kind and fleet figures only (a
user's report reads raw attempts through its index), so they hold nobody's
rows and need no row-level security; ``jobsys_api`` is granted nothing on them.
``attempt_rollup`` is one row: the hour before which every attempt is rolled.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

_TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "attempt_hours",
        sa.Column("hour", _TZ, primary_key=True),
        sa.Column("kind", sa.Text, primary_key=True),
        sa.Column("outcome", sa.Text, primary_key=True),
        sa.Column("reason", sa.Text, primary_key=True),
        sa.Column("attempts", sa.BigInteger, nullable=False),
        sa.Column("cpu_s", sa.Float, nullable=False),
        sa.Column("wall_s", sa.Float, nullable=False),
        sa.Column("google_requests", sa.BigInteger, nullable=False),
        sa.Column("quota_units", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "attempt_hour_buckets",
        sa.Column("hour", _TZ, primary_key=True),
        sa.Column("kind", sa.Text, primary_key=True),
        sa.Column("band", sa.Text, primary_key=True),
        sa.Column("bucket", sa.SmallInteger, primary_key=True),
        sa.Column("started", sa.BigInteger, nullable=False),
        sa.Column("succeeded", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "attempt_rollup",
        sa.Column("id", sa.SmallInteger, primary_key=True, autoincrement=False),
        sa.Column("rolled_until", _TZ),
        sa.CheckConstraint("id = 1", name="attempt_rollup_one_row"),
    )
    op.execute("INSERT INTO attempt_rollup (id, rolled_until) VALUES (1, NULL)")


def downgrade() -> None:
    op.drop_table("attempt_rollup")
    op.drop_table("attempt_hour_buckets")
    op.drop_table("attempt_hours")
