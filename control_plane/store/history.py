"""What a pipeline's past successful runs did: the baselines of the guardrails (a step's
records and duration, the run's duration over the last N successful runs).

Both walk the pipeline's runs newest first on ``ix_runs_pipeline_create_time`` and stop
at ``limit`` matches; ``before`` (the run being judged) and test runs (small data,
RunService.TestStep) are left out."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import cast

from sqlalchemy import Table, select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.statuses import TEST_TRIGGER, RunStatus, StepStatus
from control_plane.store.models import RunRow, StepRunRow

__all__ = ["Past", "run_durations", "step_history"]

_RUNS = cast(Table, RunRow.__table__).c
_STEPS = cast(Table, StepRunRow.__table__).c


@dataclass(frozen=True, slots=True)
class Past:
    """One past successful run of a step: its records out and its duration."""

    records: int | None
    seconds: float | None


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    return (end - start).total_seconds() if start and end else None


async def step_history(
    session: AsyncSession, pipeline_id: int, step: str, *, before: str, limit: int
) -> list[Past]:
    """The step's last ``limit`` successful runs in the pipeline's other runs, newest
    first."""
    found = await session.execute(
        select(_STEPS.records_out, _STEPS.records_in, _STEPS.start_time, _STEPS.end_time)
        .select_from(
            cast(Table, RunRow.__table__).join(
                cast(Table, StepRunRow.__table__), _STEPS.run_id == _RUNS.id
            )
        )
        .where(
            _RUNS.pipeline_id == pipeline_id,
            _RUNS.id != before,
            _RUNS.trigger_kind != TEST_TRIGGER,
            _STEPS.name == step,
            _STEPS.status == StepStatus.SUCCEEDED,
        )
        .order_by(_RUNS.create_time.desc())
        .limit(limit)
    )
    return [
        Past(out if out is not None else records_in, _seconds(start, end))
        for out, records_in, start, end in found
    ]


async def run_durations(
    session: AsyncSession, pipeline_id: int, *, before: str, limit: int
) -> list[float]:
    """How long the pipeline's last ``limit`` successful runs took, newest first."""
    found = await session.execute(
        select(_RUNS.start_time, _RUNS.end_time)
        .where(
            _RUNS.pipeline_id == pipeline_id,
            _RUNS.id != before,
            _RUNS.status == RunStatus.SUCCEEDED,
            _RUNS.trigger_kind != TEST_TRIGGER,
        )
        .order_by(_RUNS.create_time.desc())
        .limit(limit)
    )
    return [s for s in (_seconds(start, end) for start, end in found) if s is not None]
