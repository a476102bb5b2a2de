"""SQLAlchemy models: the schema that Alembic migrations create.

``jobs`` is hash-partitioned by ``user_id``; its partitions are created by
the migration and are invisible to these models.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from jobsys.store.status import Status

_NOW = sa.text("now()")
_BACKLOG = "status = 'queued' AND dispatched_at IS NULL"


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: pg.JSONB, list[Any]: pg.JSONB}


status_type = sa.Enum(Status, name="job_status", values_callable=lambda e: [m.value for m in e])


class JobRow(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        sa.PrimaryKeyConstraint("user_id", "id", name="jobs_pkey"),
        sa.Index("jobs_id_idx", "id"),
        sa.Index("jobs_due_idx", "status", "run_after"),
        sa.Index("jobs_kind_created_idx", "kind", "created_at", "id"),
        sa.Index(
            "jobs_run_idx",
            "user_id",
            sa.text("(payload ->> 'run_id')"),
            postgresql_where=sa.text("payload ? 'run_id'"),
        ),
        sa.Index(
            "jobs_unique_live_idx",
            "user_id",
            "kind",
            "unique_key",
            unique=True,
            postgresql_where=sa.text("unique_key IS NOT NULL AND status IN ('queued', 'running')"),
        ),
        # The backlog: jobs waiting in PostgreSQL for admission, in each user's order.
        sa.Index(
            "jobs_backlog_idx",
            "queue",
            "user_id",
            sa.text("priority DESC"),
            "run_after",
            postgresql_where=sa.text(_BACKLOG),
        ),
        sa.Index(
            "jobs_urgent_idx",
            "queue",
            sa.text("priority DESC"),
            "run_after",
            postgresql_where=sa.text(f"{_BACKLOG} AND priority >= 8"),
        ),
        sa.Index(
            "jobs_published_idx",
            sa.text("priority DESC"),
            "run_after",
            postgresql_where=sa.text("status = 'queued' AND dispatched_at IS NOT NULL"),
        ),
        # With id: a claim (user_id, id, status = 'queued') finds its row through either
        # this or the primary key, even before the first ANALYZE (migration 0021).
        sa.Index(
            "jobs_user_queued_idx", "user_id", "id", postgresql_where=sa.text("status = 'queued'")
        ),
        # The API's pages of a user's jobs, newest first.
        sa.Index("jobs_user_created_idx", "user_id", "created_at", "id"),
        sa.Index(
            "jobs_coalesce_idx",
            "user_id",
            "kind",
            unique=True,
            postgresql_where=sa.text("coalesce AND status = 'queued' AND dispatched_at IS NULL"),
        ),
        sa.Index(
            "jobs_key_holders_idx",
            "concurrency_key",
            postgresql_where=sa.text(
                "concurrency_key IS NOT NULL AND (status = 'running'"
                " OR (status = 'queued' AND dispatched_at IS NOT NULL))"
            ),
        ),
        # The backlog's keyed jobs by key: whom a holder that ends must wake.
        sa.Index(
            "jobs_key_waiters_idx",
            "concurrency_key",
            "queue",
            "user_id",
            postgresql_where=sa.text(f"concurrency_key IS NOT NULL AND {_BACKLOG}"),
        ),
        {"postgresql_partition_by": "HASH (user_id)"},
    )

    id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True))
    user_id: Mapped[str] = mapped_column(sa.Text)
    kind: Mapped[str] = mapped_column(sa.Text)
    queue: Mapped[str] = mapped_column(sa.Text)
    priority: Mapped[int] = mapped_column(sa.SmallInteger, server_default="0")
    payload: Mapped[dict[str, Any]] = mapped_column(server_default=sa.text("'{}'::jsonb"))
    status: Mapped[Status] = mapped_column(status_type, server_default=Status.QUEUED.value)
    attempt: Mapped[int] = mapped_column(sa.Integer, server_default="0")
    max_attempts: Mapped[int] = mapped_column(sa.Integer)
    unique_key: Mapped[str | None] = mapped_column(sa.Text)
    run_after: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), server_default=_NOW)
    lease_until: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    worker: Mapped[str | None] = mapped_column(sa.Text)
    worker_pid: Mapped[int | None] = mapped_column(sa.Integer)
    cancel_requested: Mapped[bool] = mapped_column(sa.Boolean, server_default=sa.false())
    result: Mapped[dict[str, Any] | None] = mapped_column(pg.JSONB)
    errors: Mapped[list[Any]] = mapped_column(server_default=sa.text("'[]'::jsonb"))
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), server_default=_NOW)
    started_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    # NULL while the job waits in PostgreSQL; when its message was published.
    dispatched_at: Mapped[datetime | None] = mapped_column(
        sa.DateTime(timezone=True), server_default=_NOW
    )
    # At most ``concurrency`` jobs of one key run or wait in the broker (admission.py).
    concurrency_key: Mapped[str | None] = mapped_column(sa.Text)
    concurrency: Mapped[int | None] = mapped_column(sa.Integer)
    # One job of a coalescing kind per user waits in the backlog; requests join it.
    coalesce: Mapped[bool] = mapped_column(sa.Boolean, server_default=sa.false())
    # Postponements so far and the first one's time: postponing is bounded per kind.
    postponements: Mapped[int] = mapped_column(sa.Integer, server_default="0")
    postponed_since: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    # With tracing on: the enqueue's span context (W3C traceparent) and the last
    # attempt's, so an attempt published from this row joins its trace (NULL when off).
    trace: Mapped[dict[str, Any] | None] = mapped_column(pg.JSONB)
    # A keyed canvas member waiting for admission: its place in its chord or chain
    # (Celery's options), published with it when promoted (NULL for other jobs).
    canvas: Mapped[dict[str, Any] | None] = mapped_column(pg.JSONB)


class FairUserRow(Base):
    """A user's place in a queue's fair share: its virtual time and next due job."""

    __tablename__ = "fair_users"
    __table_args__ = (
        # In the promotion's order, ties on vtime by user_id (migration 0022).
        sa.Index(
            "fair_users_waiting_idx",
            "queue",
            "vtime",
            "user_id",
            postgresql_where=sa.text("next_due IS NOT NULL"),
        ),
    )

    queue: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    user_id: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    vtime: Mapped[float] = mapped_column(sa.Float, server_default="0")
    next_due: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    # No later than the due time of any job the user has waiting (-infinity: unknown).
    since: Mapped[datetime] = mapped_column(
        sa.DateTime(timezone=True), server_default=sa.text("'-infinity'")
    )


class FairQueueRow(Base):
    """A queue's virtual clock: where a user that starts waiting joins."""

    __tablename__ = "fair_queues"

    queue: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    vclock: Mapped[float] = mapped_column(sa.Float, server_default="0")


