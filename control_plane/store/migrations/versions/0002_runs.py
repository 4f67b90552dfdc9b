"""Runs, step runs, attempts (leases), run logs and agents.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from control_plane.store.types import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _text(name: str) -> sa.Column[str]:
    return sa.Column(name, sa.Text(), nullable=False)


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column(
            "pipeline_id", _id, sa.ForeignKey("pipelines.id", ondelete="RESTRICT"), nullable=False
        ),
        sa.Column("pipeline", sa.String(63), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("trigger_kind", sa.String(16), nullable=False),
        sa.Column("logical_time", UTCDateTime(), nullable=True),
        sa.Column("trigger", sa.JSON(), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("request_id", sa.String(200), nullable=True),
        sa.Column("create_time", UTCDateTime(), nullable=False),
        sa.Column("start_time", UTCDateTime(), nullable=True),
        sa.Column("end_time", UTCDateTime(), nullable=True),
        sa.Column("deadline_time", UTCDateTime(), nullable=True),
        _text("error"),
        _text("waiting_reason"),
        sa.Column("trace_id", sa.String(32), nullable=False),
        sa.Column("span_id", sa.String(16), nullable=False),
    )
    op.create_index("ix_runs_pipeline_create_time", "runs", ["pipeline_id", "create_time"])
    op.create_index("ix_runs_status", "runs", ["status"])
    op.create_table(
        "step_runs",
        sa.Column("id", _id, primary_key=True, autoincrement=True),
        sa.Column(
            "run_id", sa.String(32), sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("not_before", UTCDateTime(), nullable=True),
        sa.Column("selector", sa.JSON(), nullable=False),
        sa.Column("agent", sa.String(100), nullable=False),
        sa.Column("records_in", sa.BigInteger(), nullable=True),
        sa.Column("records_out", sa.BigInteger(), nullable=True),
        sa.Column("output", sa.JSON(), nullable=False),
        _text("error"),
        sa.Column("failure_kind", sa.String(16), nullable=False),
        sa.Column("start_time", UTCDateTime(), nullable=True),
        sa.Column("end_time", UTCDateTime(), nullable=True),
        _text("waiting_reason"),
        sa.Column("child_run_id", sa.String(32), nullable=True),
        sa.UniqueConstraint("run_id", "name", name="uq_step_runs_run_id"),
    )
    op.create_index("ix_step_runs_status", "step_runs", ["status"])
    op.create_table(
        "attempts",
        sa.Column("id", _id, primary_key=True, autoincrement=True),
        sa.Column(
            "step_run_id", _id, sa.ForeignKey("step_runs.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("run_id", sa.String(32), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("lease_id", sa.String(32), nullable=False),
        sa.Column("agent", sa.String(100), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("lease_expire_time", UTCDateTime(), nullable=False),
        sa.Column("create_time", UTCDateTime(), nullable=False),
        sa.Column("start_time", UTCDateTime(), nullable=True),
        sa.Column("end_time", UTCDateTime(), nullable=True),
        sa.Column("records_in", sa.BigInteger(), nullable=True),
        sa.Column("records_out", sa.BigInteger(), nullable=True),
        _text("error"),
        sa.Column("failure_kind", sa.String(16), nullable=False),
        sa.UniqueConstraint("lease_id", name="uq_attempts_lease_id"),
        sa.UniqueConstraint("step_run_id", "number", name="uq_attempts_step_run_id"),
    )
    op.create_index("ix_attempts_status_expire", "attempts", ["status", "lease_expire_time"])
    op.create_index("ix_attempts_run_id", "attempts", ["run_id"])
    op.create_table(
        "log_lines",
        sa.Column("id", _id, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(32), nullable=False),
        sa.Column("time", UTCDateTime(), nullable=False),
        sa.Column("step", sa.String(63), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("stream", sa.String(8), nullable=False),
        _text("text"),
    )
    op.create_index("ix_log_lines_run_id_id", "log_lines", ["run_id", "id"])
    op.create_table(
        "agents",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("instance_id", sa.String(64), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("slots", sa.Integer(), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("hostname", sa.String(255), nullable=False),
        sa.Column("connections", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("replica", sa.String(100), nullable=False),
        sa.Column("connect_time", UTCDateTime(), nullable=False),
        sa.Column("last_seen_time", UTCDateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("agents")
    op.drop_index("ix_log_lines_run_id_id", table_name="log_lines")
    op.drop_table("log_lines")
    op.drop_index("ix_attempts_run_id", table_name="attempts")
    op.drop_index("ix_attempts_status_expire", table_name="attempts")
    op.drop_table("attempts")
    op.drop_index("ix_step_runs_status", table_name="step_runs")
    op.drop_table("step_runs")
    op.drop_index("ix_runs_status", table_name="runs")
    op.drop_index("ix_runs_pipeline_create_time", table_name="runs")
    op.drop_table("runs")
