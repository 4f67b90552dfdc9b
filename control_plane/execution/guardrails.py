"""Guardrails, decided on plain data: a step's records against ``expect.records`` (min,
max, change against the median of its last successful runs) and a step's or run's
duration against ``expect.duration`` (a multiple of its median). The transitions read the
history (``store.history``), call these, and act on the verdict: a ``fail`` records
guardrail fails the step with the message; a ``warn`` one, and a slow step or run, log the
message and fire ``volume_anomaly`` or ``slow``."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

from legato.spec.units import format_duration
from legato.v1 import spec_pb2

__all__ = [
    "DEFAULT_DURATION_BASELINE",
    "DEFAULT_RECORDS_BASELINE",
    "MIN_BASELINE",
    "Verdict",
    "duration_verdict",
    "records_verdict",
]

DEFAULT_RECORDS_BASELINE = 7
DEFAULT_DURATION_BASELINE = 10
MIN_SLOW_EXCESS = 1.0
"""Seconds beyond its median a step or run must take, whatever the ratio, to be slow: a
20 ms step that once takes 50 ms is noise (a busy machine), not something to act on."""
# A baseline needs this many past successful runs (or all of baseline_runs, when fewer).
MIN_BASELINE = 3


@dataclass(frozen=True)
class Verdict:
    """A broken guardrail: the message (run log, event, step error) and its figures."""

    message: str
    fail: bool
    details: dict[str, Any]


def _enough(history: list[Any], wanted: int) -> bool:
    return len(history) >= min(MIN_BASELINE, wanted)


def records_verdict(
    step: str, expect: spec_pb2.RecordsExpectation, records: int | None, history: list[int]
) -> Verdict | None:
    """``expect.records`` of ``step`` against the records it output (``history``: its
    records in its last successful runs, newest first); None when it holds."""
    fail = expect.action == spec_pb2.EXPECTATION_ACTION_FAIL
    figures: dict[str, Any] = {"step": step, "records": records, "kind": "records"}
    if records is None:
        return None  # a step that reports no count (a trigger step) is not judged
    if expect.HasField("min") and records < expect.min:
        figures["min"] = expect.min
        return Verdict(
            f"step '{step}' output {records:,} records, fewer than expect.records.min "
            f"{expect.min:,}",
            fail,
            figures,
        )
    if expect.HasField("max") and records > expect.max:
        figures["max"] = expect.max
        return Verdict(
            f"step '{step}' output {records:,} records, more than expect.records.max "
            f"{expect.max:,}",
            fail,
            figures,
        )
    wanted = expect.baseline_runs or DEFAULT_RECORDS_BASELINE
    if not expect.max_change or not _enough(history, wanted):
        return None
    median = statistics.median(history[:wanted])
    low, high = median * (1 - expect.max_change), median * (1 + expect.max_change)
    if low <= records <= high:
        return None
    change = (records - median) / median if median else float("inf")
    shown = f"{change:+.0%}" if median else "from 0"
    figures.update(median=median, change=change if median else None, baseline_runs=len(history))
    return Verdict(
        f"step '{step}' output {records:,} records, {shown} against the median {median:,.0f} "
        f"of its last {len(history[:wanted])} successful runs (expect.records.max_change "
        f"±{expect.max_change:.0%})",
        fail,
        figures,
    )


def duration_verdict(
    what: str,
    expect: spec_pb2.DurationExpectation,
    seconds: float,
    history: list[float],
    *,
    step: str = "",
) -> Verdict | None:
    """``expect.duration`` of ``what`` ("step 'load'", "the run") against how long it
    took (``history``: its durations in its last successful runs, newest first)."""
    wanted = expect.baseline_runs or DEFAULT_DURATION_BASELINE
    if not _enough(history, wanted):
        return None
    median = statistics.median(history[:wanted])
    if median <= 0 or seconds <= expect.max_ratio * median:
        return None
    if seconds - median < MIN_SLOW_EXCESS:
        return None
    ratio = seconds / median
    return Verdict(
        f"{what} took {format_duration(round(seconds, 1))}, {ratio:.1f} times its median "
        f"{format_duration(round(median, 1))} over its last {len(history[:wanted])} "
        f"successful runs (expect.duration.max_ratio {expect.max_ratio:g})",
        False,
        {
            **({"step": step} if step else {}),
            "kind": "duration",
            "seconds": seconds,
            "median_seconds": median,
            "ratio": ratio,
            "baseline_runs": len(history[:wanted]),
        },
    )
