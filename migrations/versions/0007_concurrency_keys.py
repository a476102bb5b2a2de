"""concurrency keys: at most N jobs of one key running or in the broker

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 05:10:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# A key's holders: its jobs running, or published and not yet claimed.
HOLDING = (
    "concurrency_key IS NOT NULL"
    " AND (status = 'running' OR (status = 'queued' AND dispatched_at IS NOT NULL))"
)


def upgrade() -> None:
    op.add_column("jobs", sa.Column("concurrency_key", sa.Text(), nullable=True))
    op.add_column("jobs", sa.Column("concurrency", sa.Integer(), nullable=True))
    # Promotion counts a key's holders for each keyed job it considers.
    op.create_index(
        "jobs_key_holders_idx", "jobs", ["concurrency_key"], postgresql_where=sa.text(HOLDING)
    )


def downgrade() -> None:
    op.drop_index("jobs_key_holders_idx", table_name="jobs")
    op.drop_column("jobs", "concurrency")
    op.drop_column("jobs", "concurrency_key")
