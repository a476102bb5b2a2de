"""listing indexes: a user's jobs and dead letters newest first, for the API's keyset pages

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03 09:10:00.000000
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("jobs_user_created_idx", "jobs", ["user_id", "created_at", "id"])
    op.create_index(
        "dead_letters_user_created_idx", "dead_letters", ["user_id", "created_at", "id"]
    )


def downgrade() -> None:
    op.drop_index("dead_letters_user_created_idx", table_name="dead_letters")
    op.drop_index("jobs_user_created_idx", table_name="jobs")
