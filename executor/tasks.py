"""Wire messages ↔ the runner's types: a TaskAssignment becomes a runner Task, an
Outcome becomes a TaskResult."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from google.protobuf import json_format, struct_pb2, timestamp_pb2

from executor.runner import Outcome, Task, TaskInput
from legato.v1 import agent_pb2, agent_service_pb2, lineage_pb2, run_pb2, spec_pb2

__all__ = ["result_message", "to_task"]

_FAILURES = {
    "error": spec_pb2.FAILURE_KIND_ERROR,
    "timeout": spec_pb2.FAILURE_KIND_TIMEOUT,
    "lost": spec_pb2.FAILURE_KIND_LOST,
    "memory": spec_pb2.FAILURE_KIND_MEMORY,
}
_OUTCOMES = {
    "succeeded": agent_pb2.TASK_OUTCOME_SUCCEEDED,
    "failed": agent_pb2.TASK_OUTCOME_FAILED,
    "cancelled": agent_pb2.TASK_OUTCOME_CANCELLED,
}


def to_task(
    assignment: agent_pb2.TaskAssignment,
    workdir: Path,
    tables: dict[str, Path] | None = None,
    connections: dict[str, str] | None = None,
) -> Task:
    step = assignment.step
    kind = step.WhichOneof("kind") or ""
    config = (
        json_format.MessageToDict(getattr(step, kind), preserving_proto_field_name=True)
        if kind
        else {}
    )
    return Task(
        lease_id=assignment.lease_id,
        run_id=assignment.run_id,
        pipeline=assignment.pipeline,
        step_name=assignment.step_name,
        attempt=assignment.attempt,
        kind=kind,
        config=config,
        params=_plain(json_format.MessageToDict(assignment.params)),
        inputs=[
            TaskInput(
                step=i.step,
                values=_plain(json_format.MessageToDict(i.values)),
                table_path=(tables or {}).get(i.step),
            )
            for i in assignment.inputs
        ],
        timeout=assignment.timeout.ToTimedelta().total_seconds()
        if assignment.HasField("timeout")
        else None,
        memory_bytes=assignment.memory_bytes or None,
        workdir=workdir,
        connections=dict(connections or {}),
        resolved=_plain(json_format.MessageToDict(assignment.resolved)),
        isolation="pooled" if step.isolation == spec_pb2.ISOLATION_POOLED else "process",
    )


def _plain(value: Any) -> Any:
    """JSON as Python reads it: protobuf's Struct keeps every number as a double, so
    integral numbers become ``int`` again (``7.0`` → ``7``)."""
    if isinstance(value, float) and value.is_integer() and abs(value) <= 2**53:
        return int(value)
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def _stamp(moment: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment.astimezone(UTC))
    return stamp


def result_message(
    lease_id: str,
    outcome: Outcome,
    artifact_id: str = "",
    files: list[run_pb2.Artifact] | None = None,
    lineage: lineage_pb2.StepLineage | None = None,
) -> agent_service_pb2.TaskResult:
    values = struct_pb2.Struct()
    json_format.ParseDict(outcome.values or {}, values)
    summary = run_pb2.OutputSummary(
        values=values,
        columns=[run_pb2.Column(name=c.name, type=c.type) for c in outcome.columns],
        artifact_id=artifact_id,
        artifacts=files or [],
    )
    if outcome.rows is not None:
        summary.rows = outcome.rows
    result = agent_service_pb2.TaskResult(
        lease_id=lease_id,
        outcome=_OUTCOMES[outcome.status],
        error=outcome.error,
        failure_kind=_FAILURES.get(outcome.failure_kind or "", spec_pb2.FAILURE_KIND_UNSPECIFIED),
        output=summary,
        end_time=_stamp(outcome.ended_at),
    )
    if outcome.records_in is not None:
        result.records_in = outcome.records_in
    if outcome.records_out is not None:
        result.records_out = outcome.records_out
    if outcome.peak_memory_bytes is not None:
        result.usage.peak_memory_bytes = outcome.peak_memory_bytes
    if outcome.cpu_seconds is not None:
        result.usage.cpu_time.FromMicroseconds(round(outcome.cpu_seconds * 1_000_000))
    if lineage is not None:
        result.lineage.CopyFrom(lineage)
    return result


def started_time(moment: datetime) -> timestamp_pb2.Timestamp:
    return _stamp(moment)