class UserLimitRow(Base):
    """A user's share of the fleet and quotas (defaults come from settings)."""

    __tablename__ = "user_limits"
    __table_args__ = (
        sa.CheckConstraint("weight > 0", name="user_limits_weight_positive"),
        sa.CheckConstraint(
            "(max_queued IS NULL OR max_queued > 0) AND (max_per_hour IS NULL OR max_per_hour > 0)",
            name="user_limits_quotas_positive",
        ),
    )

    user_id: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    weight: Mapped[float] = mapped_column(sa.Float, server_default="1")
    max_queued: Mapped[int | None] = mapped_column(sa.Integer)
    max_per_hour: Mapped[int | None] = mapped_column(sa.Integer)
    updated_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), server_default=_NOW)


class DeadLetterRow(Base):
    __tablename__ = "dead_letters"
    __table_args__ = (
        sa.Index("dead_letters_created_idx", "created_at"),
        sa.Index("dead_letters_user_created_idx", "user_id", "created_at", "id"),
    )

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    job_id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True), index=True)
    user_id: Mapped[str] = mapped_column(sa.Text)
    kind: Mapped[str] = mapped_column(sa.Text)
    queue: Mapped[str] = mapped_column(sa.Text)
    payload: Mapped[dict[str, Any]] = mapped_column()
    exc_type: Mapped[str] = mapped_column(sa.Text)
    message: Mapped[str] = mapped_column(sa.Text)
    traceback: Mapped[str] = mapped_column(sa.Text)
    reason: Mapped[str] = mapped_column(sa.Text)
    retryable: Mapped[bool] = mapped_column(sa.Boolean)
    attempts: Mapped[list[Any]] = mapped_column()
    worker: Mapped[str | None] = mapped_column(sa.Text)
    first_attempt_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), server_default=_NOW)
    retried_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))


class WorkerRowModel(Base):
    __tablename__ = "workers"

    name: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    hostname: Mapped[str] = mapped_column(sa.Text)
    pid: Mapped[int] = mapped_column(sa.Integer)
    queues: Mapped[list[Any]] = mapped_column(server_default=sa.text("'[]'::jsonb"))
    concurrency: Mapped[int] = mapped_column(sa.Integer, server_default="0")
    status: Mapped[str] = mapped_column(sa.Text, server_default="alive")
    started_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), server_default=_NOW)
    heartbeat_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), server_default=_NOW)


