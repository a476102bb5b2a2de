"""canvas: a keyed canvas member's Celery options, kept while it waits for admission

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-03 18:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable with no default: adding it rewrites nothing, and plain jobs keep NULL.
    op.add_column("jobs", sa.Column("canvas", pg.JSONB(), nullable=True))


def downgrade() -> None:
    op.drop_column("jobs", "canvas")
