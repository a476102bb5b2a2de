"""admission: a job's message in the broker is part of its state; fair-share state per user

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 23:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_BACKLOG = "status = 'queued' AND dispatched_at IS NULL"


def upgrade() -> None:
    # NULL: the job waits in PostgreSQL (the backlog); set: its message was published.
    # The default (evaluated once here: no table rewrite) marks every job stored so far
    # as published, and every row a writer without admission inserts (one still on the
    # previous version during a rolling deploy publishes its own jobs).
    op.add_column(
        "jobs",
        sa.Column("dispatched_at", sa.DateTime(timezone=True), server_default=sa.text("now()")),
    )
    # The sweeper's look for lost messages reads only published jobs.
    op.create_index(
        "jobs_published_idx",
        "jobs",
        [sa.text("priority DESC"), "run_after"],
        postgresql_where=sa.text("status = 'queued' AND dispatched_at IS NOT NULL"),
    )
    op.create_index(
        "jobs_backlog_idx",
        "jobs",
        ["queue", "user_id", sa.text("priority DESC"), "run_after"],
        postgresql_where=sa.text(_BACKLOG),
    )
    op.create_index(
        "jobs_urgent_idx",
        "jobs",
        ["queue", sa.text("priority DESC"), "run_after"],
        postgresql_where=sa.text(f"{_BACKLOG} AND priority >= 8"),
    )
    op.create_table(
        "fair_users",
        sa.Column("queue", sa.Text(), nullable=False),
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("vtime", sa.Float(), server_default="0", nullable=False),
        sa.Column("next_due", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("queue", "user_id"),
    )
    op.create_index(
        "fair_users_waiting_idx",
        "fair_users",
        ["queue", "vtime"],
        postgresql_where=sa.text("next_due IS NOT NULL"),
    )
    # Each queue's virtual clock: where a user starting to wait joins (never backwards).
    op.create_table(
        "fair_queues",
        sa.Column("queue", sa.Text(), nullable=False),
        sa.Column("vclock", sa.Float(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("queue"),
    )
    op.create_table(
        "user_limits",
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("weight", sa.Float(), server_default="1", nullable=False),
        sa.Column("max_queued", sa.Integer(), nullable=True),
        sa.Column("max_per_hour", sa.Integer(), nullable=True),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("weight > 0", name="user_limits_weight_positive"),
        sa.PrimaryKeyConstraint("user_id"),
    )


def downgrade() -> None:
    op.drop_table("user_limits")
    op.drop_table("fair_queues")
    op.drop_index("fair_users_waiting_idx", table_name="fair_users")
    op.drop_table("fair_users")
    op.drop_index("jobs_urgent_idx", table_name="jobs")
    op.drop_index("jobs_backlog_idx", table_name="jobs")
    op.drop_index("jobs_published_idx", table_name="jobs")
    op.drop_column("jobs", "dispatched_at")
