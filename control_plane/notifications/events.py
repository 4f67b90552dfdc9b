"""Which of a pipeline's notifications an event of a run sends, and what they say.

The events are a run's moments (``NotificationEvent`` in spec.proto): ``started``,
``succeeded``, ``failed`` (after the last retry), ``timed_out``, ``cancelled``,
``retrying`` (a step will run again) and ``schedule_paused``. The hooks here are called by
the transitions in the transaction that changes the run, so the outbox rows commit with
the change or not at all."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from google.protobuf import json_format
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from control_plane.notifications.errors import DeliveryError
from control_plane.pipelines.templates import TemplateError, parse_template
from control_plane.store import notifications as outbox
from control_plane.store.models import RunRow, ScheduleRow
from legato.v1 import spec_pb2

__all__ = [
    "EVENTS",
    "SHOWN",
    "happened",
    "matching",
    "notify_finished",
    "notify_retrying",
    "notify_started",
    "outbox_rows",
    "rendered",
]

EVENTS: dict[int, str] = {
    spec_pb2.NOTIFICATION_EVENT_STARTED: "started",
    spec_pb2.NOTIFICATION_EVENT_SUCCEEDED: "succeeded",
    spec_pb2.NOTIFICATION_EVENT_FAILED: "failed",
    spec_pb2.NOTIFICATION_EVENT_TIMED_OUT: "timed_out",
    spec_pb2.NOTIFICATION_EVENT_CANCELLED: "cancelled",
    spec_pb2.NOTIFICATION_EVENT_RETRYING: "retrying",
    spec_pb2.NOTIFICATION_EVENT_SCHEDULE_PAUSED: "schedule_paused",
}
# How messages say what happened: "run 01J… failed", "run 01J… was cancelled".
SHOWN: dict[str, str] = {
    "started": "started",
    "succeeded": "succeeded",
    "failed": "failed",
    "timed_out": "timed out",
    "cancelled": "was cancelled",
    "retrying": "is retrying a step",
    "schedule_paused": "paused its schedule",
}


def happened(facts: dict[str, Any], event: str) -> str:
    """One line saying what happened: ``Pipeline P: run R failed: <error>``, with the
    step that is retried, or why the schedule paused."""
    line = f"Pipeline {facts.get('pipeline')}: run {facts.get('id')} {SHOWN.get(event, event)}"
    step = facts.get("step")
    schedule = facts.get("schedule")
    if isinstance(step, dict):
        line += (
            f": attempt {step.get('attempt')} of {step.get('attempts_total')} of step "
            f"'{step.get('name')}' failed ({step.get('error')}); it runs again at "
            f"{step.get('retry_time')}"
        )
    elif isinstance(schedule, dict):
        line += f": {schedule.get('reason')}"
    elif facts.get("error"):
        line += f": {facts['error']}"
    return line


def rendered(template: str, facts: dict[str, Any], event: str, what: str) -> str:
    """A channel's template (``{{ run.pipeline }}``, ``{{ event }}``) over the run's facts;
    DeliveryError naming ``what`` when it cannot be rendered (no retry mends it)."""
    try:
        parsed = parse_template(template, allowed_roots=("run", "event"))
        return parsed.render({"run": facts, "event": event})
    except TemplateError as exc:
        raise DeliveryError(f"{what}: {exc}") from None


# The run statuses that end a run with an event of the same name.
_FINISHED = frozenset({"succeeded", "failed", "timed_out", "cancelled"})


def matching(
    spec: spec_pb2.PipelineSpec, event: str
) -> Iterator[tuple[int, spec_pb2.Notification]]:
    """The spec's notifications (with their positions) that ``event`` sends."""
    for position, notification in enumerate(spec.notifications):
        if any(EVENTS.get(on) == event for on in notification.on):
            yield position, notification


def target_of(notification: spec_pb2.Notification) -> tuple[str, str]:
    """The channel's kind and where it sends, as users read it (never a secret)."""
    kind = notification.WhichOneof("channel") or ""
    if kind == "webhook":
        return kind, f"webhook {notification.webhook.url}"
    if kind == "slack":
        channel = notification.slack.channel
        return kind, f"slack webhook '{notification.slack.webhook}'" + (
            f" {channel}" if channel else ""
        )
    if kind == "email":
        return kind, "email " + ", ".join(notification.email.to)
    if kind == "pagerduty":
        return kind, f"pagerduty routing key '{notification.pagerduty.routing_key}'"
    return kind, kind


