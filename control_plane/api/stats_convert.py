"""Pipeline stats (``control_plane/execution/stats.py``) → ``GetPipelineStatsResponse``."""

from __future__ import annotations

from datetime import datetime

from google.protobuf import duration_pb2

from control_plane.api.convert import timestamp
from control_plane.api.run_convert import run_status, step_status
from control_plane.execution.stats import StatsReport, StepFigures
from control_plane.store.stats import CountedRun, StepSampleRow
from legato.v1 import pipeline_service_pb2 as pb

__all__ = ["stats_response"]


def _duration(seconds: float | None) -> duration_pb2.Duration | None:
    if seconds is None:
        return None
    message = duration_pb2.Duration()
    message.FromMicroseconds(round(seconds * 1_000_000))
    return message


def _span(start: datetime | None, end: datetime | None) -> duration_pb2.Duration | None:
    return _duration((end - start).total_seconds()) if start and end else None


def _run(run: CountedRun) -> pb.RunSample:
    return pb.RunSample(
        run_id=run.id,
        version=run.version,
        status=run_status(run.status),  # type: ignore[arg-type]
        start_time=timestamp(run.start_time),
        duration=_span(run.start_time, run.end_time),
    )


def _sample(row: StepSampleRow) -> pb.StepSample:
    sample = pb.StepSample(
        run_id=row.run_id,
        status=step_status(row.status),  # type: ignore[arg-type]
        start_time=timestamp(row.start_time),
        duration=_span(row.start_time, row.end_time),
        cpu_time=_duration(row.cpu_seconds),
    )
    if row.peak_memory_bytes is not None:
        sample.peak_memory_bytes = row.peak_memory_bytes
    if row.records_out is not None:
        sample.records_out = row.records_out
    return sample


def _step(step: StepFigures) -> pb.StepStats:
    message = pb.StepStats(
        name=step.name,
        kind=step.kind,
        count=step.count,
        failures=step.failures,
        duration_p50=_duration(step.duration_p50),
        duration_p95=_duration(step.duration_p95),
        cpu_time_p50=_duration(step.cpu_p50),
        memory_limit_bytes=step.memory_limit_bytes or 0,
        samples=[_sample(row) for row in step.samples],
    )
    if step.peak_memory_p50 is not None:
        message.peak_memory_bytes_p50 = step.peak_memory_p50
    if step.peak_memory_max is not None:
        message.peak_memory_bytes_max = step.peak_memory_max
    if step.records_out_p50 is not None:
        message.records_out_p50 = step.records_out_p50
    return message


def stats_response(report: StatsReport) -> pb.GetPipelineStatsResponse:
    return pb.GetPipelineStatsResponse(
        pipeline=report.pipeline,
        runs=[_run(run) for run in report.runs],
        steps=[_step(step) for step in report.steps],
        slowest_step=report.slowest_step,
    )
