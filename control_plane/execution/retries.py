"""Whether and when a failed attempt runs again.

A step's ``retry`` policy replaces the pipeline's ``retry`` as a whole (fields are not
merged); a step without one uses the pipeline's, and a pipeline without one never retries.

- ``max_retries``: attempts after the first, so a step runs at most ``1 + max_retries`` times.
- The wait before retry *n* (after attempt *n* failed) is ``delay * backoff ** (n - 1)``, at
  most ``max_delay``. ``delay`` unset waits 0; ``backoff`` 0 (unset) means 1, a constant
  wait. Without ``max_delay`` a wait is bounded only by the largest ``max_delay`` a spec
  may set (7 days), so that a steep backoff cannot produce a time no clock can reach.
- ``retry_on`` lists the failure kinds that are retried — ``error`` (the step raised or
  exited non-zero), ``timeout``, ``lost`` (the agent stopped renewing the lease) and
  ``memory``; empty means every kind. Cancelled attempts are never retried.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from google.protobuf.duration_pb2 import Duration

from control_plane.validation.limits import MAX_RETRY_MAX_DELAY
from legato.spec.units import format_duration
from legato.v1 import spec_pb2

__all__ = ["FAILURE_KINDS", "RetryDecision", "decide_retry", "effective_policy", "retry_delay"]

# Failure kinds as strings, by their enum value.
FAILURE_KINDS: dict[int, str] = {
    spec_pb2.FAILURE_KIND_ERROR: "error",
    spec_pb2.FAILURE_KIND_TIMEOUT: "timeout",
    spec_pb2.FAILURE_KIND_LOST: "lost",
    spec_pb2.FAILURE_KIND_MEMORY: "memory",
}


@dataclass(frozen=True)
class RetryDecision:
    """Whether the step runs again, after how many seconds, and why (shown to users)."""

    retry: bool
    delay: float  # seconds; 0 when not retried
    attempts_total: int  # 1 + max_retries
    reason: str  # "retry 2 of 3 in 2m", "no retries left (3 of 3 used)", ...


def effective_policy(spec: spec_pb2.PipelineSpec, step: spec_pb2.Step) -> spec_pb2.RetryPolicy:
    """The step's own retry policy when it has one, else the pipeline's."""
    return step.retry if step.HasField("retry") else spec.retry


def decide_retry(policy: spec_pb2.RetryPolicy, attempt: int, failure_kind: str) -> RetryDecision:
    """What follows the failure of attempt number ``attempt`` (1-based) of kind
    ``failure_kind`` (``error``, ``timeout``, ``lost`` or ``memory``)."""
    if attempt < 1:
        raise ValueError(f"attempt numbers start at 1, got {attempt}")
    if failure_kind not in FAILURE_KINDS.values():
        known = ", ".join(FAILURE_KINDS.values())
        raise ValueError(f"unknown failure kind {failure_kind!r}; expected one of {known}")
    retries = policy.max_retries
    total = 1 + retries
    if retries == 0:
        return RetryDecision(False, 0.0, total, "no retries (max_retries is 0)")
    kinds = [FAILURE_KINDS[kind] for kind in policy.retry_on if kind in FAILURE_KINDS]
    if kinds and failure_kind not in kinds:
        reason = f"{failure_kind} failures are not retried (retry_on: {', '.join(kinds)})"
        return RetryDecision(False, 0.0, total, reason)
    if attempt > retries:
        used = min(attempt - 1, retries)
        return RetryDecision(False, 0.0, total, f"no retries left ({used} of {retries} used)")
    delay = retry_delay(policy, attempt)
    when = f"in {format_duration(delay)}" if delay > 0 else "now"
    return RetryDecision(True, delay, total, f"retry {attempt} of {retries} {when}")


def retry_delay(policy: spec_pb2.RetryPolicy, retry: int) -> float:
    """Seconds to wait before retry number ``retry`` (1-based)."""
    base = _seconds(policy.delay) if policy.HasField("delay") else 0.0
    if base <= 0:
        return 0.0
    backoff = policy.backoff or 1.0
    try:
        wait = base * backoff ** (retry - 1)
    except OverflowError:
        wait = math.inf
    cap = _seconds(policy.max_delay) if policy.HasField("max_delay") else MAX_RETRY_MAX_DELAY
    return min(wait, cap)


def _seconds(duration: Duration) -> float:
    return duration.seconds + duration.nanos / 1e9
