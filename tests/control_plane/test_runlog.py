"""Run log lines, exactly as users read them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from google.protobuf.duration_pb2 import Duration

from control_plane.execution import runlog
from control_plane.execution.retries import RetryDecision, decide_retry
from legato.v1 import spec_pb2

RETRY = spec_pb2.RetryPolicy(max_retries=3, delay=Duration(seconds=60), backoff=2)


def test_pipeline_started() -> None:
    assert (
        runlog.pipeline_started("daily-report", 3, "manual", None)
        == "Pipeline started (daily-report v3, trigger manual)"
    )
    logical = datetime(2026, 6, 12, 6, 0, tzinfo=UTC)
    assert runlog.pipeline_started("daily-report", 3, "schedule", logical) == (
        "Pipeline started (daily-report v3, trigger schedule, logical time 2026-06-12T06:00:00Z)"
    )
    berlin = datetime(2026, 6, 12, 8, 0, tzinfo=timezone(timedelta(hours=2)))
    assert runlog.pipeline_started("etl", 1, "backfill", berlin).endswith(
        "logical time 2026-06-12T08:00:00+02:00)"
    )


def test_pipeline_started_refuses_a_naive_logical_time() -> None:
    naive = datetime(2026, 6, 12, 6, 0)  # noqa: DTZ001 - the case under test
    with pytest.raises(ValueError, match="timezone-aware"):
        runlog.pipeline_started("etl", 1, "schedule", naive)


@pytest.mark.parametrize(
    ("position", "name", "kind", "records_in", "records_out", "target", "line"),
    [
        (1, "extract", "query", None, 127, None, "Step 1: extract (127 records)"),
        (1, "extract", "query", None, 1, None, "Step 1: extract (1 record)"),
        (1, "extract", "query", None, 1234567, None, "Step 1: extract (1,234,567 records)"),
        (2, "score", "function", 10, 10, None, "Step 2: score (10 records)"),
        (5, "child", "trigger", None, 0, None, "Step 5: child (0 records)"),
        (
            2,
            "transform",
            "transform",
            127,
            98,
            None,
            "Step 2: transform (127 → 98 after filtering)",
        ),
        (2, "transform", "transform", 98, 98, None, "Step 2: transform (98 → 98)"),
        (2, "explode", "transform", 98, 120, None, "Step 2: explode (98 → 120)"),
        (2, "transform", "transform", None, 98, None, "Step 2: transform (98 records)"),
        (3, "load", "export", 98, 98, "table", "Step 3: load (98 inserted)"),
        (3, "hook", "export", 98, 98, "webhook", "Step 3: hook (98 delivered)"),
        (3, "ping", "export", 1, 1, "slack", "Step 3: ping (1 delivered)"),
    ],
)
def test_step_succeeded_with_counts(
    position: int,
    name: str,
    kind: str,
    records_in: int | None,
    records_out: int | None,
    target: str | None,
    line: str,
) -> None:
    assert (
        runlog.step_succeeded(
            position, name, kind, records_in, records_out, 1.5, export_target=target
        )
        == line
    )


@pytest.mark.parametrize(
    ("duration", "line"),
    [
        (1.2, "Step 2: clean succeeded in 1.2s"),
        (1.234, "Step 2: clean succeeded in 1.2s"),
        (0.25, "Step 2: clean succeeded in 250ms"),
        (252.4, "Step 2: clean succeeded in 4m12s"),
        (3600.2, "Step 2: clean succeeded in 1h"),
        (None, "Step 2: clean succeeded"),
    ],
)
def test_step_succeeded_without_counts(duration: float | None, line: str) -> None:
    assert runlog.step_succeeded(2, "clean", "transform", 5, None, duration) == line


def test_step_failed_with_and_without_retries() -> None:
    retry = decide_retry(RETRY, 2, "error")
    assert runlog.step_failed(3, "load", 2, 4, "ConnectionError: refused", retry) == (
        "Step 3: load failed (attempt 2 of 4): ConnectionError: refused — retry 2 of 3 in 2m"
    )
    final = decide_retry(RETRY, 4, "error")
    assert runlog.step_failed(3, "load", 4, 4, "ConnectionError: refused", final) == (
        "Step 3: load failed (attempt 4 of 4): ConnectionError: refused "
        "— no retries left (3 of 3 used)"
    )
    assert runlog.step_failed(3, "load", 1, 1, "boom", None) == "Step 3: load failed: boom"
    # A step that failed before running (its `when` could not be evaluated) has no attempt.
    assert runlog.step_failed(3, "load", 0, 0, "when could not be evaluated: x", None) == (
        "Step 3: load failed: when could not be evaluated: x"
    )
    assert runlog.step_failed(3, "load", 1, 1, "  ", None) == "Step 3: load failed: unknown error"


def test_errors_are_one_line_and_capped() -> None:
    traceback = 'Traceback (most recent call last):\r\n  File "x.py", line 1\n\tValueError: bad'
    line = runlog.step_failed(1, "a", 1, 1, traceback, None)
    assert line == (
        'Step 1: a failed: Traceback (most recent call last): File "x.py", line 1 ValueError: bad'
    )
    long = runlog.step_failed(1, "a", 1, 1, "x" * 5000, None)
    assert "\n" not in long
    error = long.removeprefix("Step 1: a failed: ")
    assert len(error) == runlog.MAX_ERROR
    assert error.endswith("…")


def test_step_timed_out() -> None:
    retry = RetryDecision(True, 10.0, 3, "retry 1 of 2 in 10s")
    assert runlog.step_timed_out(2, "transform", 1, 3, 300, "timeout", retry) == (
        "Step 2: transform timed out (attempt 1 of 3): ran longer than 5m (timeout) "
        "— retry 1 of 2 in 10s"
    )
    assert runlog.step_timed_out(2, "transform", 1, 1, 900, "limits.step_timeout", None) == (
        "Step 2: transform timed out: ran longer than 15m (limits.step_timeout)"
    )


def test_step_lost() -> None:
    assert runlog.step_lost(2, "transform", 1, "eu-1") == (
        "Step 2: transform attempt 1 lost: agent 'eu-1' stopped renewing the lease"
    )
    assert runlog.step_lost(2, "transform", 3, "") == (
        "Step 2: transform attempt 3 lost: its agent stopped renewing the lease"
    )


def test_steps_that_did_not_run() -> None:
    assert runlog.step_skipped(4, "notify", "when 'steps.findings.records > 0' was false") == (
        "Step 4: notify skipped: when 'steps.findings.records > 0' was false"
    )
    assert runlog.step_upstream_failed(3, "load", "upstream step 'extract' failed") == (
        "Step 3: load did not run: upstream step 'extract' failed"
    )
    assert runlog.step_cancelled(2, "clean", "run cancelled by alice") == (
        "Step 2: clean cancelled: run cancelled by alice"
    )
    assert runlog.step_cancelled(2, "clean") == "Step 2: clean cancelled"
    assert runlog.step_cancelled(2, "clean", "") == "Step 2: clean cancelled"


@pytest.mark.parametrize(
    ("status", "error", "duration", "line"),
    [
        ("succeeded", None, 12.0, "Pipeline completed successfully"),
        ("failed", "step 'load' failed", 12.0, "Pipeline failed: step 'load' failed"),
        ("failed", None, 12.0, "Pipeline failed"),
        ("cancelled", "cancelled by alice", 3.0, "Pipeline cancelled: cancelled by alice"),
        ("cancelled", None, 3.0, "Pipeline cancelled"),
        ("timed_out", None, 3600.4, "Pipeline timed out after 1h (limits.max_duration)"),
        ("timed_out", "", None, "Pipeline timed out (limits.max_duration)"),
        ("timed_out", "over 1h", 3600.0, "Pipeline timed out after 1h: over 1h"),
        ("skipped", "a run is active", None, "Pipeline skipped: a run is active"),
        ("failed", "line one\nline two", None, "Pipeline failed: line one line two"),
    ],
)
def test_pipeline_finished(
    status: str, error: str | None, duration: float | None, line: str
) -> None:
    assert runlog.pipeline_finished(status, error, duration) == line


def test_pipeline_finished_refuses_an_unknown_status() -> None:
    with pytest.raises(ValueError, match="unknown run status 'running'"):
        runlog.pipeline_finished("running", None, None)
