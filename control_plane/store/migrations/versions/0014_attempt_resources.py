"""What each attempt's process tree used: peak memory, CPU time, and the memory limit it
ran under; the latest attempt's figures are kept on its step run too.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

_COLUMNS = ("peak_memory_bytes", "cpu_seconds", "memory_limit_bytes")


def _columns() -> list[sa.Column[object]]:
    return [
        sa.Column("peak_memory_bytes", sa.BigInteger(), nullable=True),
        sa.Column("cpu_seconds", sa.Float(), nullable=True),
        sa.Column("memory_limit_bytes", sa.BigInteger(), nullable=True),
    ]


def upgrade() -> None:
    for table in ("attempts", "step_runs"):
        with op.batch_alter_table(table) as batch:
            for column in _columns():
                batch.add_column(column)


def downgrade() -> None:
    for table in ("attempts", "step_runs"):
        with op.batch_alter_table(table) as batch:
            for name in _COLUMNS:
                batch.drop_column(name)
