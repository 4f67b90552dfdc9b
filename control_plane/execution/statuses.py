"""Status names of runs, steps and attempts as stored (lower case)."""

from __future__ import annotations

__all__ = [
    "ACTIVE_ATTEMPT",
    "RUN_TERMINAL",
    "STEP_TERMINAL",
    "TRIGGER_KIND",
]

STEP_TERMINAL = frozenset(
    {"succeeded", "failed", "skipped", "upstream_failed", "cancelled", "timed_out"}
)
RUN_TERMINAL = frozenset({"succeeded", "failed", "cancelled", "timed_out", "skipped"})
# An attempt in these states holds a lease; any other state is final and fences reports.
ACTIVE_ATTEMPT = frozenset({"leased", "running"})
# The step kind the control plane runs itself (child_runs), never handed to an agent.
TRIGGER_KIND = "trigger"
