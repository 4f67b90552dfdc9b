"""The state machine's decisions on plain data, with no database: how an attempt's end
settles its step (success, retry, final failure, lost, timeout) and what a resolver
decision writes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from google.protobuf.duration_pb2 import Duration

from control_plane.execution.resolver import Decision
from control_plane.execution.settling import AttemptFacts, AttemptOutcome, decided, settle
from legato.v1 import spec_pb2

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
STARTED = NOW - timedelta(seconds=2)


def facts(number: int = 1, kind: str = "transform") -> AttemptFacts:
    return AttemptFacts(
        step="load", kind=kind, position=2, number=number, agent="edge-1", start_time=STARTED
    )


def retries(
    count: int, delay: float = 0, on: tuple[spec_pb2.FailureKind.ValueType, ...] = ()
) -> spec_pb2.RetryPolicy:
    policy = spec_pb2.RetryPolicy(max_retries=count, retry_on=list(on))
    if delay:
        policy.delay.CopyFrom(Duration(seconds=int(delay)))
    return policy


def test_a_success_settles_the_step_with_its_records_and_output() -> None:
    outcome = AttemptOutcome(
        status="succeeded", records_in=127, records_out=98, output={"rows": 98}, end_time=NOW
    )
    done = settle(facts(), outcome, retries(0), run_running=True, now=NOW)
    assert done.settled and done.retry_at is None
    assert done.attempt["status"] == "succeeded" and done.attempt["end_time"] == NOW
    assert done.step == {
        "records_in": 127,
        "records_out": 98,
        "end_time": NOW,
        "status": "succeeded",
        "error": "",
        "failure_kind": "",
        "output": {"rows": 98},
        "peak_memory_bytes": None,
        "cpu_seconds": None,
        "memory_limit_bytes": None,
    }
    (line,) = done.logs
    assert "Step 2: load" in line and "127 → 98" in line


def test_a_failure_with_retries_left_waits_for_its_delay() -> None:
    outcome = AttemptOutcome(status="failed", failure_kind="error", error="boom")
    done = settle(facts(1), outcome, retries(2, delay=30), run_running=True, now=NOW)
    assert not done.settled
    assert done.retry_at == NOW + timedelta(seconds=30)
    assert done.attempt["status"] == "failed"
    assert done.step["status"] == "pending"
    assert done.step["not_before"] == done.retry_at
    assert done.step["waiting_reason"] == "retry 1 of 2 in 30s"
    assert done.step["error"] == "boom" and done.step["failure_kind"] == "error"
    assert any("boom" in line for line in done.logs)


def test_the_last_attempt_fails_the_step_for_good() -> None:
    outcome = AttemptOutcome(status="failed", failure_kind="error", error="boom")
    done = settle(facts(3), outcome, retries(2), run_running=True, now=NOW)
    assert done.settled and done.retry_at is None
    assert done.step["status"] == "failed"


def test_a_run_that_is_no_longer_running_retries_nothing() -> None:
    outcome = AttemptOutcome(status="failed", failure_kind="error", error="boom")
    done = settle(facts(1), outcome, retries(5), run_running=False, now=NOW)
    assert done.settled and done.step["status"] == "failed"


def test_a_timeout_times_the_step_out_and_a_kind_not_retried_is_final() -> None:
    outcome = AttemptOutcome(status="failed", failure_kind="timeout", error="took 1m")
    only_lost = retries(3, on=(spec_pb2.FAILURE_KIND_LOST,))
    done = settle(facts(1), outcome, only_lost, run_running=True, now=NOW)
    assert done.settled
    assert done.attempt["status"] == "timed_out" and done.step["status"] == "timed_out"


def test_a_lost_attempt_says_which_agent_lost_it() -> None:
    outcome = AttemptOutcome(status="failed", failure_kind="lost", error="agent gone")
    done = settle(facts(1), outcome, retries(1), run_running=True, now=NOW)
    assert not done.settled
    assert len(done.logs) == 2 and "edge-1" in done.logs[0]


def test_an_outcome_without_a_failure_kind_is_an_error() -> None:
    done = settle(facts(), AttemptOutcome(status="failed"), retries(0), run_running=True, now=NOW)
    assert done.step["failure_kind"] == "error" and done.step["status"] == "failed"


def test_a_ready_decision_writes_no_log_line_and_asks_for_an_agent() -> None:
    change = decided(Decision("load", "ready", ""), 2, NOW)
    assert change.ready and change.log is None
    assert change.values == {"status": "ready", "waiting_reason": ""}


def test_skipped_and_upstream_failed_steps_end_with_their_reason() -> None:
    skipped = decided(Decision("load", "skipped", "when: params.full was false"), 2, NOW)
    assert not skipped.ready
    assert skipped.values["status"] == "skipped" and skipped.values["error"] == ""
    assert skipped.values["end_time"] == NOW
    assert skipped.log is not None and "when: params.full was false" in skipped.log
    failed = decided(Decision("load", "upstream_failed", "'extract' failed"), 2, NOW)
    assert failed.values["error"] == "'extract' failed"
    assert failed.log is not None and "'extract' failed" in failed.log
