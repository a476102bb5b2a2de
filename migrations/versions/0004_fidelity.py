"""every From mailbox and mailed invitations on messages; iCalUID on events

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 22:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Existing rows get empty lists: the next normalization of a message fills them.
    for column in ("from_addrs", "invites"):
        op.add_column(
            "messages",
            sa.Column(
                column,
                postgresql.JSONB(astext_type=sa.Text()),
                server_default=sa.text("'[]'::jsonb"),
                nullable=False,
            ),
        )
    op.add_column("events", sa.Column("ical_uid", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("events", "ical_uid")
    op.drop_column("messages", "invites")
    op.drop_column("messages", "from_addrs")
