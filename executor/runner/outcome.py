"""The Outcome of an attempt, from what the runner saw: the result document the child
wrote (if any), how it exited, and whether the runner stopped it and why.

When the runner stopped the child, its reason wins over whatever the child reported
(a step that finishes during its SIGTERM grace still exceeded its timeout)."""

from __future__ import annotations

import json
import signal
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from executor.runner.forkserver import ExitStatus
from executor.runner.task import ColumnInfo, FailureKind, Outcome, Status, Task
from legato.spec.units import format_duration, format_memory

__all__ = ["Ending", "Stop", "build", "parse_document"]


@dataclass(frozen=True)
class Stop:
    """Why the runner stopped an attempt: ``timeout``, ``memory`` (over its limit),
    ``cancel`` (``reason`` says why) or ``lost`` (the fork server died)."""

    kind: Literal["timeout", "memory", "cancel", "lost"]
    reason: str = ""


@dataclass(frozen=True)
class Ending:
    task: Task
    begun: datetime
    started_at: datetime | None
    ended_at: datetime
    document: dict[str, Any] | None
    exit: ExitStatus | None
    stop: Stop | None
    killed: bool
    """Whether the runner had to send SIGKILL after SIGTERM's grace."""
    grace: float
    oom_killed: bool = False
    """Whether the kernel killed the attempt's cgroup for going over memory.max."""
    peak_memory_bytes: int | None = None
    cpu_seconds: float | None = None


def parse_document(data: bytes) -> dict[str, Any] | None:
    try:
        document = json.loads(data)
    except ValueError:
        return None
    return document if isinstance(document, dict) and "status" in document else None


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _memory_error(task: Task, detail: str = "") -> str:
    suffix = f": {detail}" if detail else ""
    if task.memory_bytes:
        limit = format_memory(task.memory_bytes)
        return f"step {task.step_name!r} exceeded its memory limit of {limit} (memory){suffix}"
    return f"step {task.step_name!r} ran out of memory{suffix}"


def _failure(end: Ending) -> tuple[Status, FailureKind | None, str]:
    """Status, failure kind and error when the runner stopped the child or it left no
    result; None for the kind when the child's document decides."""
    task, name = end.task, repr(end.task.step_name)
    stop = end.stop
    if stop is not None and stop.kind == "cancel":
        return "cancelled", None, f"step {name} was cancelled: {stop.reason}"
    if stop is not None and stop.kind == "timeout":
        limit = format_duration(task.timeout or 0)
        how = (
            f"killed with SIGKILL after {format_duration(end.grace)} grace"
            if end.killed
            else "stopped with SIGTERM"
        )
        return "failed", "timeout", f"step {name} exceeded its timeout of {limit} (timeout); {how}"
    if (stop is not None and stop.kind == "memory") or end.oom_killed:
        return "failed", "memory", _memory_error(task)
    if (stop is not None and stop.kind == "lost") or end.exit is None:
        reason = stop.reason if stop is not None and stop.reason else "the fork server died"
        return "failed", "lost", f"step {name} was lost: {reason}; its processes were killed"
    status = end.exit
    if status.signal is not None:
        signame = _signal_name(status.signal)
        hint = (
            " (when nothing sent it, the system may have run out of memory)"
            if status.signal == signal.SIGKILL
            else ""
        )
        return (
            "failed",
            "error",
            f"step {name} was killed by {signame} before it reported a result{hint}",
        )
    return (
        "failed",
        "error",
        f"step {name} exited with status {status.code} before it reported a result",
    )


def _time(value: Any, default: datetime) -> datetime:
    return datetime.fromtimestamp(value, UTC) if isinstance(value, int | float) else default


def build(end: Ending) -> Outcome:
    document = end.document if end.stop is None and not end.oom_killed else None
    started = end.started_at or end.begun
    if end.document is not None:
        started = _time(end.document.get("started_at"), started)
    common: dict[str, Any] = {
        "started_at": started,
        "ended_at": end.ended_at,
        "max_rss_bytes": end.exit.max_rss if end.exit is not None else None,
        "peak_memory_bytes": end.peak_memory_bytes,
        "cpu_seconds": end.cpu_seconds,
    }
    if document is None:
        status, kind, error = _failure(end)
        return Outcome(
            status=status,
            failure_kind=kind,
            error=error,
            records_in=None,
            records_out=None,
            values={},
            table_path=None,
            rows=None,
            columns=[],
            **common,
        )
    if document["status"] != "succeeded":
        kind = "memory" if document.get("failure_kind") == "memory" else "error"
        error = str(document.get("error") or "the step failed")
        if kind == "memory":
            error = _memory_error(end.task, error)
        return Outcome(
            status="failed",
            failure_kind=kind,
            error=error,
            records_in=None,
            records_out=None,
            values={},
            table_path=None,
            rows=None,
            columns=[],
            **common,
        )
    table = document.get("table")
    return Outcome(
        status="succeeded",
        failure_kind=None,
        error="",
        records_in=document.get("records_in"),
        records_out=document.get("records_out"),
        values=dict(document.get("values") or {}),
        table_path=Path(table["path"]) if table else None,
        rows=table["rows"] if table else None,
        columns=[ColumnInfo(name, kind) for name, kind in table["columns"]] if table else [],
        **common,
    )
