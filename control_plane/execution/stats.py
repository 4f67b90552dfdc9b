"""Per step figures over a pipeline's latest finished runs (``GetPipelineStats``,
``legato stats``): how long each step takes, how much memory it holds, how many records it
writes, and the trend of each over the runs.

What is counted
---------------
The latest ``runs`` finished runs of the pipeline (default :data:`DEFAULT_RUNS`, at most
:data:`MAX_RUNS`), newest first by creation: succeeded, failed, cancelled and timed out.
Test runs (``RunService.TestStep``) and the fire times an overlap policy skipped are never
counted. In each run, a step is counted when it ran (had at least one attempt), with its
latest attempt's figures — retries that came before it are not: the sample is what that
run's step finally did. A step that was skipped, or never reached, has no sample in that
run.

The figures
-----------
Percentiles are by linear interpolation between the closest ranks (numpy's default, and
what a spreadsheet's ``PERCENTILE.INC`` gives): p50 of ``[1, 2, 3, 4]`` is 2.5, p95 of
twenty samples lies between the 19th and the 20th. Each figure is over the samples that
have it: a duration needs the attempt's start and end, peak memory and CPU time an agent
that measured them (trigger steps have neither), records a step that reported them.
Failed attempts count like the others (a step that fails fast makes its p50 shorter, and
an attempt killed for memory is often the largest peak). The memory limit is that of the
newest sample. The slowest step is the one with the highest p50 duration (on a tie, the
first in DAG order).

Steps are listed in the latest version's DAG order, then the steps only older versions
had, in the order they last ran in.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from control_plane.errors import InvalidArgument, pipeline_not_found
from control_plane.execution.resolver import RunPlan
from control_plane.pipelines.versioning import spec_from_json
from control_plane.statuses import StepStatus
from control_plane.store import pipelines as pipeline_store
from control_plane.store import stats as stats_store
from control_plane.store.db import Database
from control_plane.store.stats import CountedRun, StepSampleRow

__all__ = [
    "DEFAULT_RUNS",
    "MAX_RUNS",
    "PipelineStats",
    "StatsReport",
    "StepFigures",
    "percentile",
    "runs_to_count",
    "summarise",
]

DEFAULT_RUNS = 30
MAX_RUNS = 1000
_FAILED = frozenset({StepStatus.FAILED, StepStatus.TIMED_OUT})


def runs_to_count(asked: int) -> int:
    """How many runs a request for ``asked`` counts: 0 means the default, and more than
    :data:`MAX_RUNS` is read as that many."""
    return DEFAULT_RUNS if asked <= 0 else min(asked, MAX_RUNS)


def percentile(values: Sequence[float], share: float) -> float | None:
    """The ``share`` (0..1) percentile of ``values`` by linear interpolation between the
    closest ranks; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = share * (len(ordered) - 1)
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class StepFigures:
    name: str
    kind: str
    count: int
    failures: int
    duration_p50: float | None
    duration_p95: float | None
    peak_memory_p50: int | None
    peak_memory_max: int | None
    records_out_p50: int | None
    cpu_p50: float | None
    memory_limit_bytes: int | None
    samples: list[StepSampleRow] = field(default_factory=list)
    """Oldest first."""


@dataclass(frozen=True)
class StatsReport:
    pipeline: str
    runs: list[CountedRun]
    """Newest first."""
    steps: list[StepFigures]
    slowest_step: str


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    return (end - start).total_seconds() if start is not None and end is not None else None


def _whole(value: float | None) -> int | None:
    return round(value) if value is not None else None


def _figures(name: str, kind: str, samples: list[StepSampleRow]) -> StepFigures:
    durations = [d for s in samples if (d := _seconds(s.start_time, s.end_time)) is not None]
    peaks = [s.peak_memory_bytes for s in samples if s.peak_memory_bytes is not None]
    records = [s.records_out for s in samples if s.records_out is not None]
    cpu = [s.cpu_seconds for s in samples if s.cpu_seconds is not None]
    return StepFigures(
        name=name,
        kind=kind or (samples[-1].kind if samples else ""),
        count=len(samples),
        failures=sum(1 for s in samples if s.status in _FAILED),
        duration_p50=percentile(durations, 0.5),
        duration_p95=percentile(durations, 0.95),
        peak_memory_p50=_whole(percentile(peaks, 0.5)),
        peak_memory_max=max(peaks) if peaks else None,
        records_out_p50=_whole(percentile(records, 0.5)),
        cpu_p50=percentile(cpu, 0.5),
        memory_limit_bytes=samples[-1].memory_limit_bytes if samples else None,
        samples=samples,
    )


def summarise(
    pipeline: str,
    order: Sequence[str],
    kinds: dict[str, str],
    runs: list[CountedRun],
    rows: list[StepSampleRow],
) -> StatsReport:
    """The report from the counted ``runs`` (newest first) and their steps' ``rows``;
    ``order`` and ``kinds`` are the latest version's steps."""
    age = {run.id: index for index, run in enumerate(runs)}  # 0 = newest
    by_step: dict[str, list[StepSampleRow]] = {}
    for row in sorted(rows, key=lambda r: (-age[r.run_id], r.position)):
        by_step.setdefault(row.name, []).append(row)
    names = [name for name in order if name in by_step]
    older = [name for name in by_step if name not in kinds]
    older.sort(key=lambda name: (age[by_step[name][-1].run_id], by_step[name][-1].position))
    steps = [_figures(name, kinds.get(name, ""), by_step[name]) for name in [*names, *older]]
    slowest = ""
    best = -1.0
    for step in steps:
        if step.duration_p50 is not None and step.duration_p50 > best:
            slowest, best = step.name, step.duration_p50
    return StatsReport(pipeline=pipeline, runs=runs, steps=steps, slowest_step=slowest)


class PipelineStats:
    """Reads and summarises a pipeline's stats (see the module docstring)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def of(self, name: str, runs: int) -> StatsReport:
        """The stats of pipeline ``name`` over its latest ``runs`` finished runs (see
        :func:`runs_to_count`); NotFound for an unknown pipeline."""
        if not name:
            raise InvalidArgument("pipeline is required: name the pipeline whose stats to show")
        async with self._db.read() as session:
            pipeline = await pipeline_store.find_pipeline(session, name)
            if pipeline is None:
                raise pipeline_not_found(name)
            version = await pipeline_store.find_version(
                session, pipeline.id, pipeline.latest_version
            )
            counted = await stats_store.latest_runs(session, pipeline.id, runs_to_count(runs))
            rows = await stats_store.step_samples(session, [run.id for run in counted])
        order: list[str] = []
        kinds: dict[str, str] = {}
        if version is not None:
            spec = spec_from_json(version.spec)
            order = RunPlan(spec).order
            kinds = {step.name: step.WhichOneof("kind") or "" for step in spec.steps}
        return summarise(name, order, kinds, counted, rows)
