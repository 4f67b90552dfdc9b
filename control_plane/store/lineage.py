"""Lineage's statements: the steps a finished run recorded, the upsert of its edges, and
the walk's reads (one statement per hop level).

``upsert`` is one multi-row ``INSERT … ON CONFLICT (source, target, kind, pipeline,
step) DO UPDATE`` per run (PostgreSQL and SQLite both have it), its rows in a stable
order so two runs upserting the same edges lock them in the same order."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, select, union
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.lineage.records import Edge
from control_plane.store.models import LineageEdgeRow, PipelineRow, StepRunRow

__all__ = [
    "EdgeRow",
    "RunStep",
    "edges_at",
    "known_nodes",
    "node_exists",
    "pipeline_exists",
    "pipeline_names",
    "run_steps",
    "upsert",
]

TABLE = cast(Table, LineageEdgeRow.__table__)
_C = TABLE.c
_S = cast(Table, StepRunRow.__table__).c


@dataclass(frozen=True)
class EdgeRow:
    source: str
    target: str
    kind: str
    pipeline: str
    step: str
    first_seen_time: datetime
    last_seen_time: datetime
    last_run_id: str


_EDGE_COLUMNS = tuple(_C[name] for name in EdgeRow.__dataclass_fields__)


@dataclass(frozen=True)
class RunStep:
    """A step of a finished run, as lineage and OpenLineage read it."""

    name: str
    kind: str
    status: str
    attempt: int
    lineage: dict[str, Any] | None
    error: str
    start_time: datetime | None
    end_time: datetime | None
    output: dict[str, Any]


async def run_steps(session: AsyncSession, run_id: str, *, every: bool = False) -> list[RunStep]:
    """The run's steps that recorded lineage or are trigger steps (``every``: all of
    them, for OpenLineage's step events), by position: one statement."""
    stmt = select(
        _S.name,
        _S.kind,
        _S.status,
        _S.attempt,
        _S.lineage,
        _S.error,
        _S.start_time,
        _S.end_time,
        _S.output,
    ).where(_S.run_id == run_id)
    if not every:
        stmt = stmt.where(_S.lineage.is_not(None) | (_S.kind == "trigger"))
    rows = await session.execute(stmt.order_by(_S.position))
    return [RunStep(*row[:8], output=row[8] or {}) for row in rows]


async def upsert(
    session: AsyncSession,
    pipeline: str,
    run_id: str,
    now: datetime,
    edges: Sequence[Edge],
) -> None:
    """Record ``edges`` (sorted, without duplicates) as seen by ``run_id`` at ``now``."""
    if not edges:
        return
    rows = [
        {
            "source": edge.source,
            "target": edge.target,
            "kind": edge.kind,
            "pipeline": pipeline,
            "step": edge.step,
            "first_seen_time": now,
            "last_seen_time": now,
            "last_run_id": run_id,
        }
        for edge in edges
    ]
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(TABLE).values(rows)
    stmt = stmt.on_conflict_do_update(
        index_elements=["source", "target", "kind", "pipeline", "step"],
        set_={
            "last_seen_time": stmt.excluded.last_seen_time,
            "last_run_id": stmt.excluded.last_run_id,
        },
    )
    await session.execute(stmt)


async def edges_at(
    session: AsyncSession, nodes: Collection[str], *, upstream: bool
) -> list[EdgeRow]:
    """The edges into ``nodes`` (``upstream``) or out of them: one statement."""
    column = _C.target if upstream else _C.source
    rows = await session.execute(
        select(*_EDGE_COLUMNS).where(column.in_(sorted(nodes))).order_by(_C.id)
    )
    return [EdgeRow(*row) for row in rows]


async def node_exists(session: AsyncSession, node: str) -> bool:
    """Whether an edge starts or ends at ``node`` (index probes)."""
    for column in (_C.source, _C.target):
        found = await session.execute(select(_C.id).where(column == node).limit(1))
        if found.first() is not None:
            return True
    return False


async def known_nodes(session: AsyncSession, prefix: str, *, limit: int = 2000) -> list[str]:
    """Nodes of the graph whose id starts with ``prefix`` (for a did-you-mean)."""
    pattern = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    sources = select(_C.source.label("node")).where(_C.source.like(pattern, escape="\\"))
    targets = select(_C.target.label("node")).where(_C.target.like(pattern, escape="\\"))
    rows = await session.execute(select(union(sources, targets).subquery()).limit(limit))
    return sorted(str(node) for node in rows.scalars())


async def pipeline_exists(session: AsyncSession, name: str) -> bool:
    found = await session.execute(select(PipelineRow.id).where(PipelineRow.name == name))
    return found.first() is not None


async def pipeline_names(session: AsyncSession, *, limit: int = 2000) -> list[str]:
    rows = await session.execute(select(PipelineRow.name).order_by(PipelineRow.name).limit(limit))
    return [str(name) for name in rows.scalars()]
