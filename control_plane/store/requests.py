"""Request ids of mutations: a retried call with the same id replays the first result.

The row is written in the same transaction as the mutation, and (method, request_id) is
the primary key, so two concurrent calls with one id cannot both take effect."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.store.models import RequestRow

__all__ = ["find_result", "record_result"]


async def find_result(session: AsyncSession, method: str, request_id: str) -> dict[str, Any] | None:
    if not request_id:
        return None
    row = await session.get(RequestRow, (method, request_id))
    return None if row is None else row.result


async def record_result(
    session: AsyncSession, method: str, request_id: str, result: dict[str, Any], now: datetime
) -> None:
    if request_id:
        session.add(
            RequestRow(method=method, request_id=request_id, result=result, create_time=now)
        )
        await session.flush()
