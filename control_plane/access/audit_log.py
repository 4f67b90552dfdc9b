"""The activity log, read and (for calls that were refused or failed) written.

Successful mutations record their entry in their own transaction (``store.audit``); a
mutation that was refused (PERMISSION_DENIED) or failed rolled its transaction back, so
the access interceptor records it here afterwards, in a transaction of its own.
A refused or failed call on a run or backfill is filed under its pipeline, looked up
here (refusals are rare; this is no hot path). Unauthenticated calls are not recorded
(nobody is known to have made them, and a flood of them must not fill the table): the
server log has them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.access.actors import Actor
from control_plane.pagination import Page, PageRequest
from control_plane.store import audit
from control_plane.store.db import Database
from control_plane.store.models import AuditEntryRow, BackfillRow, RunRow

__all__ = ["AuditFilter", "AuditLog"]


@dataclass(frozen=True)
class AuditFilter:
    pipeline: str = ""
    actor: str = ""
    action: str = ""
    start_time: datetime | None = None
    end_time: datetime | None = None


class AuditLog:
    def __init__(self, db: Database, *, clock: Callable[[], datetime]) -> None:
        self._db = db
        self._clock = clock

    async def failed(
        self,
        actor: Actor,
        action: str,
        resource: str,
        *,
        pipeline: str | None,
        denied: bool,
        code: int,
        error: str,
    ) -> None:
        async with self._db.write() as session:
            if pipeline is None:
                pipeline = await _pipeline_of(session, resource)
            session.add(
                audit.entry(
                    now=self._clock(),
                    actor=actor,
                    action=action,
                    resource=resource,
                    pipeline=pipeline,
                    outcome="denied" if denied else "failed",
                    code=code,
                    error=error,
                )
            )

    async def list(
        self, where: AuditFilter, *, page_size: int, page_token: str
    ) -> Page[AuditEntryRow]:
        """Entries newest first."""
        page = PageRequest.parse(
            page_size,
            page_token,
            pipeline=where.pipeline,
            actor=where.actor,
            action=where.action,
            start=where.start_time.isoformat() if where.start_time else "",
            end=where.end_time.isoformat() if where.end_time else "",
        )
        stmt = select(AuditEntryRow).order_by(AuditEntryRow.id.desc()).limit(page.size + 1)
        if where.pipeline:
            stmt = stmt.where(AuditEntryRow.pipeline == where.pipeline)
        if where.actor:
            stmt = stmt.where(AuditEntryRow.actor == where.actor)
        if where.action:
            stmt = stmt.where(AuditEntryRow.action == where.action)
        if where.start_time is not None:
            stmt = stmt.where(AuditEntryRow.time >= where.start_time)
        if where.end_time is not None:
            stmt = stmt.where(AuditEntryRow.time < where.end_time)
        if page.after is not None:
            stmt = stmt.where(AuditEntryRow.id < int(page.after))
        async with self._db.read() as session:
            rows = list((await session.execute(stmt)).scalars())
        return page.page(rows, key=lambda row: row.id)


async def _pipeline_of(session: AsyncSession, resource: str) -> str | None:
    """The pipeline of the run or backfill ``resource`` names, if it exists: a refused
    ``CancelRun`` is found by the pipeline of its run, as the successful one is."""
    collection, _, key = resource.partition("/")
    if not key:
        return None
    if collection == "runs":
        found = await session.execute(select(RunRow.pipeline).where(RunRow.id == key))
    elif collection == "backfills":
        found = await session.execute(select(BackfillRow.pipeline).where(BackfillRow.id == key))
    else:
        return None
    return found.scalar_one_or_none()
