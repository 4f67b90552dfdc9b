"""Scheduling: live schedule state, backfills, events; a scheduled fire time makes one run.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from control_plane.store.types import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "schedules",
        sa.Column(
            "pipeline_id",
            _id,
            sa.ForeignKey("pipelines.id", ondelete="CASCADE"),
            primary_key=True,
            autoincrement=False,
        ),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("next_fire_time", UTCDateTime(), nullable=True),
        sa.Column("last_fire_time", UTCDateTime(), nullable=True),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("pause_reason", sa.Text(), nullable=False),
        sa.Column("pause_time", UTCDateTime(), nullable=True),
        sa.Column("consecutive_failures", sa.Integer(), nullable=False),
        sa.Column("update_time", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_schedules_next_fire_time", "schedules", ["next_fire_time"])
    op.create_table(
        "backfills",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column(
            "pipeline_id", _id, sa.ForeignKey("pipelines.id", ondelete="RESTRICT"), nullable=False
        ),
        sa.Column("pipeline", sa.String(63), nullable=False),
        sa.Column("start_time", UTCDateTime(), nullable=False),
        sa.Column("end_time", UTCDateTime(), nullable=False),
        sa.Column("only_missing", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("runs_total", sa.Integer(), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("create_time", UTCDateTime(), nullable=False),
        sa.Column("finish_time", UTCDateTime(), nullable=True),
    )
    op.create_index("ix_backfills_pipeline_id", "backfills", ["pipeline_id"])
    op.create_table(
        "events",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("type", sa.String(200), nullable=False),
        sa.Column("source", sa.String(200), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("run_ids", sa.JSON(), nullable=False),
        sa.Column("create_time", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_events_type_create_time", "events", ["type", "create_time"])
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("backfill_id", sa.String(32), nullable=True))
    op.create_index("ix_runs_backfill_id", "runs", ["backfill_id"])
    op.create_index(
        "uq_runs_scheduled_logical_time",
        "runs",
        ["pipeline_id", "logical_time"],
        unique=True,
        sqlite_where=sa.text("trigger_kind = 'schedule'"),
        postgresql_where=sa.text("trigger_kind = 'schedule'"),
    )


def downgrade() -> None:
    op.drop_index("uq_runs_scheduled_logical_time", table_name="runs")
    op.drop_index("ix_runs_backfill_id", table_name="runs")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("backfill_id")
    op.drop_index("ix_events_type_create_time", table_name="events")
    op.drop_table("events")
    op.drop_index("ix_backfills_pipeline_id", table_name="backfills")
    op.drop_table("backfills")
    op.drop_index("ix_schedules_next_fire_time", table_name="schedules")
    op.drop_table("schedules")
