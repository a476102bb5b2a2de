"""waiting users indexed in the promotion's order (vtime, user_id): a promotion reads
as many users as it has slots, not every user tied on virtual time

Users who start waiting at the same moment join at the queue's virtual clock, so
thousands can share one ``vtime``. With ``(queue, vtime)`` alone the index gave
them in no order within that value, and ``ORDER BY vtime, user_id LIMIT n`` read
and sorted the whole tied group each promotion: 8,901 rows for 100 slots with
10,000 users waiting.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-04 11:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("fair_users_waiting_idx", table_name="fair_users")
    op.create_index(
        "fair_users_waiting_idx",
        "fair_users",
        ["queue", "vtime", "user_id"],
        postgresql_where=sa.text("next_due IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("fair_users_waiting_idx", table_name="fair_users")
    op.create_index(
        "fair_users_waiting_idx",
        "fair_users",
        ["queue", "vtime"],
        postgresql_where=sa.text("next_due IS NOT NULL"),
    )
