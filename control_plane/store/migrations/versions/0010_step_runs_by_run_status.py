"""Steps by (run, status): a transition asks whether its run has a step left to finish
with one index probe per unfinished status, instead of reading every step of the run, so
its cost does not grow with the run's size.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_step_runs_run_id_status", "step_runs", ["run_id", "status"])


def downgrade() -> None:
    op.drop_index("ix_step_runs_run_id_status", table_name="step_runs")
