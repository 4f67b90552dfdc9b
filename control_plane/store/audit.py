"""The audit log: one entry per mutation, written in the mutation's transaction."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.store.models import AuditEntryRow

__all__ = ["record"]


def record(
    session: AsyncSession,
    *,
    now: datetime,
    actor: str,
    action: str,
    resource: str,
    request_id: str = "",
    details: dict[str, Any] | None = None,
) -> None:
    session.add(
        AuditEntryRow(
            time=now,
            actor=actor,
            action=action,
            resource=resource,
            request_id=request_id or None,
            details=details or {},
        )
    )
