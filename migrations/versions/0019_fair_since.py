"""fair_users.since: no later than any waiting job's due time, so promotion looks for aged
jobs only among users who may have them

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-03 17:50:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Rows already there get -infinity: their users may have aged jobs.
    op.add_column(
        "fair_users",
        sa.Column(
            "since",
            sa.DateTime(timezone=True),
            server_default=sa.text("'-infinity'"),
            nullable=False,
        ),
    )


def downgrade() -> None:
    op.drop_column("fair_users", "since")
