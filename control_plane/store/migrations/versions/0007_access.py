"""Access: API tokens with roles, agent enrolment tokens, the credential each agent used,
and an activity log that says who (actor kind), about which pipeline, and how it ended.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from control_plane.store.types import UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("creator", sa.String(200), nullable=False),
        sa.Column("create_time", UTCDateTime(), nullable=False),
        sa.Column("expire_time", UTCDateTime(), nullable=True),
        sa.Column("revoke_time", UTCDateTime(), nullable=True),
        sa.Column("last_use_time", UTCDateTime(), nullable=True),
    )
    op.create_index(
        "uq_api_tokens_live_name",
        "api_tokens",
        ["name"],
        unique=True,
        sqlite_where=sa.text("revoke_time IS NULL"),
        postgresql_where=sa.text("revoke_time IS NULL"),
    )
    op.create_table(
        "agent_tokens",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("agent", sa.String(100), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("connections", sa.JSON(), nullable=False),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("creator", sa.String(200), nullable=False),
        sa.Column("create_time", UTCDateTime(), nullable=False),
        sa.Column("expire_time", UTCDateTime(), nullable=True),
        sa.Column("revoke_time", UTCDateTime(), nullable=True),
        sa.Column("last_use_time", UTCDateTime(), nullable=True),
    )
    op.create_index("ix_agent_tokens_agent", "agent_tokens", ["agent"])
    with op.batch_alter_table("agents") as agents:
        agents.add_column(
            sa.Column("credential", sa.String(200), nullable=False, server_default="")
        )
    with op.batch_alter_table("audit_log") as audit:
        audit.add_column(
            sa.Column("actor_kind", sa.String(16), nullable=False, server_default="system")
        )
        audit.add_column(sa.Column("pipeline", sa.String(63), nullable=True))
        audit.add_column(
            sa.Column("outcome", sa.String(16), nullable=False, server_default="succeeded")
        )
        audit.add_column(sa.Column("code", sa.Integer(), nullable=False, server_default="0"))
        audit.add_column(sa.Column("error", sa.Text(), nullable=False, server_default=""))
    # Entries written before this revision: their pipeline from their resource.
    op.execute(
        "UPDATE audit_log SET pipeline = substr(resource, 11) WHERE resource LIKE 'pipelines/%'"
    )
    op.create_index("ix_audit_log_pipeline_id", "audit_log", ["pipeline", "id"])
    op.create_index("ix_audit_log_actor_id", "audit_log", ["actor", "id"])
    op.create_index("ix_audit_log_time", "audit_log", ["time"])


def downgrade() -> None:
    op.drop_index("ix_audit_log_time", table_name="audit_log")
    op.drop_index("ix_audit_log_actor_id", table_name="audit_log")
    op.drop_index("ix_audit_log_pipeline_id", table_name="audit_log")
    with op.batch_alter_table("audit_log") as audit:
        for column in ("error", "code", "outcome", "pipeline", "actor_kind"):
            audit.drop_column(column)
    with op.batch_alter_table("agents") as agents:
        agents.drop_column("credential")
    op.drop_index("ix_agent_tokens_agent", table_name="agent_tokens")
    op.drop_table("agent_tokens")
    op.drop_index("uq_api_tokens_live_name", table_name="api_tokens")
    op.drop_table("api_tokens")
