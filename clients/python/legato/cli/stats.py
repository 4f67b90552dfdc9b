"""``legato stats PIPELINE [--runs 30]``: per step p50/p95 duration, peak memory, CPU time
and records over the pipeline's latest finished runs, with a sparkline of each step's
durations (oldest → newest) and the slowest step marked (see docs/monitoring.md)."""

from __future__ import annotations

import argparse
import sys

from google.protobuf import duration_pb2

from legato.cli.output import emit_message, local_time, render_table
from legato.cli.specfiles import CommandError
from legato.cli.usage import memory_cell, seconds_text
from legato.client import Client
from legato.v1 import pipeline_service_pb2 as pb
from legato.v1 import run_pb2

__all__ = ["register", "sparkline"]

MAX_RUNS = 1000
BARS = "▁▂▃▄▅▆▇█"
FAILED = "✗"
"""A run in which the step failed (or timed out)."""
NOT_RUN = " "
"""A counted run in which the step did not run (skipped, never reached, not in that
version)."""
UNTIMED = "·"
"""A run in which the step ran without a duration (cancelled before it started)."""
_FAILED_STATUSES = frozenset({run_pb2.STEP_STATUS_FAILED, run_pb2.STEP_STATUS_TIMED_OUT})


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    help_text = (
        "per step p50/p95 duration, peak memory, CPU time and records over a pipeline's "
        "latest finished runs, with the trend and the slowest step"
    )
    p = sub.add_parser("stats", parents=[common], help=help_text, description=help_text)
    p.set_defaults(handler=stats, needs_client=True)
    p.add_argument("pipeline", metavar="PIPELINE", help="the pipeline whose runs to count")
    p.add_argument(
        "--runs",
        type=int,
        default=30,
        metavar="N",
        help=f"count the latest N finished runs (default 30, at most {MAX_RUNS}; test runs "
        "never count)",
    )


def _seconds(value: duration_pb2.Duration) -> float:
    return value.ToNanoseconds() / 1e9


def sparkline(samples: list[tuple[float | None, bool] | None]) -> str:
    """One character per run, oldest first: a bar of eight heights from the shortest to
    the longest duration among the samples, :data:`FAILED` for a failed run,
    :data:`UNTIMED` for one without a duration and :data:`NOT_RUN` for none. A sample is
    ``(seconds, failed)``."""
    timed = [s[0] for s in samples if s is not None and s[0] is not None and not s[1]]
    low, high = (min(timed), max(timed)) if timed else (0.0, 0.0)
    line = []
    for sample in samples:
        if sample is None:
            line.append(NOT_RUN)
        elif sample[1]:
            line.append(FAILED)
        elif sample[0] is None:
            line.append(UNTIMED)
        elif high <= low:
            line.append(BARS[len(BARS) // 2 - 1])
        else:
            level = round((sample[0] - low) / (high - low) * (len(BARS) - 1))
            line.append(BARS[level])
    return "".join(line)


def _trend(step: pb.StepStats, run_ids: list[str]) -> str:
    by_run = {s.run_id: s for s in step.samples}
    samples: list[tuple[float | None, bool] | None] = []
    for run_id in run_ids:
        sample = by_run.get(run_id)
        if sample is None:
            samples.append(None)
        else:
            seconds = _seconds(sample.duration) if sample.HasField("duration") else None
            samples.append((seconds, sample.status in _FAILED_STATUSES))
    return sparkline(samples)


def _duration(value: duration_pb2.Duration, present: bool) -> str:
    return seconds_text(_seconds(value)) if present else "-"


def stats(client: Client, args: argparse.Namespace) -> int:
    if not 1 <= args.runs <= MAX_RUNS:
        print(
            f"legato stats: --runs {args.runs} is out of range; count between 1 and "
            f"{MAX_RUNS} runs",
            file=sys.stderr,
        )
        raise CommandError
    found = client.pipeline_stats(args.pipeline, runs=args.runs)
    if args.output != "table":
        emit_message(found, args.output)
        return 0
    if not found.runs:
        print(f"pipeline {found.pipeline} has no finished runs yet")
        return 0
    failed = sum(1 for r in found.runs if r.status != run_pb2.RUN_STATUS_SUCCEEDED)
    newest, oldest = found.runs[0], found.runs[-1]
    span = f"{local_time(oldest.start_time, seconds=False)} → "
    span += local_time(newest.start_time, seconds=False)
    count = f"{len(found.runs)} run" + ("" if len(found.runs) == 1 else "s")
    unsuccessful = f", {failed} not successful" if failed else ""
    print(f"pipeline {found.pipeline}: the latest {count}{unsuccessful}, {span}")
    print()
    run_ids = [r.run_id for r in reversed(found.runs)]  # oldest first, as the trends
    rows = []
    for step in found.steps:
        rows.append(
            [
                f"{step.name} *" if step.name == found.slowest_step else step.name,
                step.kind or "-",
                str(step.count),
                str(step.failures),
                _duration(step.duration_p50, step.HasField("duration_p50")),
                _duration(step.duration_p95, step.HasField("duration_p95")),
                memory_cell(
                    step.peak_memory_bytes_p50 if step.HasField("peak_memory_bytes_p50") else None
                ),
                memory_cell(
                    step.peak_memory_bytes_max if step.HasField("peak_memory_bytes_max") else None,
                    step.memory_limit_bytes,
                ),
                _duration(step.cpu_time_p50, step.HasField("cpu_time_p50")),
                str(step.records_out_p50) if step.HasField("records_out_p50") else "-",
                _trend(step, run_ids),
            ]
        )
    headers = ["STEP", "KIND", "RUNS", "FAILED", "P50", "P95", "MEMORY P50", "MEMORY MAX"]
    print(render_table([*headers, "CPU P50", "RECORDS P50", "DURATION TREND"], rows))
    print()
    if found.slowest_step:
        print(f"* the slowest step (the highest p50 duration): {found.slowest_step}")
    print(f"trend: oldest → newest run, {BARS[0]}…{BARS[-1]} shortest to longest, {FAILED} failed")
    return 0
