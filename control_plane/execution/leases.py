"""Lease renewal and expiry. Lease deadlines come from the control plane's clock only;
agents renew them by heartbeat and must stop a task they cannot renew in time."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.statuses import ACTIVE_ATTEMPT
from control_plane.store.models import AttemptRow

__all__ = ["expired_leases", "renew"]


async def renew(
    session: AsyncSession, agent: str, lease_ids: Sequence[str], now: datetime, lease: timedelta
) -> list[str]:
    """Extend the leases ``agent`` still holds; returns those it does not (stale)."""
    if not lease_ids:
        return []
    result = await session.execute(
        update(AttemptRow)
        .where(
            AttemptRow.lease_id.in_(list(lease_ids)),
            AttemptRow.agent == agent,
            AttemptRow.status.in_(ACTIVE_ATTEMPT),
        )
        .values(lease_expire_time=now + lease)
        .returning(AttemptRow.lease_id)
        .execution_options(synchronize_session=False)
    )
    renewed = set(result.scalars())
    return [lease_id for lease_id in lease_ids if lease_id not in renewed]


async def expired_leases(session: AsyncSession, now: datetime, limit: int = 100) -> list[str]:
    """Leases past their deadline whose attempts are still active (skipping rows another
    replica is handling)."""
    rows = await session.execute(
        select(AttemptRow.lease_id)
        .where(AttemptRow.status.in_(ACTIVE_ATTEMPT), AttemptRow.lease_expire_time < now)
        .order_by(AttemptRow.lease_expire_time)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list(rows.scalars())
