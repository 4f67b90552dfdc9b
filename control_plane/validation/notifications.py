"""Notifications: the events they fire on and their channel settings."""

from __future__ import annotations

import re
from collections.abc import Iterator

from legato.spec.units import format_duration
from legato.v1 import spec_pb2

from .fields import (
    DAY,
    check_enum,
    check_headers,
    check_required,
    check_url,
    enum_name,
    seconds,
)
from .violations import Violation, index, join

__all__ = ["PAGERDUTY_SEVERITIES", "check_notification", "check_notifications"]

PAGERDUTY_SEVERITIES = ("critical", "error", "warning", "info")
MAX_THROTTLE = 7 * DAY
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s.]+")


def check_notifications(spec: spec_pb2.PipelineSpec) -> Iterator[Violation]:
    for position, notification in enumerate(spec.notifications):
        path = index("notifications", position)
        yield from check_notification(path, notification)
        yield from _check_needed(path, spec, list(notification.on))


def check_notification(path: str, notification: spec_pb2.Notification) -> Iterator[Violation]:
    """One notification on its own (a pipeline's, or one of the server's defaults)."""
    yield from _check_on(path, list(notification.on))
    channel = notification.WhichOneof("channel")
    if channel == "email":
        yield from _check_email(join(path, "email"), notification.email)
    elif channel == "slack":
        yield from check_required(
            join(path, "slack.webhook"),
            notification.slack.webhook,
            "a slack notification needs webhook, the name of the secret that holds the "
            "incoming-webhook URL",
        )
    elif channel == "pagerduty":
        yield from _check_pagerduty(join(path, "pagerduty"), notification.pagerduty)
    elif channel == "webhook":
        yield from check_url(join(path, "webhook.url"), notification.webhook.url)
        yield from check_headers(join(path, "webhook.headers"), notification.webhook.headers)
    else:
        yield Violation(
            path,
            "notification has no channel; set exactly one of email, slack, pagerduty, webhook",
        )
    if notification.HasField("throttle"):
        window = seconds(notification.throttle)
        if not 0 <= window <= MAX_THROTTLE:
            yield Violation(
                join(path, "throttle"),
                f"{format_duration(window)} is not a throttle window between 0s and 7d; give "
                "one like 10m, or 0s to send every one",
            )


def _check_needed(path: str, spec: spec_pb2.PipelineSpec, events: list[int]) -> Iterator[Violation]:
    """Events that can never fire for this spec: it sets nothing that makes them."""
    on_path = join(path, "on")
    for position, event in enumerate(events):
        if event == spec_pb2.NOTIFICATION_EVENT_LATE and not (
            spec.schedule.HasField("late_after") or spec.limits.HasField("expected_duration")
        ):
            yield Violation(
                index(on_path, position),
                "'late' never fires for this pipeline: set schedule.late_after (a scheduled "
                "run not started in time) or limits.expected_duration (a run going on too long)",
            )
        elif event == spec_pb2.NOTIFICATION_EVENT_VOLUME_ANOMALY and not any(
            step.expect.HasField("records") for step in spec.steps
        ):
            yield Violation(
                index(on_path, position),
                "'volume_anomaly' never fires for this pipeline: no step sets expect.records",
            )
        elif event == spec_pb2.NOTIFICATION_EVENT_SLOW and not (
            spec.expect.HasField("duration")
            or any(step.expect.HasField("duration") for step in spec.steps)
        ):
            yield Violation(
                index(on_path, position),
                "'slow' never fires for this pipeline: set expect.duration on the pipeline or "
                "on a step",
            )


def _check_on(path: str, events: list[int]) -> Iterator[Violation]:
    on_path = join(path, "on")
    if not events:
        yield Violation(
            on_path, "notification lists no events; list when to send it in on, like [failed]"
        )
    descriptor = spec_pb2.NotificationEvent.DESCRIPTOR
    for position, event in enumerate(events):
        event_path = index(on_path, position)
        if event in events[:position]:
            yield Violation(
                event_path,
                f"'{enum_name(descriptor, event)}' is listed twice (first at on"
                f"[{events.index(event)}]); remove the repeat",
            )
        else:
            yield from check_enum(event_path, descriptor, event, allow_unspecified=False)


def _check_email(path: str, email: spec_pb2.EmailChannel) -> Iterator[Violation]:
    if not email.to:
        yield Violation(join(path, "to"), "an email notification needs at least one address in to")
    for position, address in enumerate(email.to):
        if not _EMAIL.fullmatch(address):
            yield Violation(
                index(join(path, "to"), position),
                f"'{address}' is not an email address; write it like name@example.com",
            )


def _check_pagerduty(path: str, pagerduty: spec_pb2.PagerDutyChannel) -> Iterator[Violation]:
    yield from check_required(
        join(path, "routing_key"),
        pagerduty.routing_key,
        "a pagerduty notification needs routing_key, the name of the secret that holds the "
        "integration key",
    )
    if pagerduty.severity and pagerduty.severity not in PAGERDUTY_SEVERITIES:
        yield Violation(
            join(path, "severity"),
            f"'{pagerduty.severity}' is not a PagerDuty severity; use one of "
            f"{', '.join(PAGERDUTY_SEVERITIES)}",
        )
