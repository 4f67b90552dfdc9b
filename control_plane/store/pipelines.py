"""Queries on pipelines and their versions.

Readers get ORM rows (``find_pipeline``, ``find_version``, the lists). The registry's
writes are SQLAlchemy Core statements over plain data (``lock_head``, ``create_pipeline``,
``insert_version``, ``move_head``): an apply is a handful of them, and each ORM object it
would otherwise build, track and flush costs more than the statement it becomes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, cast

from sqlalchemy import Table, bindparam, func, insert, select, update

from control_plane.store.models import PipelineRow, PipelineVersionRow, ScheduleRow

if TYPE_CHECKING:  # annotations only (legato.notebook imports this without greenlet)
    from sqlalchemy.ext.asyncio import AsyncSession

__all__ = [
    "Head",
    "HeadVersion",
    "create_pipeline",
    "find_pipeline",
    "find_test_version",
    "find_version",
    "insert_version",
    "list_pipelines",
    "list_versions",
    "lock_head",
    "lowest_version",
    "move_head",
    "schedules_of",
]


@dataclass(frozen=True)
class HeadVersion:
    """What a writer needs of a pipeline's latest version: all but its spec (equal to the
    applied one when the hashes match)."""

    number: int
    content_hash: str
    author: str
    message: str
    create_time: datetime
    rollback_of: int | None


@dataclass(frozen=True)
class Head:
    """A pipeline as a writer finds it: its row, its latest version (None before the
    first) and its schedule row (None without one). The rows are plain objects outside
    the session: changing them writes nothing."""

    pipeline: PipelineRow
    latest: HeadVersion | None
    schedule: ScheduleRow | None


_PIPELINES = cast(Table, PipelineRow.__table__)
_VERSIONS = cast(Table, PipelineVersionRow.__table__)
_SCHEDULES = cast(Table, ScheduleRow.__table__)
_p, _v, _s = _PIPELINES.c, _VERSIONS.c, _SCHEDULES.c
_PIPELINE_COLUMNS = [c.key for c in _PIPELINES.c]
_SCHEDULE_COLUMNS = [c.key for c in _SCHEDULES.c]

_LOCK_HEAD = (
    select(
        *_PIPELINES.c,
        _v.number,
        _v.content_hash,
        _v.author,
        _v.message,
        _v.create_time.label("version_create_time"),
        _v.rollback_of,
        *(c.label(f"schedule_{c.key}") for c in _SCHEDULES.c),
    )
    .select_from(
        _PIPELINES.outerjoin(
            _VERSIONS, (_v.pipeline_id == _p.id) & (_v.number == _p.latest_version)
        ).outerjoin(_SCHEDULES, _s.pipeline_id == _p.id)
    )
    .where(_p.name == bindparam("head_name"))
    .with_for_update(of=_PIPELINES)
)
# Built once: a statement built per call costs more CPU than SQLite takes to run it.
_CREATE_PIPELINE = insert(_PIPELINES).returning(_p.id)
_INSERT_VERSION = insert(_VERSIONS)
_MOVE_HEAD = (
    update(_PIPELINES)
    .where(_p.id == bindparam("head_id"))
    .values(
        latest_version=bindparam("head_number"),
        description=bindparam("head_description"),
        update_time=bindparam("head_time"),
    )
)


async def lock_head(session: AsyncSession, name: str) -> Head | None:
    """The pipeline called ``name`` with its latest version and schedule, in one
    statement; its row is locked (PostgreSQL; SQLite writers are alone) until the
    transaction ends, so writers of one pipeline take turns from here to their commit."""
    row = (await session.execute(_LOCK_HEAD, {"head_name": name})).one_or_none()
    if row is None:
        return None
    values = row._mapping
    latest = (
        None
        if row.number is None
        else HeadVersion(
            number=row.number,
            content_hash=row.content_hash,
            author=row.author,
            message=row.message,
            create_time=row.version_create_time,
            rollback_of=row.rollback_of,
        )
    )
    schedule = (
        None
        if row.schedule_pipeline_id is None
        else ScheduleRow(**{key: values[f"schedule_{key}"] for key in _SCHEDULE_COLUMNS})
    )
    pipeline = PipelineRow(**{key: values[key] for key in _PIPELINE_COLUMNS})
    return Head(pipeline=pipeline, latest=latest, schedule=schedule)


async def create_pipeline(
    session: AsyncSession, *, name: str, description: str, latest_version: int, now: datetime
) -> int:
    """Insert a pipeline whose latest version will be ``latest_version``; its id. Raises
    IntegrityError when another writer created the name first (on PostgreSQL once that
    writer commits)."""
    values = {
        "name": name,
        "description": description,
        "latest_version": latest_version,
        "archived": False,
        "create_time": now,
        "update_time": now,
    }
    pipeline_id: int = (await session.execute(_CREATE_PIPELINE, values)).scalar_one()
    return pipeline_id


async def insert_version(
    session: AsyncSession,
    *,
    pipeline_id: int,
    number: int,
    spec: str,
    content_hash: str,
    author: str,
    message: str,
    now: datetime,
    rollback_of: int | None,
) -> None:
    """Add version ``number``; the unique (pipeline, number) refuses a second one."""
    await session.execute(
        _INSERT_VERSION,
        {
            "pipeline_id": pipeline_id,
            "number": number,
            "spec": spec,
            "content_hash": content_hash,
            "author": author,
            "message": message,
            "create_time": now,
            "rollback_of": rollback_of,
        },
    )


async def move_head(
    session: AsyncSession, pipeline_id: int, *, number: int, description: str, now: datetime
) -> None:
    """Make version ``number`` the pipeline's latest."""
    await session.execute(
        _MOVE_HEAD,
        {
            "head_id": pipeline_id,
            "head_number": number,
            "head_description": description,
            "head_time": now,
        },
    )


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


async def find_test_version(
    session: AsyncSession, pipeline_id: int, content_hash: str
) -> int | None:
    """The number of the pipeline's hidden test version (below 0) with this content."""
    stmt = (
        select(PipelineVersionRow.number)
        .where(
            PipelineVersionRow.pipeline_id == pipeline_id,
            PipelineVersionRow.number < 0,
            PipelineVersionRow.content_hash == content_hash,
        )
        .limit(1)
    )
    number: int | None = (await session.execute(stmt)).scalar_one_or_none()
    return number


async def lowest_version(session: AsyncSession, pipeline_id: int) -> int:
    """The pipeline's lowest version number (0 when it has none below 1)."""
    stmt = select(func.min(PipelineVersionRow.number)).where(
        PipelineVersionRow.pipeline_id == pipeline_id
    )
    lowest: int | None = (await session.execute(stmt)).scalar_one_or_none()
    return min(lowest or 0, 0)


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
    """Versions newest first, older than ``before_number`` (keyset); never the hidden
    versions of test runs (numbers below 0, ``execution/test_runs.py``)."""
    stmt = (
        select(PipelineVersionRow)
        .where(PipelineVersionRow.pipeline_id == pipeline_id, PipelineVersionRow.number > 0)
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
