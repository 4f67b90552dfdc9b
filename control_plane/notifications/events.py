"""Which of a pipeline's notifications an event of a run sends, and what they say.

The events are a run's moments (``NotificationEvent`` in spec.proto): ``started``,
``succeeded``, ``failed`` (after the last retry), ``timed_out``, ``cancelled``,
``retrying`` (a step will run again), ``schedule_paused``, ``recovered`` (a success after
a failure), ``late``, ``volume_anomaly`` and ``slow`` (guardrails). ``RunEvents``' hooks
are called by the transitions in the transaction that changes the run, so the outbox rows
commit with the change or not at all. The notifications an event sends are the pipeline's
own and the server's defaults (unless the pipeline opts out), each throttled on its
channel (``store.notifications.throttle``)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

from google.protobuf import json_format
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from control_plane.notifications.errors import DeliveryError
from control_plane.pipelines.templates import TemplateError, parse_template
from control_plane.statuses import TEST_TRIGGER
from control_plane.store import notifications as outbox
from control_plane.store.models import RunRow, ScheduleRow
from legato.v1 import spec_pb2

__all__ = [
    "DEFAULT_THROTTLE",
    "EVENTS",
    "SHOWN",
    "RunEvents",
    "happened",
    "matching",
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
    spec_pb2.NOTIFICATION_EVENT_RECOVERED: "recovered",
    spec_pb2.NOTIFICATION_EVENT_LATE: "late",
    spec_pb2.NOTIFICATION_EVENT_VOLUME_ANOMALY: "volume_anomaly",
    spec_pb2.NOTIFICATION_EVENT_SLOW: "slow",
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
    "recovered": "succeeded after a failure",
    "late": "is late",
    "volume_anomaly": "has a volume anomaly",
    "slow": "is slow",
    "test": "is a test",
}
# A repeat of an event on a channel within this window is suppressed, unless the
# notification sets its own ``throttle``.
DEFAULT_THROTTLE = timedelta(minutes=10)


def happened(facts: dict[str, Any], event: str) -> str:
    """One line saying what happened: ``Pipeline P: run R failed: <error>``, with the
    step that is retried, or why the schedule paused."""
    line = f"Pipeline {facts.get('pipeline')}: run {facts.get('id')} {SHOWN.get(event, event)}"
    step = facts.get("step")
    schedule = facts.get("schedule")
    guardrail = facts.get("guardrail")
    late = facts.get("late")
    if isinstance(guardrail, dict):
        line += f": {guardrail.get('message')}"
    elif isinstance(late, dict):
        line += f": {late.get('reason')}"
    elif isinstance(step, dict):
        line += (
            f": attempt {step.get('attempt')} of {step.get('attempts_total')} of step "
            f"'{step.get('name')}' failed ({step.get('error')}); it runs again at "
            f"{step.get('retry_time')}"
        )
    elif isinstance(schedule, dict):
        line += f": {schedule.get('reason')}"
    elif facts.get("error"):
        line += f": {facts['error']}"
    suppressed = facts.get("suppressed")
    if isinstance(suppressed, dict) and suppressed.get("count"):
        count = suppressed["count"]
        line += (
            f" ({count} more '{suppressed.get('event')}' notification"
            f"{'' if count == 1 else 's'} suppressed since {suppressed.get('since')})"
        )
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
_FAILURES = ("failed", "timed_out")


def matching(
    spec: spec_pb2.PipelineSpec,
    event: str,
    defaults: Sequence[spec_pb2.Notification] = (),
) -> Iterator[tuple[str, spec_pb2.Notification]]:
    """The notifications ``event`` sends, each with its key in the idempotency keys: the
    spec's (their positions, ``"0"``…) and the server's ``defaults`` (``"d0"``…) unless
    the spec sets ``default_notifications: false``."""
    for position, notification in enumerate(spec.notifications):
        if any(EVENTS.get(on) == event for on in notification.on):
            yield str(position), notification
    if spec.HasField("default_notifications") and not spec.default_notifications:
        return
    for position, notification in enumerate(defaults):
        if any(EVENTS.get(on) == event for on in notification.on):
            yield f"d{position}", notification


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


def throttle_window(notification: spec_pb2.Notification) -> timedelta:
    """How long a repeat of an event is suppressed on the notification's channel."""
    if notification.HasField("throttle"):
        return notification.throttle.ToTimedelta()
    return DEFAULT_THROTTLE


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


def _digest(text: str, size: int) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:size]


def idempotency_key(run_id: str, occurred: str, key: str) -> str:
    """``<run>-<event[-occurrence]>-<notification>``, at most 64 characters: a longer one
    (a long step name) keeps the run and a digest of the rest, so two never collide."""
    full = f"{run_id}-{occurred}-{key}"
    if len(full) <= 64:
        return full
    return f"{run_id}-{_digest(full, 64 - len(run_id) - 1)}"


