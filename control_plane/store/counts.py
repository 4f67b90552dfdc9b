"""Counts for the metrics page (``control_plane/metrics``), read when Prometheus scrapes,
never on the hot path. Each is one ``GROUP BY`` or ``count`` over an indexed status column,
restricted to the statuses that end (unfinished runs and steps, unsent notifications), so
its cost follows the work in flight, not the size of the history."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.statuses import TRIGGER_KIND, StepStatus
from control_plane.store.models import NotificationRow, RunRow, StepRunRow

__all__ = ["by_status", "steps_waiting_for_agent"]


async def by_status(
    session: AsyncSession,
    table: type[RunRow | StepRunRow | NotificationRow],
    statuses: Collection[str],
) -> dict[str, int]:
    """How many rows of ``table`` have each of ``statuses`` (0 for those none has)."""
    column: Any = table.status
    rows = await session.execute(
        select(column, func.count()).where(column.in_(sorted(statuses))).group_by(column)
    )
    found = {str(status): int(count) for status, count in rows.all()}
    return {status: found.get(status, 0) for status in statuses}


async def steps_waiting_for_agent(session: AsyncSession, now: datetime) -> int:
    """Steps an agent could take now and none has: ready, or pending with their retry
    delay over (not trigger steps, which the control plane runs itself)."""
    c = StepRunRow
    count = await session.scalar(
        select(func.count())
        .select_from(StepRunRow)
        .where(
            c.kind != TRIGGER_KIND,
            or_(
                c.status == StepStatus.READY,
                (c.status == StepStatus.PENDING) & (c.not_before <= now),
            ),
        )
    )
    return int(count or 0)
