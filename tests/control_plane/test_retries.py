"""Retry decisions: which policy applies, the waits with backoff and cap, retry_on."""

from __future__ import annotations

import pytest
from google.protobuf.duration_pb2 import Duration

from control_plane.execution.retries import (
    FAILURE_KINDS,
    RetryDecision,
    decide_retry,
    effective_policy,
    retry_delay,
)
from legato.v1 import spec_pb2

KINDS = ["error", "timeout", "lost", "memory"]


def policy(
    retries: int,
    *,
    delay: float | None = None,
    backoff: float = 0.0,
    max_delay: float | None = None,
    retry_on: tuple[spec_pb2.FailureKind.ValueType, ...] = (),
) -> spec_pb2.RetryPolicy:
    result = spec_pb2.RetryPolicy(max_retries=retries, backoff=backoff, retry_on=retry_on)
    if delay is not None:
        result.delay.CopyFrom(Duration(seconds=int(delay), nanos=round(delay % 1 * 1e9)))
    if max_delay is not None:
        result.max_delay.CopyFrom(Duration(seconds=int(max_delay)))
    return result


def test_a_steps_own_policy_replaces_the_pipelines() -> None:
    spec = spec_pb2.PipelineSpec(name="etl", retry=policy(3, delay=60))
    own = spec_pb2.Step(name="load", retry=policy(0))
    inherits = spec_pb2.Step(name="clean")
    assert effective_policy(spec, own).max_retries == 0
    assert not effective_policy(spec, own).HasField("delay")  # replaced, not merged
    assert effective_policy(spec, inherits).max_retries == 3
    assert effective_policy(spec_pb2.PipelineSpec(), inherits).max_retries == 0


def test_waits_grow_with_backoff_up_to_max_delay() -> None:
    retry = policy(5, delay=10, backoff=2, max_delay=60)
    decisions = [decide_retry(retry, attempt, "error") for attempt in range(1, 7)]
    assert [d.delay for d in decisions] == [10, 20, 40, 60, 60, 0]
    assert [d.retry for d in decisions] == [True] * 5 + [False]
    assert [d.reason for d in decisions] == [
        "retry 1 of 5 in 10s",
        "retry 2 of 5 in 20s",
        "retry 3 of 5 in 40s",
        "retry 4 of 5 in 1m",
        "retry 5 of 5 in 1m",
        "no retries left (5 of 5 used)",
    ]
    assert {d.attempts_total for d in decisions} == {6}


def test_backoff_zero_keeps_the_wait_constant_and_fractions_work() -> None:
    assert [retry_delay(policy(3, delay=30), n) for n in (1, 2, 3)] == [30, 30, 30]
    assert [retry_delay(policy(3, delay=10, backoff=1.5), n) for n in (1, 2, 3)] == [
        10,
        15,
        22.5,
    ]
    assert retry_delay(policy(3, delay=0.25), 1) == 0.25


def test_no_delay_retries_at_once() -> None:
    assert decide_retry(policy(2, backoff=3), 1, "lost") == RetryDecision(
        True, 0.0, 3, "retry 1 of 2 now"
    )


def test_a_steep_backoff_without_max_delay_stays_a_reachable_time() -> None:
    steep = policy(100, delay=60, backoff=10)
    assert retry_delay(steep, 3) == 6000
    assert retry_delay(steep, 90) == 7 * 86400
    assert decide_retry(steep, 90, "error").reason == "retry 90 of 100 in 7d"


def test_no_retries_configured() -> None:
    assert decide_retry(policy(0), 1, "error") == RetryDecision(
        False, 0.0, 1, "no retries (max_retries is 0)"
    )


def test_attempts_past_the_last_are_not_retried() -> None:
    decision = decide_retry(policy(3, delay=60), 4, "error")
    assert decision == RetryDecision(False, 0.0, 4, "no retries left (3 of 3 used)")
    assert not decide_retry(policy(3, delay=60), 9, "error").retry


@pytest.mark.parametrize("kind", KINDS)
def test_empty_retry_on_retries_every_kind(kind: str) -> None:
    assert decide_retry(policy(1), 1, kind).retry


@pytest.mark.parametrize(
    ("kind", "retried"), [("error", True), ("lost", True), ("timeout", False), ("memory", False)]
)
def test_retry_on_selects_the_kinds(kind: str, retried: bool) -> None:
    only = policy(2, delay=5, retry_on=(spec_pb2.FAILURE_KIND_ERROR, spec_pb2.FAILURE_KIND_LOST))
    decision = decide_retry(only, 1, kind)
    assert decision.retry is retried
    assert decision.attempts_total == 3
    if not retried:
        assert decision.delay == 0
        assert decision.reason == f"{kind} failures are not retried (retry_on: error, lost)"


def test_every_failure_kind_of_the_proto_has_a_name() -> None:
    values = {
        value.number
        for value in spec_pb2.FailureKind.DESCRIPTOR.values
        if value.number != spec_pb2.FAILURE_KIND_UNSPECIFIED
    }
    assert set(FAILURE_KINDS) == values
    assert sorted(FAILURE_KINDS.values()) == sorted(KINDS)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="attempt numbers start at 1"):
        decide_retry(policy(1), 0, "error")
    with pytest.raises(ValueError, match="unknown failure kind 'cancelled'"):
        decide_retry(policy(1), 1, "cancelled")