class AuditEventRow(Base):
    __tablename__ = "audit_events"
    __table_args__ = (sa.Index("audit_events_at_idx", "at"),)

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), server_default=_NOW)
    actor: Mapped[str] = mapped_column(sa.Text)
    action: Mapped[str] = mapped_column(sa.Text)
    job_id: Mapped[uuid.UUID | None] = mapped_column(pg.UUID(as_uuid=True), index=True)
    user_id: Mapped[str | None] = mapped_column(sa.Text)
    detail: Mapped[dict[str, Any]] = mapped_column(server_default=sa.text("'{}'::jsonb"))


class ApiTokenRow(Base):
    """A bearer token of the HTTP API: an admin's, or one user's (only its sha256 is kept)."""

    __tablename__ = "api_tokens"
    __table_args__ = (
        sa.CheckConstraint("admin <> (user_id IS NOT NULL)", name="api_tokens_scope"),
    )

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    digest: Mapped[bytes] = mapped_column(sa.LargeBinary, unique=True)
    name: Mapped[str] = mapped_column(sa.Text)
    user_id: Mapped[str | None] = mapped_column(sa.Text)
    admin: Mapped[bool] = mapped_column(sa.Boolean)
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), server_default=_NOW)
    revoked_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))


class UserRow(Base):
    __tablename__ = "users"
    __table_args__ = (
        sa.CheckConstraint(
            "sync_interval IS NULL OR sync_interval > 0", name="users_sync_interval_positive"
        ),
        # In the tick's order, ties on the due time by id (migration 0023).
        sa.Index(
            "users_sync_due_idx", "next_sync_at", "id", postgresql_where=sa.text("NOT paused")
        ),
    )

    id: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    email: Mapped[str] = mapped_column(sa.Text, unique=True)
    region: Mapped[str] = mapped_column(sa.Text, server_default="default")
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), server_default=_NOW)
    paused: Mapped[bool] = mapped_column(sa.Boolean, server_default=sa.false())
    paused_reason: Mapped[str | None] = mapped_column(sa.Text)
    # Periodic syncs (``schedule.py``): due at next_sync_at; NULL interval: the settings'.
    sync_interval: Mapped[float | None] = mapped_column(sa.Float)
    next_sync_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), server_default=_NOW)


class QuotaUsageRow(Base):
    """A limited user's enqueues in one minute (``quotas.py``)."""

    __tablename__ = "quota_usage"

    user_id: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    minute: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), primary_key=True)
    n: Mapped[int] = mapped_column(sa.Integer)


class CredentialRow(Base):
    __tablename__ = "credentials"

    user_id: Mapped[str] = mapped_column(
        sa.Text, sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    provider: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    token: Mapped[bytes] = mapped_column(sa.LargeBinary)
    refresh_token: Mapped[bytes | None] = mapped_column(sa.LargeBinary)
    expiry: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    status: Mapped[str] = mapped_column(sa.Text, server_default="valid")
    status_reason: Mapped[str | None] = mapped_column(sa.Text)
    updated_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), server_default=_NOW)


class SyncCursorRow(Base):
    __tablename__ = "sync_cursors"

    user_id: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    source: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    cursor: Mapped[str] = mapped_column(sa.Text)
    updated_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), server_default=_NOW)


class RawMessageRow(Base):
    __tablename__ = "raw_messages"

    user_id: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    gmail_id: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    thread_id: Mapped[str] = mapped_column(sa.Text)
    label_ids: Mapped[list[Any]] = mapped_column(server_default=sa.text("'[]'::jsonb"))
    raw: Mapped[bytes] = mapped_column(sa.LargeBinary)
    internal_date: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    fetched_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), server_default=_NOW)
    normalized_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))


class RawEventRow(Base):
    __tablename__ = "raw_events"

    user_id: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    event_id: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    body: Mapped[dict[str, Any]] = mapped_column()
    fetched_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), server_default=_NOW)
    normalized_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))


