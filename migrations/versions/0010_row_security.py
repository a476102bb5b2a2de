"""row-level security on every user-owned table: the jobsys_api role sees one user's rows

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 08:40:00.000000

Two permissive policies per table (PostgreSQL ORs them):

- ``jobsys_engine``: a role that is not ``jobsys_api`` nor a member of it (directly
  or not) sees every row. The engine, the sweeper and the admin API are
  cross-tenant by design; grants (``jobsys db roles``) decide who may touch the
  tables at all. Before ``jobsys_api`` exists, every role is such a role.
- ``jobsys_tenant``: ``jobsys_api`` and its members see and write rows of the user
  named by ``SET LOCAL jobsys.user_id`` only; unset, they see nothing.

FORCE applies them to the tables' owner too; superusers and BYPASSRLS roles skip
them. A ``jobs`` partition has RLS on and no policy, so a role reading it
directly (not through ``jobs``) gets nothing; ``jobsys db roles`` also revokes it.
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

API_ROLE = "jobsys_api"
SETTING = "current_setting('jobsys.user_id', true)"

# Table -> the column naming its user.
OWNED = {
    "jobs": "user_id",
    "dead_letters": "user_id",
    "audit_events": "user_id",
    "users": "id",
    "credentials": "user_id",
    "pipeline_runs": "user_id",
    "raw_messages": "user_id",
    "raw_events": "user_id",
    "messages": "user_id",
    "events": "user_id",
    "contacts": "user_id",
    "interactions": "user_id",
    "contact_scores": "user_id",
    "digests": "user_id",
    "sync_cursors": "user_id",
    "user_limits": "user_id",
    "quota_usage": "user_id",
    "fair_users": "user_id",
}
PARTITIONS = 8
# An uncorrelated subquery: evaluated once per statement, not per row. Membership
# by oid, so that the role not existing yet is no error (pg_has_role by name is).
ENGINE = (
    "NOT EXISTS (SELECT FROM pg_roles r"
    f" WHERE r.rolname = '{API_ROLE}' AND pg_has_role(current_user, r.oid, 'MEMBER'))"
)


def upgrade() -> None:
    for table, column in OWNED.items():
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        engine = ENGINE
        op.execute(f"CREATE POLICY jobsys_engine ON {table} USING ({engine}) WITH CHECK ({engine})")
        tenant = f"{column} = {SETTING}"
        op.execute(f"CREATE POLICY jobsys_tenant ON {table} USING ({tenant}) WITH CHECK ({tenant})")
    for i in range(PARTITIONS):
        op.execute(f"ALTER TABLE jobs_p{i} ENABLE ROW LEVEL SECURITY")


def downgrade() -> None:
    for i in range(PARTITIONS):
        op.execute(f"ALTER TABLE jobs_p{i} DISABLE ROW LEVEL SECURITY")
    for table in OWNED:
        op.execute(f"DROP POLICY jobsys_tenant ON {table}")
        op.execute(f"DROP POLICY jobsys_engine ON {table}")
        op.execute(f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
