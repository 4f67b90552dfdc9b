"""The lines the control plane writes into a run's log, as users read them::

    Pipeline started (daily-report v3, trigger manual)
    Step 1: extract (127 records)
    Step 2: transform (127 → 98 after filtering)
    Step 3: load (98 inserted)
    Pipeline completed successfully

Text only: the caller stores each line with its time, run, step and attempt. Every line is
one line: line breaks and other control characters in errors and reasons become spaces,
and an error is cut at :data:`MAX_ERROR` characters. Counts are written with thousands
separators (``12,345 records``); durations in their shortest form (``1.2s``, ``4m12s``).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from control_plane.execution.retries import RetryDecision
from legato.spec.artifacts import human_size
from legato.spec.units import format_duration

__all__ = [
    "MAX_ERROR",
    "child_run_finished",
    "child_run_started",
    "human_duration",
    "pipeline_finished",
    "pipeline_started",
    "step_cancelled",
    "step_failed",
    "step_lost",
    "step_near_memory_limit",
    "step_skipped",
    "step_succeeded",
    "step_timed_out",
    "step_upstream_failed",
]

MAX_ERROR = 500
_BLANKS = re.compile(r"[\s\x00-\x1f\x7f]+")
_EXPORT_VERBS = {"table": "inserted", "webhook": "delivered", "slack": "delivered"}


def pipeline_started(
    pipeline: str, version: int, trigger: str, logical_time: datetime | None
) -> str:
    """``Pipeline started (daily-report v3, trigger manual)``; runs with a logical time
    (scheduled runs, backfills) add it: ``..., trigger schedule, logical time
    2026-06-12T06:00:00Z)``."""
    # A test run's hidden version (below 0) is no version a user knows: "test spec".
    shown = f"v{version}" if version > 0 else "test spec"
    details = f"{_clean(pipeline)} {shown}, trigger {_clean(trigger) or 'unknown'}"
    if logical_time is not None:
        details += f", logical time {_timestamp(logical_time)}"
    return f"Pipeline started ({details})"


def step_succeeded(
    position: int,
    name: str,
    kind: str,
    records_in: int | None,
    records_out: int | None,
    duration_s: float | None,
    export_target: str | None = None,
) -> str:
    """``Step 1: extract (127 records)``, ``Step 2: transform (127 → 98 after filtering)``,
    ``Step 3: load (98 inserted)``, or without counts ``Step 2: clean succeeded in 1.2s``.

    ``kind`` is the step's kind (query, transform, function, export, trigger);
    ``export_target`` the target of an export (table, webhook, slack), whose count is
    ``records_out``.
    """
    counts = _counts(kind, records_in, records_out, export_target)
    if counts:
        return f"{_step(position, name)} ({counts})"
    line = f"{_step(position, name)} succeeded"
    if duration_s is not None:
        line += f" in {human_duration(duration_s)}"
    return line


NEAR_MEMORY_LIMIT = 0.8
"""An attempt whose peak memory reaches this share of its limit gets a warning line."""


def step_near_memory_limit(
    position: int, name: str, peak_bytes: int | None, limit_bytes: int | None
) -> str | None:
    """``Step 2: transform used 412 MiB of its 512 MiB memory limit (80%): raise memory:
    or make it hold less``, when the peak is at least :data:`NEAR_MEMORY_LIMIT` of the
    limit; else None."""
    if not peak_bytes or not limit_bytes or peak_bytes < NEAR_MEMORY_LIMIT * limit_bytes:
        return None
    share = round(100 * peak_bytes / limit_bytes)
    return (
        f"{_step(position, name)} used {human_size(peak_bytes)} of its "
        f"{human_size(limit_bytes)} memory limit ({share}%): raise its memory: "
        "or make it hold less"
    )


def child_run_started(position: int, name: str, child_run: str, pipeline: str, wait: bool) -> str:
    """``Step 4: publish started run 01J… of reports, waiting for it to end`` (a trigger
    step; without ``wait`` the step succeeds with this line)."""
    line = f"{_step(position, name)} started run {child_run} of {_clean(pipeline)}"
    return line + (", waiting for it to end" if wait else "")


def child_run_finished(position: int, name: str, child_run: str, pipeline: str) -> str:
    """``Step 4: publish (run 01J… of reports succeeded)``."""
    return f"{_step(position, name)} (run {child_run} of {_clean(pipeline)} succeeded)"


def step_failed(
    position: int,
    name: str,
    attempt: int,
    attempts_total: int,
    error: str,
    retry: RetryDecision | None,
) -> str:
    """``Step 3: load failed (attempt 2 of 4): ConnectionError: refused — retry 2 of 3 in
    2m``. The attempt is left out when the step has a single attempt (or ``attempt`` is 0,
    for a step that failed before it ran); ``retry`` adds its reason after a dash."""
    line = f"{_step(position, name)} failed{_attempt(attempt, attempts_total)}: {_error(error)}"
    return line + _retry(retry)


def step_timed_out(
    position: int,
    name: str,
    attempt: int,
    attempts_total: int,
    timeout_s: float,
    setting: str,
    retry: RetryDecision | None,
) -> str:
    """``Step 2: transform timed out (attempt 1 of 3): ran longer than 5m (timeout) — retry
    1 of 2 in 10s``; ``setting`` names the limit (``timeout`` or ``limits.step_timeout``)."""
    limit = f"ran longer than {human_duration(timeout_s)} ({_clean(setting)})"
    line = f"{_step(position, name)} timed out{_attempt(attempt, attempts_total)}: {limit}"
    return line + _retry(retry)


def step_lost(position: int, name: str, attempt: int, agent: str) -> str:
    """``Step 2: transform attempt 1 lost: agent 'eu-1' stopped renewing the lease``."""
    who = f"agent '{_clean(agent)}'" if _clean(agent) else "its agent"
    return f"{_step(position, name)} attempt {attempt} lost: {who} stopped renewing the lease"


def step_skipped(position: int, name: str, reason: str) -> str:
    """``Step 4: notify skipped: when 'steps.findings.records > 0' was false``."""
    return f"{_step(position, name)} skipped{_because(reason)}"


def step_upstream_failed(position: int, name: str, reason: str) -> str:
    """``Step 3: load did not run: upstream step 'extract' failed``."""
    return f"{_step(position, name)} did not run{_because(reason)}"


def step_cancelled(position: int, name: str, reason: str | None = None) -> str:
    """``Step 2: transform cancelled: run cancelled by alice``."""
    return f"{_step(position, name)} cancelled{_because(reason)}"


def pipeline_finished(status: str, error: str | None, duration_s: float | None) -> str:
    """The last line of a run: ``Pipeline completed successfully``, ``Pipeline failed:
    step 'load' failed``, ``Pipeline cancelled: <reason>``, ``Pipeline timed out after 1h
    (limits.max_duration)``, ``Pipeline skipped: <reason>``.

    ``duration_s`` is used by ``timed_out`` only; its ``error``, when given, replaces the
    name of the limit.
    """
    if status == "succeeded":
        return "Pipeline completed successfully"
    if status == "timed_out":
        after = f" after {human_duration(duration_s)}" if duration_s is not None else ""
        if _capped(error):
            return f"Pipeline timed out{after}{_because(error)}"
        return f"Pipeline timed out{after} (limits.max_duration)"
    if status in ("failed", "cancelled", "skipped"):
        return f"Pipeline {status}{_because(error)}"
    raise ValueError(
        f"unknown run status {status!r}; expected succeeded, failed, cancelled, timed_out "
        "or skipped"
    )


def human_duration(seconds: float) -> str:
    """A duration as people read it: ``250ms``, ``1.2s``, ``4m12s``, ``1h``; whole
    seconds from a minute up, tenths below."""
    if seconds >= 60:
        return format_duration(round(seconds))
    if seconds >= 1:
        return format_duration(round(seconds, 1))
    return format_duration(seconds)


def _counts(
    kind: str, records_in: int | None, records_out: int | None, export_target: str | None
) -> str:
    if records_out is None:
        return ""
    out = _number(records_out)
    if kind == "transform":
        if records_in is None:
            return _records(records_out)
        moved = f"{_number(records_in)} → {out}"
        return f"{moved} after filtering" if records_out < records_in else moved
    if kind == "export":
        return f"{out} {_EXPORT_VERBS.get(export_target or '', 'written')}"
    return _records(records_out)  # query, function, trigger


def _records(count: int) -> str:
    return f"{_number(count)} record{'' if count == 1 else 's'}"


def _number(count: int) -> str:
    return f"{count:,}"


def _step(position: int, name: str) -> str:
    return f"Step {position}: {_clean(name)}"


def _attempt(attempt: int, attempts_total: int) -> str:
    if attempt < 1 or attempts_total <= 1:
        return ""
    return f" (attempt {attempt} of {attempts_total})"


def _retry(retry: RetryDecision | None) -> str:
    return f" — {_clean(retry.reason)}" if retry is not None and retry.reason else ""


def _because(reason: str | None) -> str:
    text = _capped(reason)
    return f": {text}" if text else ""


def _error(text: str | None) -> str:
    return _capped(text) or "unknown error"


def _capped(text: str | None) -> str:
    """``text`` on one line and at most :data:`MAX_ERROR` characters; ``""`` when blank."""
    cleaned = _clean(text or "")
    if len(cleaned) > MAX_ERROR:
        cleaned = cleaned[: MAX_ERROR - 1].rstrip() + "…"
    return cleaned


def _clean(text: str) -> str:
    """``text`` on one line: runs of whitespace and control characters become one space."""
    return _BLANKS.sub(" ", text).strip()


def _timestamp(moment: datetime) -> str:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("logical_time must be timezone-aware")
    text = moment.isoformat()
    if moment.utcoffset() == UTC.utcoffset(None):
        text = text.removesuffix("+00:00") + "Z"
    return text
