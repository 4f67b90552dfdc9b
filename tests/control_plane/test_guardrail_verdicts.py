"""The guardrails' verdicts on plain figures, and when a run is late."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from control_plane.execution.guardrails import duration_verdict, records_verdict
from control_plane.notifications.late import late_reasons
from control_plane.store.models import RunRow
from legato.v1 import spec_pb2

WARN = spec_pb2.EXPECTATION_ACTION_WARN
FAIL = spec_pb2.EXPECTATION_ACTION_FAIL


def records(**fields: object) -> spec_pb2.RecordsExpectation:
    return spec_pb2.RecordsExpectation(**fields)  # type: ignore[arg-type]


def test_records_within_their_bounds_hold() -> None:
    expect = records(min=10, max=100, max_change=0.5)
    assert records_verdict("load", expect, 10, [12, 11, 9]) is None
    assert records_verdict("load", expect, 100, []) is None


def test_too_few_records_warn_or_fail_with_the_figures() -> None:
    verdict = records_verdict("load", records(min=1000, action=FAIL), 12, [])
    assert verdict is not None and verdict.fail
    assert verdict.message == "step 'load' output 12 records, fewer than expect.records.min 1,000"
    assert verdict.details == {"step": "load", "records": 12, "kind": "records", "min": 1000}
    warned = records_verdict("load", records(max=5), 1_234_567, [])
    assert warned is not None and not warned.fail
    assert warned.message == (
        "step 'load' output 1,234,567 records, more than expect.records.max 5"
    )


def test_a_change_against_the_median_of_the_last_runs() -> None:
    expect = records(max_change=0.5, baseline_runs=7)
    history = [1000, 980, 1020, 990, 1010, 1005, 995, 10]  # newest first; the 8th is old
    assert records_verdict("load", expect, 1400, history) is None
    verdict = records_verdict("load", expect, 400, history)
    assert verdict is not None and not verdict.fail
    assert verdict.message == (
        "step 'load' output 400 records, -60% against the median 1,000 of its last 7 "
        "successful runs (expect.records.max_change ±50%)"
    )
    assert verdict.details["median"] == 1000 and verdict.details["change"] == pytest.approx(-0.6)


def test_no_baseline_yet_no_verdict_and_a_zero_median_is_told_plainly() -> None:
    expect = records(max_change=0.5)
    assert records_verdict("load", expect, 0, [100, 100]) is None  # 2 runs: too few
    verdict = records_verdict("load", expect, 50, [0, 0, 0])
    assert verdict is not None and "from 0 against the median 0" in verdict.message
    assert records_verdict("load", expect, None, [100, 100, 100]) is None  # no count


def test_a_step_slower_than_its_ratio_of_the_median_is_slow() -> None:
    expect = spec_pb2.DurationExpectation(max_ratio=3, baseline_runs=5)
    history = [10.0, 12.0, 11.0, 9.0, 10.0, 500.0]
    assert duration_verdict("step 'load'", expect, 30.0, history) is None
    verdict = duration_verdict("step 'load'", expect, 62.0, history, step="load")
    assert verdict is not None and not verdict.fail
    assert verdict.message == (
        "step 'load' took 1m2s, 6.2 times its median 10s over its last 5 successful runs "
        "(expect.duration.max_ratio 3)"
    )
    assert verdict.details["ratio"] == pytest.approx(6.2) and verdict.details["step"] == "load"
    assert duration_verdict("the run", expect, 600.0, [10.0, 10.0]) is None
    # Ten times a 20 ms median is 180 ms more: noise of a busy machine, not slow.
    fast = [0.02] * 5
    assert duration_verdict("step 'tiny'", expect, 0.2, fast) is None
    assert duration_verdict("step 'tiny'", expect, 1.1, fast) is not None


NOW = datetime(2026, 12, 3, 2, 30, tzinfo=UTC)
LATE_SPEC = spec_pb2.PipelineSpec(
    name="nightly",
    schedule=spec_pb2.Schedule(cron="0 2 * * *"),
    limits=spec_pb2.Limits(),
)
LATE_SPEC.schedule.late_after.FromTimedelta(timedelta(minutes=15))
LATE_SPEC.limits.expected_duration.FromTimedelta(timedelta(hours=1))


def run(status: str, **fields: object) -> RunRow:
    values: dict[str, object] = {
        "id": "01run",
        "status": status,
        "trigger_kind": "schedule",
        "logical_time": datetime(2026, 12, 3, 2, 0, tzinfo=UTC),
        "waiting_reason": "",
        **fields,
    }
    return RunRow(**values)


def test_a_scheduled_run_not_started_after_late_after_is_late() -> None:
    queued = run("queued", waiting_reason="waiting for run 00run (max_concurrent_runs 1)")
    ((occurrence, details),) = late_reasons(queued, LATE_SPEC, NOW)
    assert occurrence == "start"
    assert details["late"]["reason"] == (
        "not started 15m after its fire time 2026-12-03T02:00:00+00:00 "
        "(waiting for run 00run (max_concurrent_runs 1))"
    )
    assert late_reasons(queued, LATE_SPEC, NOW - timedelta(minutes=16)) == []
    assert late_reasons(run("queued", trigger_kind="api"), LATE_SPEC, NOW) == []


def test_a_running_run_none_of_whose_steps_started_is_late_too() -> None:
    started = datetime(2026, 12, 3, 2, 0, 1, tzinfo=UTC)
    waiting = run("running", start_time=started)
    assert late_reasons(waiting, LATE_SPEC, NOW) == []  # a step has started
    ((occurrence, details),) = late_reasons(waiting, LATE_SPEC, NOW, "no agent matches zone=eu")
    assert occurrence == "start" and details["late"]["reason"].endswith(
        "(no agent matches zone=eu)"
    )


def test_a_run_past_its_expected_duration_is_late() -> None:
    started = datetime(2026, 12, 3, 1, 0, tzinfo=UTC)
    long = run("running", start_time=started, trigger_kind="api")
    ((occurrence, details),) = late_reasons(long, LATE_SPEC, NOW)
    assert occurrence == "duration"
    assert details["late"] == {
        "reason": "still running 1h after it started at 2026-12-03T01:00:00+00:00 "
        "(limits.expected_duration)",
        "kind": "running_long",
        "expected_duration_seconds": 3600.0,
    }
    assert late_reasons(long, spec_pb2.PipelineSpec(name="nightly"), NOW) == []
