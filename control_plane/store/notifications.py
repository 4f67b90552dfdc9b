"""The notifications outbox, read and written with Core statements.

A notification is added in the transaction of the change that causes it (``add``: inserted
with the transaction's other rows when it commits) and then belongs to the delivery loop:
``claim`` takes due ones for a while (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so two
replicas never take the same one; a claim that runs out — the replica died mid-send —
makes it due again), and ``delivered``/``retry``/``failed`` record how a send ended, each
fenced on the claim it was sent under.

``throttle`` runs when the rows are built at the commit: a row that repeats the last event
sent on its ``throttle_key`` (a pipeline's channel) within its window is written
``suppressed`` and never sent; the next one sent says how many were."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, func, or_, select, true, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from control_plane.store import pending
from control_plane.store.models import NotificationRow

__all__ = [
    "DELIVERED",
    "FAILED",
    "PENDING",
    "SENDING",
    "SUPPRESSED",
    "Notification",
    "add_later",
    "any_due",
    "claim",
    "delivered",
    "failed",
    "listed",
    "new_row",
    "retry",
    "throttle",
]

TABLE = cast(Table, NotificationRow.__table__)
_C = TABLE.c
PENDING, SENDING, DELIVERED, FAILED = "pending", "sending", "delivered", "failed"
SUPPRESSED = "suppressed"


def new_row(
    *,
    idempotency_key: str,
    run_id: str,
    pipeline: str,
    event: str,
    channel: str,
    target: str,
    settings: dict[str, Any],
    facts: dict[str, Any],
    now: datetime,
    throttle_key: str = "",
) -> dict[str, Any]:
    """An outbox row to insert: pending, due now, never tried."""
    return {
        "idempotency_key": idempotency_key,
        "run_id": run_id,
        "pipeline": pipeline,
        "event": event,
        "channel": channel,
        "target": target,
        "settings": settings,
        "facts": facts,
        "status": PENDING,
        "attempts": 0,
        "next_attempt_time": now,
        "claim_expire_time": None,
        "last_error": "",
        "create_time": now,
        "deliver_time": None,
        "throttle_key": throttle_key,
    }


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
    throttle_key: str = ""


_FIELDS = tuple(Notification.__dataclass_fields__)
_SELECT = select(*(_C[name] for name in _FIELDS))


def add_later(session: AsyncSession, build: pending.Builder) -> None:
    """Write the notifications ``build`` returns (their columns but ``id``) when the
    transaction commits; it is called then (see ``store/pending``)."""
    pending.add_later(session, TABLE, build)


def throttle(session: Session, rows: list[dict[str, Any]], windows: list[timedelta]) -> None:
    """Decide, as they are built at the commit, which of ``rows`` are sent: a row whose
    ``throttle_key`` last sent (or is sending) the same event less than its window (the
    matching item of ``windows``) before the row's ``create_time`` is marked
    ``suppressed``; a row that is sent gets ``facts["suppressed"]`` — how many were
    suppressed on its key since the last one sent, of what event, since when — when any
    were. Rows of this transaction written before count as written."""
    earlier = [row for row in pending.rows_of(session, TABLE) if row.get("throttle_key")]
    for row, window in zip(rows, windows, strict=True):
        key = row.get("throttle_key")
        if not key:
            continue
        last, skipped, since = _last_sent(session, key, earlier)
        if (
            last is not None
            and window > timedelta(0)
            and last["event"] == row["event"]
            and row["create_time"] - last["create_time"] < window
        ):
            row["status"] = SUPPRESSED
        elif skipped:
            row["facts"]["suppressed"] = {
                "count": skipped,
                "event": last["event"] if last else row["event"],
                "since": since.isoformat() if since else None,
            }
        earlier.append(row)


def _last_sent(
    session: Session, key: str, earlier: list[dict[str, Any]]
) -> tuple[dict[str, Any] | None, int, datetime | None]:
    """The last row of ``key`` that was not suppressed (``event``, ``create_time``), how
    many were suppressed after it, and the first of those's time."""
    skipped = 0
    since: datetime | None = None
    for row in reversed([row for row in earlier if row["throttle_key"] == key]):
        if row["status"] != SUPPRESSED:
            return row, skipped, since
        skipped += 1
        since = row["create_time"]
    found = session.execute(
        select(_C.id, _C.event, _C.create_time)
        .where(_C.throttle_key == key, _C.status != SUPPRESSED)
        .order_by(_C.id.desc())
        .limit(1)
    ).first()
    after = _C.id > found.id if found is not None else true()
    count, first = session.execute(
        select(func.count(), func.min(_C.create_time)).where(
            _C.throttle_key == key, _C.status == SUPPRESSED, after
        )
    ).one()
    skipped += count or 0
    since = first or since
    if found is None:
        return None, skipped, since
    return {"event": found.event, "create_time": found.create_time}, skipped, since


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
