"""An attempt's resource use on StepRun and StepAttempt messages: set when measured, left
unset when not, and not shown on a step whose new attempt is under way."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from control_plane.api.run_convert import step_message
from control_plane.store.models import AttemptRow
from control_plane.store.steps import StepState

T0 = datetime(2026, 12, 8, 9, 0, tzinfo=UTC)


def step(status: str, **usage: object) -> StepState:
    return StepState(
        id=1,
        run_id="r1",
        name="transform",
        position=2,
        kind="transform",
        status=status,
        attempt=1,
        not_before=None,
        selector={},
        agent="a1",
        records_in=None,
        records_out=None,
        output={},
        error="",
        failure_kind="",
        start_time=T0,
        end_time=T0 + timedelta(seconds=3),
        waiting_reason="",
        child_run_id=None,
        **usage,  # type: ignore[arg-type]
    )


def attempt(**usage: object) -> AttemptRow:
    return AttemptRow(
        number=1,
        status="succeeded",
        agent="a1",
        lease_id="l1",
        start_time=T0,
        end_time=T0 + timedelta(seconds=3),
        error="",
        failure_kind="",
        **usage,
    )


def test_measured_use_is_on_the_step_and_its_attempt() -> None:
    usage = {"peak_memory_bytes": 412 << 20, "cpu_seconds": 2.5, "memory_limit_bytes": 512 << 20}
    message = step_message(step("succeeded", **usage), [attempt(**usage)])
    for shown in (message, message.attempts[0]):
        assert shown.peak_memory_bytes == 412 << 20
        assert shown.cpu_time.ToTimedelta() == timedelta(seconds=2.5)
        assert shown.memory_limit_bytes == 512 << 20


def test_unmeasured_use_stays_unset() -> None:
    message = step_message(step("succeeded"), [attempt()])
    for shown in (message, message.attempts[0]):
        assert not shown.HasField("peak_memory_bytes") and not shown.HasField("cpu_time")
        assert shown.memory_limit_bytes == 0


def test_a_step_running_a_new_attempt_does_not_show_the_last_one_s_figures() -> None:
    message = step_message(step("running", peak_memory_bytes=1 << 30, cpu_seconds=9.0), [])
    assert not message.HasField("peak_memory_bytes") and not message.HasField("cpu_time")
