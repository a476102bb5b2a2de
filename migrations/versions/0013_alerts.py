"""alerts: the detector's baselines per series, and incidents with their notification outbox

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03 10:50:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "alert_baselines",
        sa.Column("signal", sa.Text, primary_key=True),
        sa.Column("subject", sa.Text, primary_key=True),
        sa.Column("n", sa.Integer, nullable=False, server_default="0"),
        sa.Column("level", sa.Float, nullable=False, server_default="0"),
        sa.Column("recent", pg.JSONB, nullable=False, server_default=sa.text("'[]'::jsonb")),
        sa.Column("streak", sa.Integer, nullable=False, server_default="0"),
        sa.Column("firing", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("evaluated_at", _TS, nullable=False, server_default=sa.text("now()")),
    )
    op.create_table(
        "alerts",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("signal", sa.Text, nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("value", sa.Float, nullable=False),
        sa.Column("baseline", sa.Float, nullable=False),
        sa.Column("threshold", sa.Float, nullable=False),
        sa.Column("peak", sa.Float, nullable=False),
        sa.Column("opened_at", _TS, nullable=False),
        sa.Column("resolved_at", _TS),
        sa.Column("resolved_value", sa.Float),
        sa.Column("fired_sent_at", _TS),
        sa.Column("resolved_sent_at", _TS),
        sa.Column("send_attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("send_error", sa.Text),
    )
    op.create_index(
        "alerts_one_open_idx",
        "alerts",
        ["signal", "subject"],
        unique=True,
        postgresql_where=sa.text("resolved_at IS NULL"),
    )
    op.create_index("alerts_opened_idx", "alerts", ["opened_at"])
    op.create_index(
        "alerts_unsent_idx",
        "alerts",
        ["id"],
        postgresql_where=sa.text(
            "fired_sent_at IS NULL OR (resolved_at IS NOT NULL AND resolved_sent_at IS NULL)"
        ),
    )


def downgrade() -> None:
    op.drop_table("alerts")
    op.drop_table("alert_baselines")
