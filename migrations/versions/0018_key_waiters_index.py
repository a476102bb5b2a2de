"""jobs waiting in the backlog for a concurrency key, by key: a holder that ends wakes them

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-03 17:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "jobs_key_waiters_idx",
        "jobs",
        ["concurrency_key", "queue", "user_id"],
        postgresql_where=sa.text(
            "concurrency_key IS NOT NULL AND status = 'queued' AND dispatched_at IS NULL"
        ),
    )


def downgrade() -> None:
    op.drop_index("jobs_key_waiters_idx", table_name="jobs")
