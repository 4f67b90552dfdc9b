"""Queries on pipelines and their versions."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.store.models import PipelineRow, PipelineVersionRow, ScheduleRow

__all__ = [
    "find_pipeline",
    "find_version",
    "list_pipelines",
    "list_versions",
    "schedules_of",
]


async def find_pipeline(
    session: AsyncSession, name: str, *, for_update: bool = False
) -> PipelineRow | None:
    """The pipeline called ``name``; with ``for_update`` its row is locked (PostgreSQL) until
    the transaction ends, so concurrent writers of one pipeline take turns."""
    stmt = select(PipelineRow).where(PipelineRow.name == name)
    if for_update:
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


async def find_version(
    session: AsyncSession, pipeline_id: int, number: int
) -> PipelineVersionRow | None:
    stmt = select(PipelineVersionRow).where(
        PipelineVersionRow.pipeline_id == pipeline_id, PipelineVersionRow.number == number
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def list_pipelines(
    session: AsyncSession,
    *,
    show_archived: bool,
    name_prefix: str,
    after_name: str | None,
    limit: int,
) -> Sequence[tuple[PipelineRow, str | None]]:
    """Pipelines ordered by name, after ``after_name`` (keyset), each with the canonical
    spec of its latest version, in one query."""
    stmt = (
        select(PipelineRow, PipelineVersionRow.spec)
        .outerjoin(
            PipelineVersionRow,
            (PipelineVersionRow.pipeline_id == PipelineRow.id)
            & (PipelineVersionRow.number == PipelineRow.latest_version),
        )
        .order_by(PipelineRow.name)
        .limit(limit)
    )
    if not show_archived:
        stmt = stmt.where(PipelineRow.archived.is_(False))
    if name_prefix:
        stmt = stmt.where(PipelineRow.name.startswith(name_prefix, autoescape=True))
    if after_name is not None:
        stmt = stmt.where(PipelineRow.name > after_name)
    return [(row, spec) for row, spec in (await session.execute(stmt)).all()]


async def list_versions(
    session: AsyncSession, pipeline_id: int, *, before_number: int | None, limit: int
) -> Sequence[PipelineVersionRow]:
    """Versions newest first, older than ``before_number`` (keyset)."""
    stmt = (
        select(PipelineVersionRow)
        .where(PipelineVersionRow.pipeline_id == pipeline_id)
        .order_by(PipelineVersionRow.number.desc())
        .limit(limit)
    )
    if before_number is not None:
        stmt = stmt.where(PipelineVersionRow.number < before_number)
    return (await session.execute(stmt)).scalars().all()


async def schedules_of(session: AsyncSession, pipeline_ids: list[int]) -> dict[int, ScheduleRow]:
    """The schedule rows of these pipelines, by pipeline id (pipelines without one absent)."""
    if not pipeline_ids:
        return {}
    rows = await session.execute(
        select(ScheduleRow).where(ScheduleRow.pipeline_id.in_(pipeline_ids))
    )
    return {row.pipeline_id: row for row in rows.scalars()}
