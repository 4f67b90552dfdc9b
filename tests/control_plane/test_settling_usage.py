"""An attempt's resource use as its end settles it: the figures go on the attempt and its
step, and a peak near the memory limit writes a warning line into the run log."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from control_plane.execution import runlog
from control_plane.execution.settling import AttemptFacts, AttemptOutcome, settle
from legato.v1 import spec_pb2

NOW = datetime(2026, 12, 8, 12, 0, tzinfo=UTC)
MiB = 1 << 20


def facts(limit: int | None) -> AttemptFacts:
    return AttemptFacts(
        step="transform",
        kind="transform",
        position=2,
        number=1,
        agent="edge-1",
        start_time=NOW - timedelta(seconds=3),
        memory_limit_bytes=limit,
    )


def ended(status: str = "succeeded", peak: int | None = 100 * MiB, **kw: object) -> AttemptOutcome:
    return AttemptOutcome(
        status=status,
        peak_memory_bytes=peak,
        cpu_seconds=2.5,
        end_time=NOW,
        **kw,  # type: ignore[arg-type]
    )


def test_usage_is_written_on_the_attempt_and_its_step() -> None:
    done = settle(facts(512 * MiB), ended(), spec_pb2.RetryPolicy(), run_running=True, now=NOW)
    for columns in (done.attempt, done.step):
        assert columns["peak_memory_bytes"] == 100 * MiB
        assert columns["cpu_seconds"] == 2.5
        assert columns["memory_limit_bytes"] == 512 * MiB
    assert len(done.logs) == 1  # far from the limit: no warning


def test_a_peak_at_80_percent_of_the_limit_warns_before_the_step_s_line() -> None:
    outcome = ended(peak=412 * MiB)
    done = settle(facts(512 * MiB), outcome, spec_pb2.RetryPolicy(), run_running=True, now=NOW)
    assert done.logs[0] == (
        "Step 2: transform used 412 MiB of its 512 MiB memory limit (80%): raise its "
        "memory: or make it hold less"
    )
    assert done.logs[1].startswith("Step 2: transform succeeded")


def test_just_under_80_percent_does_not_warn() -> None:
    outcome = ended(peak=409 * MiB)
    done = settle(facts(512 * MiB), outcome, spec_pb2.RetryPolicy(), run_running=True, now=NOW)
    assert len(done.logs) == 1


def test_a_failed_attempt_near_its_limit_warns_too() -> None:
    outcome = ended("failed", peak=500 * MiB, failure_kind="error", error="boom")
    done = settle(facts(512 * MiB), outcome, spec_pb2.RetryPolicy(), run_running=True, now=NOW)
    assert done.logs[0].startswith("Step 2: transform used 500 MiB of its 512 MiB")
    assert "(98%)" in done.logs[0]


def test_an_attempt_killed_for_memory_gets_no_second_warning() -> None:
    outcome = ended("failed", peak=520 * MiB, failure_kind="memory", error="over")
    done = settle(facts(512 * MiB), outcome, spec_pb2.RetryPolicy(), run_running=True, now=NOW)
    assert not any("memory limit (" in line for line in done.logs)


def test_no_limit_or_no_measure_means_no_warning() -> None:
    assert runlog.step_near_memory_limit(1, "a", 10 * MiB, None) is None
    assert runlog.step_near_memory_limit(1, "a", None, 10 * MiB) is None
    done = settle(
        facts(None), ended(peak=1 << 40), spec_pb2.RetryPolicy(), run_running=True, now=NOW
    )
    assert len(done.logs) == 1 and done.step["memory_limit_bytes"] is None
