"""Guardrails: a step's ``expect.records`` and ``expect.duration``, the run's
``expect.duration``."""

from __future__ import annotations

from collections.abc import Iterator

from legato.v1 import spec_pb2

from .fields import check_enum
from .violations import Violation, join

__all__ = ["MAX_BASELINE_RUNS", "check_duration_expectation", "check_step_expectations"]

MAX_BASELINE_RUNS = 100
_MAX_RATIO = 1000.0


def check_step_expectations(path: str, step: spec_pb2.Step) -> Iterator[Violation]:
    expect = step.expect
    if expect.HasField("records"):
        records_path = join(path, "expect.records")
        if step.WhichOneof("kind") == "trigger":
            yield Violation(
                records_path, "a trigger step outputs no records; remove expect.records"
            )
        else:
            yield from _check_records(records_path, expect.records)
    if expect.HasField("duration"):
        yield from check_duration_expectation(join(path, "expect.duration"), expect.duration)


def _check_records(path: str, records: spec_pb2.RecordsExpectation) -> Iterator[Violation]:
    has_min, has_max = records.HasField("min"), records.HasField("max")
    if not (has_min or has_max or records.max_change):
        yield Violation(
            path, "expect.records checks nothing; set min, max or max_change (like 0.5 for ±50%)"
        )
    if has_min and records.min < 0:
        yield Violation(join(path, "min"), f"{records.min} is negative; records are counted from 0")
    if has_max and records.max < 0:
        yield Violation(join(path, "max"), f"{records.max} is negative; records are counted from 0")
    if has_min and has_max and records.min > records.max:
        yield Violation(
            join(path, "max"), f"max {records.max} is less than min {records.min}; swap them"
        )
    if records.max_change < 0 or records.max_change > 100:
        yield Violation(
            join(path, "max_change"),
            f"{records.max_change:g} is not a change between 0 and 100; write ±50% as 0.5",
        )
    yield from _check_baseline(join(path, "baseline_runs"), records.baseline_runs)
    if records.baseline_runs and not records.max_change:
        yield Violation(
            join(path, "baseline_runs"),
            "baseline_runs is only read with max_change; set max_change (like 0.5) or remove it",
        )
    yield from check_enum(
        join(path, "action"), spec_pb2.ExpectationAction.DESCRIPTOR, records.action
    )


def check_duration_expectation(
    path: str, duration: spec_pb2.DurationExpectation
) -> Iterator[Violation]:
    if not 1 < duration.max_ratio <= _MAX_RATIO:
        yield Violation(
            join(path, "max_ratio"),
            f"{duration.max_ratio:g} is not a ratio above 1 (at most {_MAX_RATIO:g}); write "
            "three times the median as 3",
        )
    yield from _check_baseline(join(path, "baseline_runs"), duration.baseline_runs)


def _check_baseline(path: str, runs: int) -> Iterator[Violation]:
    if runs > MAX_BASELINE_RUNS:
        yield Violation(path, f"{runs} is more than the maximum of {MAX_BASELINE_RUNS} runs")
