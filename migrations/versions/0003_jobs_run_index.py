"""jobs: index of a user's jobs by the pipeline run their payload names

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The sweeper's run repair reads a run's jobs on every pass; without this index
    # each read scanned the payload of every job.
    op.create_index(
        "jobs_run_idx",
        "jobs",
        ["user_id", sa.text("(payload ->> 'run_id')")],
        postgresql_where=sa.text("payload ? 'run_id'"),
    )


def downgrade() -> None:
    op.drop_index("jobs_run_idx", table_name="jobs")
