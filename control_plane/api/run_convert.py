"""Runs, steps, attempts, log lines and agents (store rows) → legato.v1 messages."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from google.protobuf import duration_pb2, json_format, struct_pb2

from control_plane.api.convert import timestamp
from control_plane.execution.agents import AgentInfo
from control_plane.execution.runs import RunView
from control_plane.lineage.records import from_json
from control_plane.scheduling.backfills import BackfillView
from control_plane.store.models import AttemptRow, LogLineRow, RunRow
from control_plane.store.notifications import Notification
from control_plane.store.steps import StepState
from legato.v1 import agent_pb2, run_pb2, run_service_pb2, spec_pb2

__all__ = [
    "agent_message",
    "log_message",
    "notification_message",
    "run_message",
    "run_status",
    "step_message",
    "step_status_name",
    "struct",
    "trigger_kind",
    "trigger_kind_name",
]


def _enum(enum: Any, prefix: str, name: str) -> int:
    try:
        return int(enum.Value(f"{prefix}_{name.upper()}"))
    except ValueError:
        return 0


def run_status(name: str) -> int:
    return _enum(run_pb2.RunStatus, "RUN_STATUS", name)


def step_status(name: str) -> int:
    return _enum(run_pb2.StepStatus, "STEP_STATUS", name)


def step_status_name(value: int) -> str:
    return run_pb2.StepStatus.Name(value).removeprefix("STEP_STATUS_").lower()  # type: ignore[arg-type]


def trigger_kind(name: str) -> int:
    return _enum(run_pb2.TriggerKind, "TRIGGER_KIND", name)


def trigger_kind_name(value: int) -> str:
    return run_pb2.TriggerKind.Name(value).removeprefix("TRIGGER_KIND_").lower()  # type: ignore[arg-type]


def failure_kind(name: str) -> int:
    return _enum(spec_pb2.FailureKind, "FAILURE_KIND", name) if name else 0


def struct(values: dict[str, Any] | None) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    if values:
        json_format.ParseDict(values, message)
    return message


def _duration(start: datetime | None, end: datetime | None) -> duration_pb2.Duration | None:
    if start is None:
        return None
    message = duration_pb2.Duration()
    message.FromTimedelta((end or datetime.now(UTC)) - start)
    return message


def run_message(run: RunRow, view: RunView | None = None) -> run_pb2.Run:
    details = dict(run.trigger or {})
    message = run_pb2.Run(
        id=run.id,
        pipeline=run.pipeline,
        version=max(run.version, 0),  # 0 for a test run: its hidden version is below 0
        status=run_status(run.status),  # type: ignore[arg-type]
        trigger=run_pb2.RunTrigger(
            kind=trigger_kind(run.trigger_kind),  # type: ignore[arg-type]
            logical_time=timestamp(run.logical_time),
            event_id=str(details.get("event_id", "")),
            parent_run_id=str(details.get("parent_run_id", "")),
            parent_step=str(details.get("parent_step", "")),
            backfill_id=str(details.get("backfill_id", "")),
            rerun_of=str(details.get("rerun_of", "")),
            actor=str(details.get("actor", "")),
        ),
        params=struct(run.params),
        create_time=timestamp(run.create_time),
        start_time=timestamp(run.start_time),
        end_time=timestamp(run.end_time),
        duration=_duration(run.start_time, run.end_time),
        error=run.error,
        waiting_reason=run.waiting_reason,
        request_id=run.request_id or "",
        trace_id=run.trace_id,
    )
    if view is not None:
        message.steps.extend(step_message(s, view.attempts.get(s.id, [])) for s in view.steps)
    return message


def step_message(step: StepState, attempts: list[AttemptRow]) -> run_pb2.StepRun:
    output = step.output or {}
    message = run_pb2.StepRun(
        name=step.name,
        status=step_status(step.status),  # type: ignore[arg-type]
        attempt=step.attempt,
        agent=step.agent,
        start_time=timestamp(step.start_time),
        end_time=timestamp(step.end_time),
        duration=_duration(step.start_time, step.end_time) if step.start_time else None,
        error=step.error,
        failure_kind=failure_kind(step.failure_kind),  # type: ignore[arg-type]
        waiting_reason=step.waiting_reason or _waiting(step),
        child_run_id=step.child_run_id or "",
        next_attempt_time=timestamp(step.not_before) if step.status == "pending" else None,
        kind=step.kind,
        attempts=[_attempt(a) for a in attempts],
    )
    if step.records_in is not None:
        message.records_in = step.records_in
    if step.records_out is not None:
        message.records_out = step.records_out
    if step.status not in _UNDER_WAY:  # a new attempt's figures are not known yet
        _usage(message, step.peak_memory_bytes, step.cpu_seconds, step.memory_limit_bytes)
    if step.lineage:
        message.lineage.CopyFrom(from_json(step.lineage))
    if output:
        summary = run_pb2.OutputSummary(
            values=struct(output.get("values")),
            artifact_id=str(output.get("artifact_id") or ""),
            columns=[
                run_pb2.Column(name=c["name"], type=c["type"]) for c in output.get("columns") or []
            ],
            artifacts=[
                run_pb2.Artifact(
                    id=a["id"],
                    name=a["name"],
                    media_type=a["media_type"],
                    size_bytes=int(a["size_bytes"]),
                    sha256=a["sha256"],
                )
                for a in output.get("artifacts") or []
            ],
        )
        if output.get("rows") is not None:
            summary.rows = int(output["rows"])
        message.output.CopyFrom(summary)
    return message


def _waiting(step: StepState) -> str:
    if step.status == "ready":
        return "waiting for a free agent slot"
    return ""


def _attempt(attempt: AttemptRow) -> run_pb2.StepAttempt:
    message = run_pb2.StepAttempt(
        number=attempt.number,
        status=step_status(attempt.status),  # type: ignore[arg-type]
        agent=attempt.agent,
        lease_id=attempt.lease_id,
        start_time=timestamp(attempt.start_time),
        end_time=timestamp(attempt.end_time),
        duration=_duration(attempt.start_time, attempt.end_time) if attempt.start_time else None,
        error=attempt.error,
        failure_kind=failure_kind(attempt.failure_kind),  # type: ignore[arg-type]
    )
    if attempt.records_in is not None:
        message.records_in = attempt.records_in
    if attempt.records_out is not None:
        message.records_out = attempt.records_out
    _usage(message, attempt.peak_memory_bytes, attempt.cpu_seconds, attempt.memory_limit_bytes)
    return message


_UNDER_WAY = frozenset({"leased", "running"})


def _usage(
    message: run_pb2.StepRun | run_pb2.StepAttempt,
    peak_memory_bytes: int | None,
    cpu_seconds: float | None,
    memory_limit_bytes: int | None,
) -> None:
    """The resource use of an attempt (a step's: its latest attempt's) on its message."""
    if peak_memory_bytes is not None:
        message.peak_memory_bytes = peak_memory_bytes
    if cpu_seconds is not None:
        message.cpu_time.FromMicroseconds(round(cpu_seconds * 1_000_000))
    message.memory_limit_bytes = memory_limit_bytes or 0


_STREAMS = {
    "system": run_pb2.LOG_STREAM_SYSTEM,
    "stdout": run_pb2.LOG_STREAM_STDOUT,
    "stderr": run_pb2.LOG_STREAM_STDERR,
}


def log_message(line: LogLineRow) -> run_pb2.LogLine:
    return run_pb2.LogLine(
        seq=line.id,
        time=timestamp(line.time),
        step=line.step,
        attempt=line.attempt,
        stream=_STREAMS.get(line.stream, run_pb2.LOG_STREAM_UNSPECIFIED),
        text=line.text,
    )


_AGENT_STATES = {
    "connected": agent_pb2.AGENT_STATE_CONNECTED,
    "draining": agent_pb2.AGENT_STATE_DRAINING,
    "disconnected": agent_pb2.AGENT_STATE_DISCONNECTED,
}


def agent_message(info: AgentInfo) -> agent_pb2.Agent:
    row = info.row
    return agent_pb2.Agent(
        name=row.name,
        labels={str(k): str(v) for k, v in (row.labels or {}).items()},
        slots=row.slots,
        slots_used=info.slots_used,
        version=row.version,
        state=_AGENT_STATES.get(info.state, agent_pb2.AGENT_STATE_UNSPECIFIED),
        connect_time=timestamp(row.connect_time),
        last_seen_time=timestamp(row.last_seen_time),
        hostname=row.hostname,
        connections=list(row.connections or []),
        instance_id=row.instance_id,
        credential=row.credential,
        leases=[
            agent_pb2.AgentLease(
                run_id=lease.run_id,
                step=lease.step,
                attempt=lease.attempt,
                start_time=timestamp(lease.start_time),
                lease_expire_time=timestamp(lease.lease_expire_time),
            )
            for lease in info.leases
        ],
    )


def backfill_message(view: BackfillView) -> run_pb2.Backfill:
    row = view.row
    return run_pb2.Backfill(
        id=row.id,
        pipeline=row.pipeline,
        start_time=timestamp(row.start_time),
        end_time=timestamp(row.end_time),
        only_missing=row.only_missing,
        status=run_pb2.BackfillStatus.Value(f"BACKFILL_STATUS_{view.status.upper()}"),
        runs_total=row.runs_total,
        runs_done=view.runs_done,
        runs_failed=view.runs_failed,
        create_time=timestamp(row.create_time),
    )


_NOTIFICATION_STATUSES = {
    "pending": run_service_pb2.NOTIFICATION_STATUS_PENDING,
    "sending": run_service_pb2.NOTIFICATION_STATUS_SENDING,
    "delivered": run_service_pb2.NOTIFICATION_STATUS_DELIVERED,
    "failed": run_service_pb2.NOTIFICATION_STATUS_FAILED,
    "suppressed": run_service_pb2.NOTIFICATION_STATUS_SUPPRESSED,
}


def notification_message(row: Notification) -> run_service_pb2.NotificationDelivery:
    return run_service_pb2.NotificationDelivery(
        run_id=row.run_id,
        pipeline=row.pipeline,
        event=row.event,
        channel=row.channel,
        target=row.target,
        status=_NOTIFICATION_STATUSES.get(
            row.status, run_service_pb2.NOTIFICATION_STATUS_UNSPECIFIED
        ),
        attempts=row.attempts,
        last_error=row.last_error,
        idempotency_key=row.idempotency_key,
        create_time=timestamp(row.create_time),
        next_attempt_time=timestamp(row.next_attempt_time) if row.status == "pending" else None,
        deliver_time=timestamp(row.deliver_time),
    )
