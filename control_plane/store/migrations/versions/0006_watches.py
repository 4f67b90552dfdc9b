"""Watches: one row per database trigger of each non-archived pipeline's latest version,
with the agent that watches it, filled in for the pipelines that exist already.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

from control_plane.store.types import UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    table = op.create_table(
        "watches",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column(
            "pipeline_id", _id, sa.ForeignKey("pipelines.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("pipeline", sa.String(63), nullable=False),
        sa.Column("connection", sa.String(100), nullable=False),
        sa.Column("trigger", sa.JSON(), nullable=False),
        sa.Column("agent", sa.String(100), nullable=True),
        sa.Column("replica", sa.String(100), nullable=True),
        sa.Column("claim_time", UTCDateTime(), nullable=True),
        sa.Column("watermark", sa.Text(), nullable=False),
        sa.Column("change_time", UTCDateTime(), nullable=True),
        sa.Column("create_time", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_watches_pipeline_id", "watches", ["pipeline_id"])
    latest = sa.text(
        "SELECT p.id, p.name, v.spec FROM pipelines p JOIN pipeline_versions v "
        "ON v.pipeline_id = p.id AND v.number = p.latest_version WHERE NOT p.archived"
    )
    now = datetime.now(UTC)
    rows = [
        {
            "id": watch_id(pipeline_id, trigger),
            "pipeline_id": pipeline_id,
            "pipeline": name,
            "connection": str(trigger.get("connection") or ""),
            "trigger": trigger,
            "watermark": "",
            "create_time": now,
        }
        for pipeline_id, name, spec in op.get_bind().execute(latest)
        for trigger in _database_triggers(spec)
    ]
    if rows:
        op.bulk_insert(table, rows)


def watch_id(pipeline_id: int, trigger: dict[str, Any]) -> str:
    """The same id as ``control_plane.triggers.watches.watch_id`` gives."""
    text = json.dumps(trigger, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return f"{pipeline_id}-{hashlib.sha256(text.encode()).hexdigest()[:24]}"


def _database_triggers(spec_json: str) -> list[dict[str, Any]]:
    triggers = json.loads(spec_json).get("triggers") or []
    found: dict[str, dict[str, Any]] = {}
    for trigger in triggers:
        database = trigger.get("database")
        if isinstance(database, dict):
            found.setdefault(json.dumps(database, sort_keys=True), database)
    return list(found.values())


def downgrade() -> None:
    op.drop_index("ix_watches_pipeline_id", table_name="watches")
    op.drop_table("watches")
