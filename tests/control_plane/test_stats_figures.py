"""The maths of pipeline stats on plain data: percentiles, what a step's figures count,
the order of the steps and the slowest one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from control_plane.execution.stats import percentile, runs_to_count, summarise
from control_plane.store.stats import CountedRun, StepSampleRow

T0 = datetime(2026, 12, 8, 12, 0, tzinfo=UTC)


def test_percentiles_interpolate_between_the_closest_ranks() -> None:
    assert percentile([], 0.5) is None
    assert percentile([7.0], 0.95) == 7.0
    assert percentile([4.0, 1.0, 3.0, 2.0], 0.5) == 2.5
    assert percentile([1.0, 2.0, 3.0], 0.5) == 2.0
    twenty = [float(n) for n in range(1, 21)]
    assert percentile(twenty, 0.95) == pytest.approx(19.05)
    assert percentile(twenty, 1.0) == 20.0 and percentile(twenty, 0.0) == 1.0


def test_runs_to_count_defaults_to_30_and_caps_at_1000() -> None:
    assert runs_to_count(0) == 30
    assert runs_to_count(5) == 5
    assert runs_to_count(5000) == 1000


def run(index: int, status: str = "succeeded") -> CountedRun:
    start = T0 + timedelta(hours=index)
    return CountedRun(f"run-{index}", 1, status, start, start + timedelta(seconds=10))


def sample(
    run_id: str,
    name: str,
    seconds: float | None,
    *,
    position: int = 1,
    status: str = "succeeded",
    peak: int | None = None,
    records: int | None = None,
    cpu: float | None = None,
    limit: int | None = None,
) -> StepSampleRow:
    start = T0
    end = start + timedelta(seconds=seconds) if seconds is not None else None
    return StepSampleRow(
        run_id, name, "transform", position, status, start, end, records, peak, cpu, limit
    )


def test_a_step_s_figures_over_the_runs_it_ran_in() -> None:
    runs = [run(3), run(2), run(1)]  # newest first
    rows = [
        sample("run-1", "load", 2.0, peak=100, records=10, cpu=1.0, limit=1000),
        sample("run-2", "load", 4.0, status="failed", peak=300, cpu=3.0, limit=1000),
        sample("run-3", "load", 6.0, peak=200, records=30, cpu=2.0, limit=2000),
    ]
    report = summarise("etl", ["load"], {"load": "transform"}, runs, rows)
    (load,) = report.steps
    assert (load.count, load.failures) == (3, 1)
    assert load.duration_p50 == 4.0 and load.duration_p95 == pytest.approx(5.8)
    assert (load.peak_memory_p50, load.peak_memory_max) == (200, 300)
    assert load.records_out_p50 == 20  # over the samples that reported records
    assert load.cpu_p50 == 2.0
    assert load.memory_limit_bytes == 2000  # the newest sample's
    assert [s.run_id for s in load.samples] == ["run-1", "run-2", "run-3"]  # oldest first
    assert report.slowest_step == "load"


def test_steps_in_dag_order_then_those_only_older_versions_had() -> None:
    runs = [run(2), run(1)]
    rows = [
        sample("run-1", "legacy", 1.0, position=2),
        sample("run-1", "extract", 1.0, position=1),
        sample("run-2", "load", 9.0, position=2),
        sample("run-2", "extract", 3.0, position=1),
    ]
    kinds = {"extract": "query", "load": "transform", "never": "transform"}
    report = summarise("etl", ["extract", "load", "never"], kinds, runs, rows)
    assert [s.name for s in report.steps] == ["extract", "load", "legacy"]
    assert report.steps[0].kind == "query" and report.steps[2].kind == "transform"
    assert report.slowest_step == "load"


def test_a_tie_for_slowest_goes_to_the_first_in_dag_order() -> None:
    rows = [sample("run-1", "a", 5.0), sample("run-1", "b", 5.0, position=2)]
    report = summarise("etl", ["a", "b"], {"a": "x", "b": "x"}, [run(1)], rows)
    assert report.slowest_step == "a"


def test_no_runs_means_no_steps_and_no_slowest() -> None:
    report = summarise("etl", ["a"], {"a": "transform"}, [], [])
    assert report.steps == [] and report.slowest_step == "" and report.runs == []


def test_unmeasured_figures_stay_empty() -> None:
    rows = [sample("run-1", "a", None)]
    (step,) = summarise("etl", ["a"], {"a": "trigger"}, [run(1)], rows).steps
    assert step.count == 1
    assert step.duration_p50 is None and step.peak_memory_p50 is None and step.cpu_p50 is None
