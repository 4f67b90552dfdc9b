"""How a step's state changes, decided on plain data (no database, no session): the end
of an attempt (:func:`settle`) and a resolver decision (:func:`decided`). The transitions
read the rows, call these, and write what they return."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from control_plane.execution import runlog
from control_plane.execution.resolver import Decision
from control_plane.execution.retries import decide_retry
from control_plane.statuses import AttemptStatus, StepStatus
from legato.v1 import spec_pb2

__all__ = ["AttemptOutcome", "Change", "Settlement", "decided", "settle"]


@dataclass(frozen=True)
class AttemptOutcome:
    """How an attempt ended, as its agent (or the lease reaper) reports it."""

    status: str  # "succeeded" | "failed" | "cancelled"
    failure_kind: str = ""  # "error" | "timeout" | "lost" | "memory" when failed
    error: str = ""
    records_in: int | None = None
    records_out: int | None = None
    output: dict[str, Any] = field(default_factory=dict)
    end_time: datetime | None = None
    peak_memory_bytes: int | None = None
    cpu_seconds: float | None = None
    lineage: dict[str, Any] | None = None
    """What the attempt read and wrote (StepLineage as JSON); None: nothing known."""


@dataclass(frozen=True)
class Settlement:
    """What the end of an attempt writes: the attempt's and the step's columns, the run
    log's lines, and what follows."""

    attempt: dict[str, Any]
    step: dict[str, Any]
    logs: list[str]
    settled: bool
    """The step succeeded or failed for good: decide the steps that depend on it."""
    retry_at: datetime | None = None
    """The step runs again, not before this."""


@dataclass(frozen=True)
class AttemptFacts:
    """What :func:`settle` reads of the attempt and its step."""

    step: str
    kind: str
    position: int
    number: int
    agent: str
    start_time: datetime | None
    export_target: str | None = None
    memory_limit_bytes: int | None = None
    """The step's effective memory limit (the one its assignment carried)."""


def settle(
    facts: AttemptFacts,
    outcome: AttemptOutcome,
    policy: spec_pb2.RetryPolicy,
    *,
    run_running: bool,
    now: datetime,
) -> Settlement:
    """The end of a current attempt: succeeded, retried (pending until its delay ends,
    only while the run is running) or failed for good."""
    end = outcome.end_time or now
    usage = {
        "peak_memory_bytes": outcome.peak_memory_bytes,
        "cpu_seconds": outcome.cpu_seconds,
        "memory_limit_bytes": facts.memory_limit_bytes,
    }
    attempt: dict[str, Any] = {
        "end_time": end,
        "records_in": outcome.records_in,
        "records_out": outcome.records_out,
        "error": outcome.error,
        "failure_kind": outcome.failure_kind,
        **usage,
    }
    step: dict[str, Any] = {
        "records_in": outcome.records_in,
        "records_out": outcome.records_out,
        "end_time": end,
        **usage,
    }
    if outcome.lineage is not None:
        step["lineage"] = outcome.lineage  # a column of the same UPDATE
    near = None
    if outcome.failure_kind != "memory":  # its error says so already
        near = runlog.step_near_memory_limit(
            facts.position, facts.step, outcome.peak_memory_bytes, facts.memory_limit_bytes
        )
    if outcome.status == "succeeded":
        attempt["status"] = AttemptStatus.SUCCEEDED
        step.update(status=StepStatus.SUCCEEDED, error="", failure_kind="", output=outcome.output)
        duration = (end - facts.start_time).total_seconds() if facts.start_time else 0.0
        text = runlog.step_succeeded(
            facts.position,
            facts.step,
            facts.kind,
            outcome.records_in,
            outcome.records_out,
            duration,
            export_target=facts.export_target,
        )
        return Settlement(attempt, step, [text] if near is None else [near, text], settled=True)
    kind = outcome.failure_kind or "error"
    timed_out = kind == "timeout"
    attempt["status"] = AttemptStatus.TIMED_OUT if timed_out else AttemptStatus.FAILED
    step.update(error=outcome.error, failure_kind=kind)
    decision = decide_retry(policy, facts.number, kind)
    retry = decision if decision.retry and run_running else None
    logs = [] if near is None else [near]
    if kind == "lost":
        logs.append(runlog.step_lost(facts.position, facts.step, facts.number, facts.agent))
    logs.append(
        runlog.step_failed(
            facts.position, facts.step, facts.number, decision.attempts_total, outcome.error, retry
        )
    )
    if retry is not None:
        not_before = now + timedelta(seconds=retry.delay)
        step.update(status=StepStatus.PENDING, not_before=not_before, waiting_reason=retry.reason)
        return Settlement(attempt, step, logs, settled=False, retry_at=not_before)
    step["status"] = StepStatus.TIMED_OUT if timed_out else StepStatus.FAILED
    return Settlement(attempt, step, logs, settled=True)


@dataclass(frozen=True)
class Change:
    """What a resolver decision writes to its step: the columns, the run log's line
    (none when the step becomes ready) and whether an agent is to run it."""

    values: dict[str, Any]
    log: str | None
    ready: bool


def decided(decision: Decision, position: int, now: datetime) -> Change:
    """The change of a step the resolver decided (ready, skipped, upstream failed or
    failed)."""
    if decision.status == StepStatus.READY:
        return Change({"status": StepStatus.READY, "waiting_reason": ""}, None, ready=True)
    values: dict[str, Any] = {
        "status": decision.status,
        "end_time": now,
        "error": decision.reason if decision.status != StepStatus.SKIPPED else "",
        "waiting_reason": "",
    }
    if decision.status == StepStatus.SKIPPED:
        text = runlog.step_skipped(position, decision.step, decision.reason)
    elif decision.status == StepStatus.UPSTREAM_FAILED:
        text = runlog.step_upstream_failed(position, decision.step, decision.reason)
    else:
        text = runlog.step_failed(position, decision.step, 0, 0, decision.reason, None)
    return Change(values, text, ready=False)
