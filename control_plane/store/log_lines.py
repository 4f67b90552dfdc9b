"""Run log lines: a transaction's lines go in one multi-row insert when it commits
(``store/pending``), in the order they were written, so their ids — the run log's sequence
numbers — follow that order; an agent's batch is inserted at once. Lines are not visible to
reads made by the transaction that writes them, and a transaction that rolls back writes
none."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, insert
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.store import pending as pending_rows
from control_plane.store.models import LogLineRow

__all__ = ["add", "insert_now", "pending"]

_TABLE = cast(Table, LogLineRow.__table__)


def add(
    session: AsyncSession,
    run_id: str,
    time: datetime,
    text: str,
    *,
    step: str = "",
    attempt: int = 0,
    stream: str = "system",
) -> None:
    """Write a line when the transaction commits."""
    pending_rows.add(
        session,
        _TABLE,
        {
            "run_id": run_id,
            "time": time,
            "step": step,
            "attempt": attempt,
            "stream": stream,
            "text": text,
        },
    )


def pending(session: AsyncSession) -> list[dict[str, Any]]:
    """The lines ``session`` will write when it commits, in order: the list itself, so a
    caller that builds runs ahead of time (the scheduler) may restamp their times or drop
    the lines of a run it does not write."""
    return pending_rows.rows_of(session, _TABLE)


async def insert_now(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Write lines (dicts of the columns) at once, in one statement."""
    if rows:
        await session.execute(insert(_TABLE), rows)