class MessageRow(Base):
    __tablename__ = "messages"

    user_id: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    gmail_id: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    thread_id: Mapped[str] = mapped_column(sa.Text)
    subject: Mapped[str | None] = mapped_column(sa.Text)
    from_addr: Mapped[str | None] = mapped_column(sa.Text)
    from_name: Mapped[str | None] = mapped_column(sa.Text)
    to_addrs: Mapped[list[Any]] = mapped_column(server_default=sa.text("'[]'::jsonb"))
    cc_addrs: Mapped[list[Any]] = mapped_column(server_default=sa.text("'[]'::jsonb"))
    sent_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    labels: Mapped[list[Any]] = mapped_column(server_default=sa.text("'[]'::jsonb"))
    text_body: Mapped[str | None] = mapped_column(sa.Text)
    error: Mapped[str | None] = mapped_column(sa.Text)
    defects: Mapped[list[Any]] = mapped_column(server_default=sa.text("'[]'::jsonb"))
    # Every From mailbox ({"addr", "name"}); from_addr/from_name repeat the first.
    from_addrs: Mapped[list[Any]] = mapped_column(server_default=sa.text("'[]'::jsonb"))
    invites: Mapped[list[Any]] = mapped_column(server_default=sa.text("'[]'::jsonb"))


class EventRow(Base):
    __tablename__ = "events"

    user_id: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    event_id: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    summary: Mapped[str | None] = mapped_column(sa.Text)
    status: Mapped[str] = mapped_column(sa.Text)
    start_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    end_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    all_day: Mapped[bool] = mapped_column(sa.Boolean, server_default=sa.false())
    attendees: Mapped[list[Any]] = mapped_column(server_default=sa.text("'[]'::jsonb"))
    organizer: Mapped[str | None] = mapped_column(sa.Text)
    recurring_event_id: Mapped[str | None] = mapped_column(sa.Text)
    error: Mapped[str | None] = mapped_column(sa.Text)
    ical_uid: Mapped[str | None] = mapped_column(sa.Text)


class ContactRow(Base):
    __tablename__ = "contacts"

    user_id: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    addr: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    display_name: Mapped[str] = mapped_column(sa.Text, server_default="")


class InteractionRow(Base):
    __tablename__ = "interactions"

    user_id: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    kind: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    source_id: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    addr: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    direction: Mapped[str] = mapped_column(sa.Text)
    at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))


class ContactScoreRow(Base):
    __tablename__ = "contact_scores"

    user_id: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    addr: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    score: Mapped[float] = mapped_column(sa.Float)
    rank: Mapped[int] = mapped_column(sa.Integer)
    messages_out: Mapped[int] = mapped_column(sa.Integer)
    messages_in: Mapped[int] = mapped_column(sa.Integer)
    meetings: Mapped[int] = mapped_column(sa.Integer)
    last_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))


class DigestRow(Base):
    __tablename__ = "digests"

    user_id: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    generated_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    body: Mapped[dict[str, Any]] = mapped_column()


class PipelineRunRow(Base):
    __tablename__ = "pipeline_runs"
    __table_args__ = (
        sa.Index("pipeline_runs_user_idx", "user_id", "created_at"),
        # The stats: runs finished in a window, and each user's last successful one.
        sa.Index("pipeline_runs_finished_idx", "finished_at"),
        sa.Index(
            "pipeline_runs_user_succeeded_idx",
            "user_id",
            "finished_at",
            postgresql_where=sa.text("status = 'succeeded'"),
        ),
        # At most one running pipeline per user: a second sync joins the first.
        sa.Index(
            "pipeline_runs_one_running_idx",
            "user_id",
            unique=True,
            postgresql_where=sa.text("status = 'running'"),
        ),
        sa.CheckConstraint(
            "follow_up IS NULL OR follow_up IN ('incremental', 'full')",
            name="pipeline_runs_follow_up_kind",
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True), primary_key=True)
    user_id: Mapped[str] = mapped_column(sa.Text)
    status: Mapped[str] = mapped_column(sa.Text, server_default="running")
    full_sync: Mapped[bool] = mapped_column(sa.Boolean, server_default=sa.false())
    steps: Mapped[dict[str, Any]] = mapped_column(server_default=sa.text("'{}'::jsonb"))
    error: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), server_default=_NOW)
    finished_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    # A sync asked for while this run ran: the run after it ('incremental' or 'full').
    follow_up: Mapped[str | None] = mapped_column(sa.Text)


class AlertBaselineRow(Base):
    """One alert series' baseline and streak between evaluations (``jobsys/alerts``)."""

    __tablename__ = "alert_baselines"

    signal: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    subject: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    n: Mapped[int] = mapped_column(sa.Integer, server_default="0")
    level: Mapped[float] = mapped_column(sa.Float, server_default="0")
    recent: Mapped[list[Any]] = mapped_column(server_default=sa.text("'[]'::jsonb"))
    streak: Mapped[int] = mapped_column(sa.Integer, server_default="0")
    firing: Mapped[bool] = mapped_column(sa.Boolean, server_default=sa.false())
    evaluated_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), server_default=_NOW)


