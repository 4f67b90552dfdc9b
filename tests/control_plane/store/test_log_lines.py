"""A transaction's run log lines go in one insert when it commits, in the order they were
written; a transaction that rolls back writes none."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from control_plane.store import log_lines
from control_plane.store.db import Database
from control_plane.store.migrate import upgrade
from control_plane.store.models import LogLineRow

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


async def test_lines_are_written_at_commit_in_order_and_dropped_on_rollback(
    db_url: str,
) -> None:
    db = Database(db_url)
    await upgrade(db)
    try:
        async with db.write() as session:
            for i in range(5):
                log_lines.add(session, "run-1", NOW, f"line {i}", step="s", attempt=1)
        with pytest.raises(RuntimeError):
            async with db.write() as session:
                log_lines.add(session, "run-1", NOW, "never")
                raise RuntimeError("the transaction fails")
        async with db.write() as session:
            log_lines.add(session, "run-1", NOW, "after")
        async with db.read() as session:
            rows = (
                await session.execute(
                    select(LogLineRow).where(LogLineRow.run_id == "run-1").order_by(LogLineRow.id)
                )
            ).scalars()
            assert [(r.text, r.step, r.attempt, r.stream) for r in rows] == [
                *[(f"line {i}", "s", 1, "system") for i in range(5)],
                ("after", "", 0, "system"),
            ]
    finally:
        await db.dispose()
