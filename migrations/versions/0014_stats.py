"""stats: one row per recorded attempt with its cost, and the indexes the stats read

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03 10:55:00.000000

``attempts`` is user-owned: row-level security as in 0010 (an engine policy
and a tenant policy on ``jobsys.user_id``).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

# Table -> the column naming its user (as 0010's OWNED).
OWNED = {"attempts": "user_id"}
SETTING = "current_setting('jobsys.user_id', true)"
ENGINE = (
    "NOT EXISTS (SELECT FROM pg_roles r"
    " WHERE r.rolname = 'jobsys_api' AND pg_has_role(current_user, r.oid, 'MEMBER'))"
)
_TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "attempts",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("job_id", pg.UUID(as_uuid=True), nullable=False),
        sa.Column("user_id", sa.Text, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("queue", sa.Text, nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("outcome", sa.Text, nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("priority", sa.SmallInteger, nullable=False),
        sa.Column("created_at", _TZ, nullable=False),
        sa.Column("due_at", _TZ, nullable=False),
        sa.Column("started_at", _TZ),
        sa.Column("finished_at", _TZ, server_default=sa.text("now()"), nullable=False),
        sa.Column("cpu_s", sa.Float),
        sa.Column("wall_s", sa.Float),
        sa.Column("google_requests", sa.Integer),
        sa.Column("quota_units", sa.Integer),
    )
    op.create_index("attempts_finished_idx", "attempts", ["finished_at"])
    op.create_index("attempts_user_finished_idx", "attempts", ["user_id", "finished_at"])
    op.create_index("pipeline_runs_finished_idx", "pipeline_runs", ["finished_at"])
    op.create_index(
        "pipeline_runs_user_succeeded_idx",
        "pipeline_runs",
        ["user_id", "finished_at"],
        postgresql_where=sa.text("status = 'succeeded'"),
    )
    op.execute("ALTER TABLE attempts ENABLE ROW LEVEL SECURITY")
    op.execute("ALTER TABLE attempts FORCE ROW LEVEL SECURITY")
    op.execute(f"CREATE POLICY jobsys_engine ON attempts USING ({ENGINE}) WITH CHECK ({ENGINE})")
    tenant = f"user_id = {SETTING}"
    op.execute(f"CREATE POLICY jobsys_tenant ON attempts USING ({tenant}) WITH CHECK ({tenant})")


def downgrade() -> None:
    op.drop_index("pipeline_runs_user_succeeded_idx", table_name="pipeline_runs")
    op.drop_index("pipeline_runs_finished_idx", table_name="pipeline_runs")
    op.drop_table("attempts")
