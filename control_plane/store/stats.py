"""What ``GetPipelineStats`` reads: a pipeline's latest finished runs and, for each, its
steps' latest attempts. Two statements whatever the number of runs: the runs (newest
first, on the ``(pipeline_id, create_time)`` index) and the steps of all of them joined to
their latest attempt (on the step runs' ``(run_id, …)`` key). Test runs
(``trigger_kind = 'test'``) and runs the overlap policy skipped are never read."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.statuses import RunStatus
from control_plane.store.models import AttemptRow, RunRow, StepRunRow

__all__ = ["CountedRun", "StepSampleRow", "latest_runs", "step_samples"]

_COUNTED = sorted({RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.TIMED_OUT})
_TEST = "test"


@dataclass(frozen=True)
class CountedRun:
    id: str
    version: int
    status: str
    start_time: datetime | None
    end_time: datetime | None


@dataclass(frozen=True)
class StepSampleRow:
    """One step of one counted run, with its latest attempt's figures."""

    run_id: str
    name: str
    kind: str
    position: int
    status: str
    start_time: datetime | None
    end_time: datetime | None
    records_out: int | None
    peak_memory_bytes: int | None
    cpu_seconds: float | None
    memory_limit_bytes: int | None


async def latest_runs(session: AsyncSession, pipeline_id: int, limit: int) -> list[CountedRun]:
    """The pipeline's latest ``limit`` finished runs, newest first."""
    r = RunRow
    rows = await session.execute(
        select(r.id, r.version, r.status, r.start_time, r.end_time)
        .where(
            r.pipeline_id == pipeline_id,
            r.status.in_(_COUNTED),
            r.trigger_kind != _TEST,
        )
        .order_by(r.create_time.desc(), r.id.desc())
        .limit(limit)
    )
    return [CountedRun(*row) for row in rows]


async def step_samples(session: AsyncSession, run_ids: Sequence[str]) -> list[StepSampleRow]:
    """The steps of ``run_ids`` that ran (had an attempt), each with its latest attempt."""
    if not run_ids:
        return []
    s, a = StepRunRow, AttemptRow
    rows = await session.execute(
        select(
            s.run_id,
            s.name,
            s.kind,
            s.position,
            s.status,
            a.start_time,
            a.end_time,
            a.records_out,
            a.peak_memory_bytes,
            a.cpu_seconds,
            a.memory_limit_bytes,
        )
        .join(a, and_(a.step_run_id == s.id, a.number == s.attempt))
        .where(s.run_id.in_(list(run_ids)), s.attempt > 0)
    )
    return [StepSampleRow(*row) for row in rows]
