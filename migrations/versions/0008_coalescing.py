"""coalescing: a request joins its kind's job still waiting in the backlog; run follow-ups

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 05:20:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A coalescing kind's job still in the backlog (no message yet) is one per user.
    op.add_column(
        "jobs", sa.Column("coalesce", sa.Boolean(), server_default=sa.false(), nullable=False)
    )
    op.create_index(
        "jobs_coalesce_idx",
        "jobs",
        ["user_id", "kind"],
        unique=True,
        postgresql_where=sa.text("coalesce AND status = 'queued' AND dispatched_at IS NULL"),
    )
    # A sync asked for while the user's run runs: the run after it ('incremental', 'full').
    op.add_column("pipeline_runs", sa.Column("follow_up", sa.Text(), nullable=True))
    op.create_check_constraint(
        "pipeline_runs_follow_up_kind",
        "pipeline_runs",
        "follow_up IS NULL OR follow_up IN ('incremental', 'full')",
    )


def downgrade() -> None:
    op.drop_constraint("pipeline_runs_follow_up_kind", "pipeline_runs")
    op.drop_column("pipeline_runs", "follow_up")
    op.drop_index("jobs_coalesce_idx", table_name="jobs")
    op.drop_column("jobs", "coalesce")
