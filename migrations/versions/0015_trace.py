"""trace: a job's span contexts (the enqueue's and the last attempt's) with tracing on

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03 11:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable with no default: adding it rewrites nothing, and untraced jobs keep NULL.
    op.add_column("jobs", sa.Column("trace", pg.JSONB(), nullable=True))


def downgrade() -> None:
    op.drop_column("jobs", "trace")
