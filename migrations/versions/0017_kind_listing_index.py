"""every user's jobs newest first: jobs_kind_created_idx ends in id, for keyset pages by kind

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-03 15:00:00.000000
"""

from __future__ import annotations

from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Replaced, not added: each index costs every enqueue and transition an entry.
    op.drop_index("jobs_kind_created_idx", table_name="jobs")
    op.create_index("jobs_kind_created_idx", "jobs", ["kind", "created_at", "id"])


def downgrade() -> None:
    op.drop_index("jobs_kind_created_idx", table_name="jobs")
    op.create_index("jobs_kind_created_idx", "jobs", ["kind", "created_at"])
