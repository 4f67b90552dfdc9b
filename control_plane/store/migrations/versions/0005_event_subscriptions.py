"""Event subscriptions: the event types each pipeline's latest version has a trigger for,
filled in for the pipelines that exist already.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
# Longer types cannot be published (EventService refuses them), so they subscribe to nothing.
_MAX_TYPE = 200


def upgrade() -> None:
    table = op.create_table(
        "event_subscriptions",
        sa.Column(
            "pipeline_id",
            _id,
            sa.ForeignKey("pipelines.id", ondelete="CASCADE"),
            primary_key=True,
            autoincrement=False,
        ),
        sa.Column("type", sa.String(_MAX_TYPE), primary_key=True),
    )
    op.create_index("ix_event_subscriptions_type", "event_subscriptions", ["type"])
    latest = sa.text(
        "SELECT p.id, v.spec FROM pipelines p JOIN pipeline_versions v "
        "ON v.pipeline_id = p.id AND v.number = p.latest_version WHERE NOT p.archived"
    )
    rows = [
        {"pipeline_id": pipeline_id, "type": event_type}
        for pipeline_id, spec in op.get_bind().execute(latest)
        for event_type in _event_types(spec)
    ]
    if rows:
        op.bulk_insert(table, rows)


def _event_types(spec_json: str) -> list[str]:
    triggers = json.loads(spec_json).get("triggers") or []
    types = {str((t.get("event") or {}).get("type") or "") for t in triggers}
    return sorted(t for t in types if t and len(t) <= _MAX_TYPE)


def downgrade() -> None:
    op.drop_index("ix_event_subscriptions_type", table_name="event_subscriptions")
    op.drop_table("event_subscriptions")
