"""hardening: postponements are counted and bounded from the first one

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03 08:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # How often the job was postponed, and when first: past its kind's limit of
    # postponing it is dead-lettered (reason postponed_too_long).
    op.add_column(
        "jobs", sa.Column("postponements", sa.Integer(), server_default="0", nullable=False)
    )
    op.add_column("jobs", sa.Column("postponed_since", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column("jobs", "postponed_since")
    op.drop_column("jobs", "postponements")