def run_facts(run: RunRow, event: str, now: datetime) -> dict[str, Any]:
    """What a notification says about the run (the webhook's ``run`` object)."""
    start = run.start_time
    end = run.end_time
    return {
        "id": run.id,
        "pipeline": run.pipeline,
        "version": run.version,
        "status": str(run.status),
        "trigger": run.trigger_kind,
        "error": run.error or "",
        "params": dict(run.params or {}),
        "logical_time": run.logical_time.isoformat() if run.logical_time else None,
        "create_time": run.create_time.isoformat(),
        "start_time": start.isoformat() if start else None,
        "end_time": end.isoformat() if end else None,
        "duration_seconds": (end - start).total_seconds() if start and end else None,
        "event_time": now.isoformat(),
    }


def outbox_rows(
    run: RunRow,
    spec: spec_pb2.PipelineSpec,
    event: str,
    now: datetime,
    *,
    occurrence: str = "",
    details: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """The outbox rows ``event`` of ``run`` writes: one per matching notification, keyed
    by run, event (and ``occurrence``, for an event a run can have more than once: a
    step's retry) and position, so the same event never sends twice. ``details`` join the
    run's facts (the retrying step, the paused schedule)."""
    rows = []
    occurred = f"{event}-{occurrence}" if occurrence else event
    for position, notification in matching(spec, event):
        kind, target = target_of(notification)
        settings = json_format.MessageToDict(getattr(notification, kind)) if kind else {}
        rows.append(
            {
                "idempotency_key": f"{run.id}-{occurred}-{position}"[:64],
                "run_id": run.id,
                "pipeline": run.pipeline,
                "event": event,
                "channel": kind,
                "target": target,
                "settings": settings,
                "facts": {**run_facts(run, event, now), **(details or {})},
                "status": outbox.PENDING,
                "attempts": 0,
                "next_attempt_time": now,
                "claim_expire_time": None,
                "last_error": "",
                "create_time": now,
                "deliver_time": None,
            }
        )
    return rows


def _write(
    session: AsyncSession,
    run: RunRow,
    spec: spec_pb2.PipelineSpec,
    event: str,
    *,
    at: datetime | None = None,
    occurrence: str = "",
    details: dict[str, Any] | None = None,
) -> None:
    """The event's rows, made when the transaction commits from the run as it is then
    (the scheduler restamps a run it built ahead of its fire time, or drops it)."""
    if not any(True for _ in matching(spec, event)):
        return

    def build(session: Session) -> list[dict[str, Any]]:
        if run not in session:
            return []  # taken out of the transaction: it was not written
        moment = at or (run.end_time if event in _FINISHED else run.start_time)
        return outbox_rows(
            run, spec, event, moment or run.create_time, occurrence=occurrence, details=details
        )

    outbox.add_later(session, build)


async def notify_started(
    session: AsyncSession, run: RunRow, spec: spec_pb2.PipelineSpec, now: datetime
) -> None:
    """The transitions' hook when a run starts."""
    _write(session, run, spec, "started")


async def notify_finished(
    session: AsyncSession, run: RunRow, spec: spec_pb2.PipelineSpec, now: datetime
) -> str | None:
    """The transitions' hook when a run ends (``RunFinished``); after the schedule's hook,
    it also tells when this run paused its schedule (``pause_after_failures``)."""
    if run.status in _FINISHED:
        _write(session, run, spec, str(run.status))
    if run.trigger_kind == "schedule" and any(True for _ in matching(spec, "schedule_paused")):
        schedule = await session.get(ScheduleRow, run.pipeline_id)
        if schedule is not None and schedule.paused and schedule.pause_time == now:
            details = {"schedule": {"paused": True, "reason": schedule.pause_reason}}
            _write(session, run, spec, "schedule_paused", at=now, details=details)
    return None


async def notify_retrying(
    session: AsyncSession,
    run: RunRow,
    spec: spec_pb2.PipelineSpec,
    step: dict[str, Any],
    now: datetime,
) -> None:
    """The transitions' hook when a failed step will run again (``step``: its name, the
    attempt that failed, its error, when it runs again)."""
    occurrence = f"{step['name']}-{step['attempt']}"
    _write(session, run, spec, "retrying", at=now, occurrence=occurrence, details={"step": step})
