"""The notifications outbox, read and written with Core statements.

A notification is added in the transaction of the change that causes it (``add``: inserted
with the transaction's other rows when it commits) and then belongs to the delivery loop:
``claim`` takes due ones for a while (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so two
replicas never take the same one; a claim that runs out — the replica died mid-send —
makes it due again), and ``delivered``/``retry``/``failed`` record how a send ended, each
fenced on the claim it was sent under."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.store import pending
from control_plane.store.models import NotificationRow

__all__ = [
    "DELIVERED",
    "FAILED",
    "PENDING",
    "SENDING",
    "Notification",
    "add_later",
    "any_due",
    "claim",
    "delivered",
    "failed",
    "listed",
    "retry",
]

TABLE = cast(Table, NotificationRow.__table__)
_C = TABLE.c
PENDING, SENDING, DELIVERED, FAILED = "pending", "sending", "delivered", "failed"


@dataclass(slots=True)
class Notification:
    """One ``notifications`` row."""

    id: int
    idempotency_key: str
    run_id: str
    pipeline: str
    event: str
    channel: str
    target: str
    settings: dict[str, Any]
    facts: dict[str, Any]
    status: str
    attempts: int
    next_attempt_time: datetime
    claim_expire_time: datetime | None
    last_error: str
    create_time: datetime
    deliver_time: datetime | None


_FIELDS = tuple(Notification.__dataclass_fields__)
_SELECT = select(*(_C[name] for name in _FIELDS))


def add_later(session: AsyncSession, build: pending.Builder) -> None:
    """Write the notifications ``build`` returns (their columns but ``id``) when the
    transaction commits; it is called then (see ``store/pending``)."""
    pending.add_later(session, TABLE, build)


def _due(now: datetime) -> Any:
    return or_(
        (_C.status == PENDING) & (_C.next_attempt_time <= now),
        (_C.status == SENDING) & (_C.claim_expire_time < now),
    )


async def any_due(session: AsyncSession, now: datetime) -> bool:
    """Whether a notification is due (an index probe)."""
    found = await session.execute(select(_C.id).where(_due(now)).limit(1))
    return found.first() is not None


async def claim(
    session: AsyncSession, now: datetime, *, limit: int, hold: timedelta, postgres: bool
) -> list[Notification]:
    """Take up to ``limit`` due notifications until ``now + hold``, oldest first."""
    stmt = _SELECT.where(_due(now)).order_by(_C.id).limit(limit)
    if postgres:
        stmt = stmt.with_for_update(skip_locked=True)
    found = [Notification(*row) for row in await session.execute(stmt)]
    if not found:
        return []
    expire = now + hold
    await session.execute(
        update(TABLE)
        .where(_C.id.in_([n.id for n in found]))
        .values(status=SENDING, claim_expire_time=expire, attempts=_C.attempts + 1)
    )
    for notification in found:
        notification.status = SENDING
        notification.claim_expire_time = expire
        notification.attempts += 1
    return found


async def _settle(session: AsyncSession, claimed: Notification, **values: Any) -> bool:
    result = await session.execute(
        update(TABLE)
        .where(
            _C.id == claimed.id,
            _C.status == SENDING,
            _C.claim_expire_time == claimed.claim_expire_time,
        )
        .values(claim_expire_time=None, **values)
        .returning(_C.id)
    )
    return result.first() is not None


async def delivered(session: AsyncSession, claimed: Notification, now: datetime) -> bool:
    """Record a send that succeeded; False when the claim had run out (another replica
    took it, and sends it again with the same idempotency key)."""
    return await _settle(session, claimed, status=DELIVERED, deliver_time=now, last_error="")


async def retry(session: AsyncSession, claimed: Notification, error: str, at: datetime) -> bool:
    """Record a failed send to try again at ``at``."""
    return await _settle(session, claimed, status=PENDING, next_attempt_time=at, last_error=error)


async def failed(session: AsyncSession, claimed: Notification, error: str) -> bool:
    """Record a failed send that is not tried again."""
    return await _settle(session, claimed, status=FAILED, last_error=error)


async def listed(
    session: AsyncSession, *, run_id: str = "", limit: int = 100, before: int | None = None
) -> list[Notification]:
    """The newest notifications first (of one run, with ``run_id``; older than the one
    numbered ``before``, with it)."""
    stmt = _SELECT.order_by(_C.id.desc()).limit(limit)
    if run_id:
        stmt = stmt.where(_C.run_id == run_id)
    if before is not None:
        stmt = stmt.where(_C.id < before)
    return [Notification(*row) for row in await session.execute(stmt)]
