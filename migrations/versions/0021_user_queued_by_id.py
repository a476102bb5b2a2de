"""a user's queued jobs indexed by (user_id, id): a claim never scans a user's backlog

The partial index on ``user_id`` alone (0006) matched a claim's
``user_id = ? AND id = ? AND status = 'queued'`` as well as the primary key did,
and it is smaller: before a partition's first ANALYZE (a sudden flood), the
planner took it and each claim read the whole backlog of the claiming user.
With ``id`` in it, either index finds the one row.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-03 21:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("jobs_user_queued_idx", table_name="jobs")
    op.create_index(
        "jobs_user_queued_idx",
        "jobs",
        ["user_id", "id"],
        postgresql_where=sa.text("status = 'queued'"),
    )


def downgrade() -> None:
    op.drop_index("jobs_user_queued_idx", table_name="jobs")
    op.create_index(
        "jobs_user_queued_idx", "jobs", ["user_id"], postgresql_where=sa.text("status = 'queued'")
    )
