"""Lineage: what each step run read and wrote (``step_runs.lineage``), and the edges
between datasets and pipelines that runs recorded (``lineage_edges``).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from control_plane.store.types import UTCDateTime

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("step_runs") as batch:
        batch.add_column(sa.Column("lineage", sa.JSON(), nullable=True))
    op.create_table(
        "lineage_edges",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("pipeline", sa.String(63), nullable=False),
        sa.Column("step", sa.String(63), nullable=False),
        sa.Column("first_seen_time", UTCDateTime(), nullable=False),
        sa.Column("last_seen_time", UTCDateTime(), nullable=False),
        sa.Column("last_run_id", sa.String(32), nullable=False),
        sa.UniqueConstraint(
            "source", "target", "kind", "pipeline", "step", name="uq_lineage_edges_source"
        ),
    )
    op.create_index("ix_lineage_edges_target", "lineage_edges", ["target"])


def downgrade() -> None:
    op.drop_index("ix_lineage_edges_target", "lineage_edges")
    op.drop_table("lineage_edges")
    with op.batch_alter_table("step_runs") as batch:
        batch.drop_column("lineage")