class AlertRow(Base):
    """An incident, open until resolved; its two notifications are an outbox (``*_sent_at``)."""

    __tablename__ = "alerts"
    __table_args__ = (
        # One open incident per series: a second detector cannot fire it twice.
        sa.Index(
            "alerts_one_open_idx",
            "signal",
            "subject",
            unique=True,
            postgresql_where=sa.text("resolved_at IS NULL"),
        ),
        sa.Index("alerts_opened_idx", "opened_at"),
        sa.Index(
            "alerts_unsent_idx",
            "id",
            postgresql_where=sa.text(
                "fired_sent_at IS NULL OR (resolved_at IS NOT NULL AND resolved_sent_at IS NULL)"
            ),
        ),
    )

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    signal: Mapped[str] = mapped_column(sa.Text)
    subject: Mapped[str] = mapped_column(sa.Text)
    value: Mapped[float] = mapped_column(sa.Float)
    baseline: Mapped[float] = mapped_column(sa.Float)
    threshold: Mapped[float] = mapped_column(sa.Float)
    peak: Mapped[float] = mapped_column(sa.Float)
    opened_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    resolved_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    resolved_value: Mapped[float | None] = mapped_column(sa.Float)
    fired_sent_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    resolved_sent_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    send_attempts: Mapped[int] = mapped_column(sa.Integer, server_default="0")
    send_error: Mapped[str | None] = mapped_column(sa.Text)


class AttemptRow(Base):
    """One recorded attempt and its cost, written by the statement that records its outcome."""

    __tablename__ = "attempts"
    __table_args__ = (
        sa.Index("attempts_finished_idx", "finished_at"),
        sa.Index("attempts_user_finished_idx", "user_id", "finished_at"),
    )

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    job_id: Mapped[uuid.UUID] = mapped_column(pg.UUID(as_uuid=True))
    user_id: Mapped[str] = mapped_column(sa.Text)
    kind: Mapped[str] = mapped_column(sa.Text)
    queue: Mapped[str] = mapped_column(sa.Text)
    attempt: Mapped[int] = mapped_column(sa.Integer)
    # succeeded, retried, postponed, dead or cancelled (hooks.Outcome).
    outcome: Mapped[str] = mapped_column(sa.Text)
    reason: Mapped[str | None] = mapped_column(sa.Text)
    priority: Mapped[int] = mapped_column(sa.SmallInteger)
    # The job's enqueue time: SLA compliance is measured from it.
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    # When the attempt was due (run_after at its claim): start latency is measured from it.
    due_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    started_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    finished_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), server_default=_NOW)
    # NULL: not measured (an attempt settled by the sweeper or a worker's main process).
    cpu_s: Mapped[float | None] = mapped_column(sa.Float)
    wall_s: Mapped[float | None] = mapped_column(sa.Float)
    google_requests: Mapped[int | None] = mapped_column(sa.Integer)
    quota_units: Mapped[int | None] = mapped_column(sa.Integer)


class AttemptHourRow(Base):
    """Attempts that ended in one whole hour, of one kind, outcome and reason ('' for none)."""

    __tablename__ = "attempt_hours"

    hour: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), primary_key=True)
    kind: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    outcome: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    reason: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    attempts: Mapped[int] = mapped_column(sa.BigInteger)
    cpu_s: Mapped[float] = mapped_column(sa.Float)
    wall_s: Mapped[float] = mapped_column(sa.Float)
    google_requests: Mapped[int] = mapped_column(sa.BigInteger)
    quota_units: Mapped[int] = mapped_column(sa.BigInteger)


class AttemptHourBucketRow(Base):
    """One histogram bucket of an hour and kind (``jobsys/store/rollup.py``): attempts of a
    priority band whose start latency fell in it, or (band '') successes whose age did."""

    __tablename__ = "attempt_hour_buckets"

    hour: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), primary_key=True)
    kind: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    band: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    bucket: Mapped[int] = mapped_column(sa.SmallInteger, primary_key=True)
    started: Mapped[int] = mapped_column(sa.BigInteger)
    succeeded: Mapped[int] = mapped_column(sa.BigInteger)


class AttemptRollupRow(Base):
    """The one row: every attempt that ended before ``rolled_until`` is rolled (NULL: none)."""

    __tablename__ = "attempt_rollup"
    __table_args__ = (sa.CheckConstraint("id = 1", name="attempt_rollup_one_row"),)

    id: Mapped[int] = mapped_column(sa.SmallInteger, primary_key=True, autoincrement=False)
    rolled_until: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
