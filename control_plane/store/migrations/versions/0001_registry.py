"""Pipelines, their versions, request ids and the audit log.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from control_plane.store.types import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "pipelines",
        sa.Column("id", _id, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("latest_version", sa.Integer(), nullable=False),
        sa.Column("archived", sa.Boolean(), nullable=False),
        sa.Column("create_time", UTCDateTime(), nullable=False),
        sa.Column("update_time", UTCDateTime(), nullable=False),
        sa.Column("archive_time", UTCDateTime(), nullable=True),
        sa.UniqueConstraint("name", name="uq_pipelines_name"),
    )
    op.create_table(
        "pipeline_versions",
        sa.Column("id", _id, primary_key=True, autoincrement=True),
        sa.Column(
            "pipeline_id",
            _id,
            sa.ForeignKey("pipelines.id", ondelete="RESTRICT"),
            nullable=False,
        ),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("spec", sa.Text(), nullable=False),
        sa.Column("content_hash", sa.String(80), nullable=False),
        sa.Column("author", sa.String(200), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("create_time", UTCDateTime(), nullable=False),
        sa.Column("rollback_of", sa.Integer(), nullable=True),
        sa.UniqueConstraint("pipeline_id", "number", name="uq_pipeline_versions_number"),
    )
    op.create_table(
        "requests",
        sa.Column("method", sa.String(100), primary_key=True),
        sa.Column("request_id", sa.String(200), primary_key=True),
        sa.Column("result", sa.JSON(), nullable=False),
        sa.Column("create_time", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", _id, primary_key=True, autoincrement=True),
        sa.Column("time", UTCDateTime(), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("action", sa.String(100), nullable=False),
        sa.Column("resource", sa.String(300), nullable=False),
        sa.Column("request_id", sa.String(200), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
    )
    op.create_index("ix_audit_log_resource_time", "audit_log", ["resource", "time"])


def downgrade() -> None:
    op.drop_index("ix_audit_log_resource_time", table_name="audit_log")
    op.drop_table("audit_log")
    op.drop_table("requests")
    op.drop_table("pipeline_versions")
    op.drop_table("pipelines")
