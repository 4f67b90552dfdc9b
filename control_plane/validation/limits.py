"""Run limits and retry policies, with the bounds the control plane enforces."""

from __future__ import annotations

import math
from collections.abc import Iterator

from legato.spec.units import format_duration
from legato.v1 import spec_pb2

from .fields import DAY, check_duration, check_enum, check_memory, enum_name, seconds
from .violations import Violation, index, join

__all__ = [
    "MAX_BACKOFF",
    "MAX_CONCURRENT_RUNS",
    "MAX_DURATION",
    "MAX_RETRIES",
    "MAX_RETRY_DELAY",
    "MAX_RETRY_MAX_DELAY",
    "MAX_STEP_TIMEOUT",
    "check_limits",
    "check_retry",
]

MAX_DURATION = 30 * DAY
MAX_STEP_TIMEOUT = 7 * DAY
MAX_CONCURRENT_RUNS = 10_000
MAX_RETRIES = 100
MAX_RETRY_DELAY = 1 * DAY
MAX_RETRY_MAX_DELAY = 7 * DAY
MAX_BACKOFF = 10.0


def check_limits(path: str, limits: spec_pb2.Limits) -> Iterator[Violation]:
    if limits.HasField("max_duration"):
        yield from check_duration(
            join(path, "max_duration"), limits.max_duration, maximum=MAX_DURATION
        )
    if limits.max_concurrent_runs > MAX_CONCURRENT_RUNS:
        yield Violation(
            join(path, "max_concurrent_runs"),
            f"{limits.max_concurrent_runs} is more than the maximum of {MAX_CONCURRENT_RUNS}; "
            "use 0 for no limit",
        )
    if limits.HasField("step_timeout"):
        yield from check_duration(
            join(path, "step_timeout"), limits.step_timeout, maximum=MAX_STEP_TIMEOUT
        )
    yield from check_memory(join(path, "step_memory"), limits.step_memory)
    if limits.HasField("expected_duration"):
        expected = join(path, "expected_duration")
        yield from check_duration(expected, limits.expected_duration, maximum=MAX_DURATION)
        if limits.HasField("max_duration") and seconds(limits.expected_duration) >= seconds(
            limits.max_duration
        ):
            yield Violation(
                expected,
                "expected_duration must be less than max_duration (which stops the run); "
                "late fires at expected_duration, the run times out at max_duration",
            )


def check_retry(path: str, retry: spec_pb2.RetryPolicy) -> Iterator[Violation]:
    if retry.max_retries > MAX_RETRIES:
        yield Violation(
            join(path, "max_retries"),
            f"{retry.max_retries} retries is more than the maximum of {MAX_RETRIES}",
        )
    if retry.HasField("delay"):
        yield from check_duration(join(path, "delay"), retry.delay, maximum=MAX_RETRY_DELAY)
    yield from _check_backoff(join(path, "backoff"), retry.backoff)
    if retry.HasField("max_delay"):
        yield from _check_max_delay(join(path, "max_delay"), retry)
    yield from _check_retry_on(join(path, "retry_on"), list(retry.retry_on))


def _check_backoff(path: str, backoff: float) -> Iterator[Violation]:
    if backoff == 0 or (math.isfinite(backoff) and 1 <= backoff <= MAX_BACKOFF):
        return
    yield Violation(
        path,
        f"backoff {backoff:g} is not between 1 and {MAX_BACKOFF:g}; each wait is the previous "
        "one times backoff (1 keeps it constant)",
    )


def _check_max_delay(path: str, retry: spec_pb2.RetryPolicy) -> Iterator[Violation]:
    problems = list(check_duration(path, retry.max_delay, maximum=MAX_RETRY_MAX_DELAY))
    yield from problems
    if problems or not retry.HasField("delay"):
        return
    if any(check_duration(path, retry.delay, maximum=MAX_RETRY_DELAY)):
        return  # delay itself is reported
    delay = seconds(retry.delay)
    max_delay = seconds(retry.max_delay)
    if max_delay < delay:
        yield Violation(
            path,
            f"max_delay {format_duration(max_delay)} is less than delay "
            f"{format_duration(delay)}; make it at least {format_duration(delay)}",
        )


def _check_retry_on(path: str, kinds: list[int]) -> Iterator[Violation]:
    descriptor = spec_pb2.FailureKind.DESCRIPTOR
    for position, kind in enumerate(kinds):
        kind_path = index(path, position)
        if kind in kinds[:position]:
            yield Violation(
                kind_path,
                f"'{enum_name(descriptor, kind)}' is listed twice (first at retry_on"
                f"[{kinds.index(kind)}]); remove the repeat",
            )
        else:
            yield from check_enum(kind_path, descriptor, kind, allow_unspecified=False)
