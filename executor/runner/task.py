"""The runner's input and output: a Task to run and the Outcome of running it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

__all__ = ["ColumnInfo", "FailureKind", "Isolation", "Outcome", "Status", "Task", "TaskInput"]

Status = Literal["succeeded", "failed", "cancelled"]
Isolation = Literal["process", "pooled"]
FailureKind = Literal["error", "timeout", "memory", "lost"]


@dataclass(frozen=True)
class TaskInput:
    """One upstream step's output: its values and, when it produced one, its table as an
    Arrow IPC file (file or stream format)."""

    step: str
    values: dict[str, Any]
    table_path: Path | None


@dataclass(frozen=True)
class Task:
    lease_id: str
    run_id: str
    pipeline: str
    step_name: str
    attempt: int
    kind: str
    """The step kind: ``transform``, ``function``, ... (a key of ``executor.kinds.KINDS``)."""
    config: dict[str, Any]
    """The kind's message as ``MessageToDict(msg, preserving_proto_field_name=True)``."""
    params: dict[str, Any]
    inputs: list[TaskInput]
    timeout: float | None
    """Seconds from the child's start; None for no limit."""
    memory_bytes: int | None
    """See :mod:`executor.runner.limits` for what is counted; None for no limit."""
    workdir: Path
    """Created and removed by the caller; the runner writes ``task.json`` and the child
    writes ``output.arrow`` there, and it is the step's working directory."""
    connections: Mapping[str, str] = field(default_factory=dict)
    """The agent's connections and secrets that this step names (name → value)."""
    resolved: Mapping[str, Any] = field(default_factory=dict)
    """Values the control plane evaluated for the step (see ``StepContext.resolved``)."""
    isolation: Isolation = "process"
    """``process``: a fresh process for this attempt; ``pooled``: a reused worker (see
    :mod:`executor.runner.pooled`)."""


@dataclass(frozen=True)
class ColumnInfo:
    name: str
    type: str
    """The Arrow type, as Arrow prints it: ``int64``, ``string``, ``timestamp[us, tz=UTC]``."""


@dataclass(frozen=True)
class Outcome:
    status: Status
    failure_kind: FailureKind | None
    error: str
    records_in: int | None
    records_out: int | None
    values: dict[str, Any]
    table_path: Path | None
    rows: int | None
    columns: list[ColumnInfo]
    started_at: datetime
    """When the child started executing (UTC); when it never started, when run() began."""
    ended_at: datetime
    max_rss_bytes: int | None
    """The child's peak resident set as the kernel counts it (wait4), which includes the
    pages it shares with the fork server; None when it was not reaped by the runner."""
    peak_memory_bytes: int | None = None
    """The most memory the attempt's processes held at once on top of the fork server, as
    the memory limit counts it (see :mod:`executor.runner.usage`); None when not measured."""
    cpu_seconds: float | None = None
    """User + system CPU time of the attempt's processes; None when not measured."""
