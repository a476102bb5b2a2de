"""due users indexed in the tick's order (next_sync_at, id): each batch reads its own
users, not every user tied on the due time

Users added together share one ``next_sync_at`` (its default is the inserting
transaction's ``now()``), and a tick moves each batch on to one same time. With
``next_sync_at`` alone the index gave tied users in no order, and
``ORDER BY next_sync_at, id LIMIT :batch`` read and sorted the whole tied group
for every batch.

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-04 11:10:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("users_sync_due_idx", table_name="users")
    op.create_index(
        "users_sync_due_idx",
        "users",
        ["next_sync_at", "id"],
        postgresql_where=sa.text("NOT paused"),
    )


def downgrade() -> None:
    op.drop_index("users_sync_due_idx", table_name="users")
    op.create_index(
        "users_sync_due_idx", "users", ["next_sync_at"], postgresql_where=sa.text("NOT paused")
    )
