"""How the CLI prints what steps used: peak memory (against the limit) and CPU time, and
which step of a run was the slowest."""

from __future__ import annotations

from collections.abc import Sequence

from google.protobuf import duration_pb2

from legato.spec.artifacts import human_size
from legato.spec.units import format_duration
from legato.v1 import run_pb2

__all__ = ["cpu_cell", "memory_cell", "seconds_text", "slowest_step"]

_FINISHED = frozenset(
    {
        run_pb2.STEP_STATUS_SUCCEEDED,
        run_pb2.STEP_STATUS_FAILED,
        run_pb2.STEP_STATUS_TIMED_OUT,
        run_pb2.STEP_STATUS_CANCELLED,
    }
)


def seconds_text(seconds: float) -> str:
    """``850ms``, ``1.2s``, ``4m12s``: a duration as the CLI prints it."""
    if seconds >= 60:
        seconds = round(seconds)
    elif seconds >= 1:
        seconds = round(seconds, 1)
    elif seconds >= 0.001:
        seconds = round(seconds, 3)
    else:
        return "0s"
    return format_duration(seconds)


def memory_cell(peak: int | None, limit: int = 0) -> str:
    """``412 MiB of 512 MiB``, ``412 MiB`` without a limit, ``-`` when not measured."""
    if peak is None:
        return "-"
    return f"{human_size(peak)} of {human_size(limit)}" if limit else human_size(peak)


def cpu_cell(cpu: duration_pb2.Duration, measured: bool) -> str:
    return seconds_text(cpu.ToNanoseconds() / 1e9) if measured else "-"


def slowest_step(steps: Sequence[run_pb2.StepRun]) -> str:
    """The finished step with the longest duration ("" unless two or more steps finished:
    marking the only one says nothing). Running steps are left out (they are not done
    growing); on a tie, the first in the run's order."""
    timed = [s for s in steps if s.status in _FINISHED and s.HasField("duration")]
    if len(timed) < 2:
        return ""
    best = timed[0]
    for step in timed[1:]:
        if step.duration.ToNanoseconds() > best.duration.ToNanoseconds():
            best = step
    return best.name
