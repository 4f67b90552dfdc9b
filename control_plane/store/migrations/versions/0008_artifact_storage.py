"""Artifacts' bytes stored uncompressed out of line on PostgreSQL (STORAGE EXTERNAL), so
reading one chunk of a large artifact fetches only that chunk's TOAST pages instead of
decompressing the whole value (see ``store/blobs.py``). Nothing to do on SQLite. Applies
to rows written from now on; existing rows keep their storage until rewritten.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE artifacts ALTER COLUMN data SET STORAGE EXTERNAL")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE artifacts ALTER COLUMN data SET STORAGE EXTENDED")
