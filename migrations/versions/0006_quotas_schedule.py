"""quotas: enqueues per user and minute, a user's queued jobs; periodic syncs per user

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 05:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A limited user's enqueues per minute: the last hour's sum is its hourly usage.
    op.create_table(
        "quota_usage",
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("minute", sa.DateTime(timezone=True), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", "minute"),
    )
    op.create_check_constraint(
        "user_limits_quotas_positive",
        "user_limits",
        "(max_queued IS NULL OR max_queued > 0) AND (max_per_hour IS NULL OR max_per_hour > 0)",
    )
    # A limited user's queued jobs are counted on every enqueue it makes.
    op.create_index(
        "jobs_user_queued_idx",
        "jobs",
        ["user_id"],
        postgresql_where=sa.text("status = 'queued'"),
    )
    # Periodic syncs: a user is due at next_sync_at (NULL interval: the settings').
    op.add_column("users", sa.Column("sync_interval", sa.Float(), nullable=True))
    op.add_column(
        "users",
        sa.Column(
            "next_sync_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
    )
    op.create_check_constraint(
        "users_sync_interval_positive", "users", "sync_interval IS NULL OR sync_interval > 0"
    )
    op.create_index(
        "users_sync_due_idx",
        "users",
        ["next_sync_at"],
        postgresql_where=sa.text("NOT paused"),
    )


def downgrade() -> None:
    op.drop_index("users_sync_due_idx", table_name="users")
    op.drop_constraint("users_sync_interval_positive", "users")
    op.drop_column("users", "next_sync_at")
    op.drop_column("users", "sync_interval")
    op.drop_index("jobs_user_queued_idx", table_name="jobs")
    op.drop_constraint("user_limits_quotas_positive", "user_limits")
    op.drop_table("quota_usage")