def outbox_rows(
    run: RunRow,
    spec: spec_pb2.PipelineSpec,
    event: str,
    now: datetime,
    *,
    occurrence: str = "",
    details: dict[str, Any] | None = None,
    defaults: Sequence[spec_pb2.Notification] = (),
) -> list[dict[str, Any]]:
    """The outbox rows ``event`` of ``run`` writes: one per matching notification, keyed
    by run, event (and ``occurrence``, for an event a run can have more than once: a
    step's retry) and notification, so the same event never sends twice. ``details`` join
    the run's facts (the retrying step, the paused schedule, the broken guardrail)."""
    rows = []
    occurred = f"{event}-{occurrence}" if occurrence else event
    for key, notification in matching(spec, event, defaults):
        kind, target = target_of(notification)
        settings = json_format.MessageToDict(getattr(notification, kind)) if kind else {}
        rows.append(
            outbox.new_row(
                idempotency_key=idempotency_key(run.id, occurred, key),
                run_id=run.id,
                pipeline=run.pipeline,
                event=event,
                channel=kind,
                target=target,
                settings=settings,
                facts={**run_facts(run, event, now), **(details or {})},
                now=now,
                throttle_key=_digest(f"{run.pipeline}\n{target}", 40),
            )
        )
    return rows


class RunEvents:
    """The transitions' hooks that write a run's notifications to the outbox, with the
    server's default notifications (``legato server --notifications FILE``)."""

    def __init__(self, defaults: Sequence[spec_pb2.Notification] = ()) -> None:
        self.defaults = tuple(defaults)

    def sends(self, spec: spec_pb2.PipelineSpec, event: str) -> bool:
        """Whether ``event`` sends any notification for a run of ``spec``."""
        return any(True for _ in matching(spec, event, self.defaults))

    def write(
        self,
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
        (the scheduler restamps a run it built ahead of its fire time, or drops it), and
        throttled then."""
        if not self.sends(spec, event):
            return
        windows = [throttle_window(n) for _, n in matching(spec, event, self.defaults)]

        def build(session: Session) -> list[dict[str, Any]]:
            if run not in session:
                return []  # taken out of the transaction: it was not written
            moment = at or (run.end_time if event in _FINISHED else run.start_time)
            rows = outbox_rows(
                run,
                spec,
                event,
                moment or run.create_time,
                occurrence=occurrence,
                details=details,
                defaults=self.defaults,
            )
            outbox.throttle(session, rows, windows)
            return rows

        outbox.add_later(session, build)

    async def started(
        self, session: AsyncSession, run: RunRow, spec: spec_pb2.PipelineSpec, now: datetime
    ) -> None:
        """The transitions' hook when a run starts."""
        self.write(session, run, spec, "started")

    async def finished(
        self, session: AsyncSession, run: RunRow, spec: spec_pb2.PipelineSpec, now: datetime
    ) -> str | None:
        """The transitions' hook when a run ends (``RunFinished``): its outcome, whether
        it is a recovery, and (after the schedule's hook) whether it paused its schedule
        (``pause_after_failures``)."""
        if run.status in _FINISHED:
            self.write(session, run, spec, str(run.status))
        if run.status == "succeeded" and self.sends(spec, "recovered"):
            before = await _previous_outcome(session, run)
            if before in _FAILURES:
                self.write(session, run, spec, "recovered", details={"previous": before})
        if run.trigger_kind == "schedule" and self.sends(spec, "schedule_paused"):
            schedule = await session.get(ScheduleRow, run.pipeline_id)
            if schedule is not None and schedule.paused and schedule.pause_time == now:
                details = {"schedule": {"paused": True, "reason": schedule.pause_reason}}
                self.write(session, run, spec, "schedule_paused", at=now, details=details)
        return None

    async def retrying(
        self,
        session: AsyncSession,
        run: RunRow,
        spec: spec_pb2.PipelineSpec,
        step: dict[str, Any],
        now: datetime,
    ) -> None:
        """The transitions' hook when a failed step will run again (``step``: its name,
        the attempt that failed, its error, when it runs again)."""
        occurrence = f"{step['name']}-{step['attempt']}"
        self.write(
            session, run, spec, "retrying", at=now, occurrence=occurrence, details={"step": step}
        )

    async def happened(
        self,
        session: AsyncSession,
        run: RunRow,
        spec: spec_pb2.PipelineSpec,
        event: str,
        occurrence: str,
        details: dict[str, Any],
        now: datetime,
    ) -> None:
        """The transitions' hook for the other events of a run (a guardrail's
        ``volume_anomaly`` or ``slow``), once per ``occurrence``."""
        self.write(session, run, spec, event, at=now, occurrence=occurrence, details=details)


async def _previous_outcome(session: AsyncSession, run: RunRow) -> str | None:
    """How the pipeline's last finished run before ``run`` ended (succeeded, failed or
    timed out; cancelled and skipped runs do not count)."""
    found = await session.execute(
        select(RunRow.status)
        .where(
            RunRow.pipeline_id == run.pipeline_id,
            RunRow.id != run.id,
            RunRow.create_time <= run.create_time,
            RunRow.status.in_(("succeeded", *_FAILURES)),
            RunRow.trigger_kind != TEST_TRIGGER,  # a test run is no outcome of the pipeline
        )
        .order_by(RunRow.create_time.desc(), RunRow.id.desc())
        .limit(1)
    )
    return found.scalar()
