"""Request fingerprints: what the first call with a request id asked for (a SHA-256 of its
method and fields, and per field a digest and a short preview), so the id sent again with
another request is refused instead of replaying the first result (``store/requests.py``).
Existing rows keep none and replay as before.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("requests") as requests:
        requests.add_column(sa.Column("fingerprint", sa.String(64), nullable=True))
        requests.add_column(sa.Column("fields", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("requests") as requests:
        requests.drop_column("fields")
        requests.drop_column("fingerprint")
