"""jobs (hash-partitioned by user), dead_letters, workers, audit_events

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

PARTITIONS = 8
NOW = sa.text("now()")


def _ts(name: str, **kw: object) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.DateTime(timezone=True), **kw)  # type: ignore[arg-type]


def upgrade() -> None:
    status = pg.ENUM(
        "queued", "running", "succeeded", "dead", "cancelled", name="job_status", create_type=True
    )
    op.create_table(
        "jobs",
        sa.Column("id", pg.UUID(as_uuid=True), nullable=False),
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("queue", sa.Text(), nullable=False),
        sa.Column("priority", sa.SmallInteger(), server_default="0", nullable=False),
        sa.Column("payload", pg.JSONB(), server_default=sa.text("'{}'::jsonb"), nullable=False),
        sa.Column("status", status, server_default="queued", nullable=False),
        sa.Column("attempt", sa.Integer(), server_default="0", nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("unique_key", sa.Text(), nullable=True),
        _ts("run_after", server_default=NOW, nullable=False),
        _ts("lease_until", nullable=True),
        sa.Column("worker", sa.Text(), nullable=True),
        sa.Column("worker_pid", sa.Integer(), nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("result", pg.JSONB(), nullable=True),
        sa.Column("errors", pg.JSONB(), server_default=sa.text("'[]'::jsonb"), nullable=False),
        _ts("created_at", server_default=NOW, nullable=False),
        _ts("started_at", nullable=True),
        _ts("finished_at", nullable=True),
        sa.PrimaryKeyConstraint("user_id", "id", name="jobs_pkey"),
        postgresql_partition_by="HASH (user_id)",
    )
    for i in range(PARTITIONS):
        op.execute(
            f"CREATE TABLE jobs_p{i} PARTITION OF jobs "
            f"FOR VALUES WITH (MODULUS {PARTITIONS}, REMAINDER {i})"
        )
    op.create_index("jobs_id_idx", "jobs", ["id"])
    op.create_index("jobs_due_idx", "jobs", ["status", "run_after"])
    op.create_index("jobs_kind_created_idx", "jobs", ["kind", "created_at"])
    op.create_index(
        "jobs_unique_live_idx",
        "jobs",
        ["user_id", "kind", "unique_key"],
        unique=True,
        postgresql_where=sa.text("unique_key IS NOT NULL AND status IN ('queued', 'running')"),
    )

    op.create_table(
        "dead_letters",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column("job_id", pg.UUID(as_uuid=True), nullable=False),
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("queue", sa.Text(), nullable=False),
        sa.Column("payload", pg.JSONB(), nullable=False),
        sa.Column("exc_type", sa.Text(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("traceback", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("retryable", sa.Boolean(), nullable=False),
        sa.Column("attempts", pg.JSONB(), nullable=False),
        sa.Column("worker", sa.Text(), nullable=True),
        _ts("first_attempt_at", nullable=True),
        _ts("created_at", server_default=NOW, nullable=False),
        _ts("retried_at", nullable=True),
    )
    op.create_index("dead_letters_created_idx", "dead_letters", ["created_at"])
    op.create_index("ix_dead_letters_job_id", "dead_letters", ["job_id"])

    op.create_table(
        "workers",
        sa.Column("name", sa.Text(), primary_key=True),
        sa.Column("hostname", sa.Text(), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("queues", pg.JSONB(), server_default=sa.text("'[]'::jsonb"), nullable=False),
        sa.Column("concurrency", sa.Integer(), server_default="0", nullable=False),
        sa.Column("status", sa.Text(), server_default="alive", nullable=False),
        _ts("started_at", server_default=NOW, nullable=False),
        _ts("heartbeat_at", server_default=NOW, nullable=False),
    )

    op.create_table(
        "audit_events",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        _ts("at", server_default=NOW, nullable=False),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("job_id", pg.UUID(as_uuid=True), nullable=True),
        sa.Column("user_id", sa.Text(), nullable=True),
        sa.Column("detail", pg.JSONB(), server_default=sa.text("'{}'::jsonb"), nullable=False),
    )
    op.create_index("audit_events_at_idx", "audit_events", ["at"])
    op.create_index("ix_audit_events_job_id", "audit_events", ["job_id"])


def downgrade() -> None:
    op.drop_table("audit_events")
    op.drop_table("workers")
    op.drop_table("dead_letters")
    op.drop_table("jobs")
    op.execute("DROP TYPE job_status")
