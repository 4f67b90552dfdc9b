"""Run log lines, written with one multi-row Core ``INSERT`` per transaction.

A transition writes a line or two per step (``Step 2: transform (127 records)``); an agent
sends its step's output in batches. As ORM objects every line cost an instance, its state
and a unit-of-work flush; here a line is a dict, and the lines a transaction wrote go in
one statement just before it commits (in the order they were written, so their ids — the
run log's sequence numbers — follow that order). Lines are not visible to reads made by
the transaction that writes them, and a transaction that rolls back writes none."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, event, insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from control_plane.store.models import LogLineRow

__all__ = ["add", "insert_now", "pending"]

_PENDING = "legato.log_lines"
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
    session.info.setdefault(_PENDING, []).append(
        {
            "run_id": run_id,
            "time": time,
            "step": step,
            "attempt": attempt,
            "stream": stream,
            "text": text,
        }
    )


def pending(session: AsyncSession) -> list[dict[str, Any]]:
    """The lines ``session`` will write when it commits, in order: the list itself, so a
    caller that builds runs ahead of time (the scheduler) may restamp their times or drop
    the lines of a run it does not write."""
    rows: list[dict[str, Any]] = session.info.setdefault(_PENDING, [])
    return rows


async def insert_now(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Write lines (dicts of the columns) at once, in one statement."""
    if rows:
        await session.execute(insert(_TABLE), rows)


@event.listens_for(Session, "before_commit")
def _write_pending(session: Session) -> None:
    rows = session.info.pop(_PENDING, None)
    if rows:
        session.execute(insert(_TABLE), rows)


@event.listens_for(Session, "after_rollback")
def _drop_pending(session: Session) -> None:
    session.info.pop(_PENDING, None)
