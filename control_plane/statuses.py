"""Status names of runs, steps and attempts, as stored (lower case) and as the resolver,
the transitions and the dispatcher compare them: one ``StrEnum`` each, so a member equals
the string read from the database."""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "ACTIVE_ATTEMPT",
    "RUN_TERMINAL",
    "STEP_TERMINAL",
    "STEP_UNFINISHED",
    "TEST_TRIGGER",
    "TRIGGER_KIND",
    "AttemptStatus",
    "RunStatus",
    "StepStatus",
]


class RunStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"
    SKIPPED = "skipped"  # a fire time the overlap policy skipped


class StepStatus(StrEnum):
    PENDING = "pending"
    READY = "ready"
    LEASED = "leased"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    UPSTREAM_FAILED = "upstream_failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"


class AttemptStatus(StrEnum):
    LEASED = "leased"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # failure_kind says how: error, lost, memory
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"


STEP_TERMINAL = frozenset(
    {
        StepStatus.SUCCEEDED,
        StepStatus.FAILED,
        StepStatus.SKIPPED,
        StepStatus.UPSTREAM_FAILED,
        StepStatus.CANCELLED,
        StepStatus.TIMED_OUT,
    }
)
STEP_UNFINISHED = frozenset(StepStatus) - STEP_TERMINAL
RUN_TERMINAL = frozenset(
    {
        RunStatus.SUCCEEDED,
        RunStatus.FAILED,
        RunStatus.CANCELLED,
        RunStatus.TIMED_OUT,
        RunStatus.SKIPPED,
    }
)
# An attempt in these states holds a lease; any other state is final and fences reports.
ACTIVE_ATTEMPT = frozenset({AttemptStatus.LEASED, AttemptStatus.RUNNING})
# The step kind the control plane runs itself (child_runs), never handed to an agent.
TRIGGER_KIND = "trigger"
# The trigger kind of test runs (RunService.TestStep, execution/test_runs.py): never
# listed by default, never counted by max_concurrent_runs or overlap policies.
TEST_TRIGGER = "test"
