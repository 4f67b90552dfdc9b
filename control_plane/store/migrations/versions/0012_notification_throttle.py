"""Notifications are throttled: each row carries the key of the pipeline's channel it
goes to, so a repeat of the channel's last event within its window is recorded as
suppressed instead of sent.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("notifications") as batch:
        batch.add_column(
            sa.Column("throttle_key", sa.String(40), nullable=False, server_default="")
        )
    op.create_index("ix_notifications_throttle", "notifications", ["throttle_key", "id"])


def downgrade() -> None:
    op.drop_index("ix_notifications_throttle", "notifications")
    with op.batch_alter_table("notifications") as batch:
        batch.drop_column("throttle_key")
