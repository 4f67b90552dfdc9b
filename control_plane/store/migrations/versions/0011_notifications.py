"""Notifications: the outbox of messages to channels (webhooks, Slack) about runs' events,
written in the transaction of the change that causes them and sent by the delivery loop.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from control_plane.store.types import UTCDateTime

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "notifications",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("idempotency_key", sa.String(64), nullable=False, unique=True),
        sa.Column("run_id", sa.String(32), nullable=False),
        sa.Column("pipeline", sa.String(63), nullable=False),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("facts", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_time", UTCDateTime(), nullable=False),
        sa.Column("claim_expire_time", UTCDateTime(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.Column("create_time", UTCDateTime(), nullable=False),
        sa.Column("deliver_time", UTCDateTime(), nullable=True),
    )
    op.create_index("ix_notifications_due", "notifications", ["status", "next_attempt_time"])
    op.create_index("ix_notifications_run_id", "notifications", ["run_id"])


def downgrade() -> None:
    op.drop_table("notifications")
