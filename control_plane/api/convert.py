"""Domain objects → legato.v1 messages."""

from __future__ import annotations

from datetime import datetime

from google.protobuf import timestamp_pb2

from control_plane.notifications.testing import Trial
from control_plane.pipelines.registry import PipelineInfo, VersionInfo
from control_plane.pipelines.versioning import SpecDiff
from control_plane.scheduling.fire_times import FireTime
from control_plane.store.models import ScheduleRow
from legato.v1 import pipeline_pb2, pipeline_service_pb2

__all__ = [
    "notification_test_result",
    "pipeline_diff",
    "pipeline_message",
    "timestamp",
    "version_message",
]


def timestamp(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    message = timestamp_pb2.Timestamp()
    message.FromDatetime(value)
    return message


def pipeline_message(info: PipelineInfo) -> pipeline_pb2.Pipeline:
    return pipeline_pb2.Pipeline(
        name=info.name,
        description=info.description,
        latest_version=info.latest_version,
        archived=info.archived,
        create_time=timestamp(info.create_time),
        update_time=timestamp(info.update_time),
        archive_time=timestamp(info.archive_time),
        spec=info.spec,
        schedule=schedule_state(info.schedule),
    )


def schedule_state(row: ScheduleRow | None) -> pipeline_pb2.ScheduleState | None:
    if row is None:
        return None
    return pipeline_pb2.ScheduleState(
        paused=row.paused,
        pause_reason=row.pause_reason,
        next_fire_time=timestamp(row.next_fire_time),
        consecutive_failures=row.consecutive_failures,
    )


def version_message(info: VersionInfo) -> pipeline_pb2.PipelineVersion:
    return pipeline_pb2.PipelineVersion(
        pipeline=info.pipeline,
        number=info.number,
        spec=info.spec,
        content_hash=info.content_hash,
        author=info.author,
        message=info.message,
        create_time=timestamp(info.create_time),
        rollback_of=info.rollback_of or 0,
    )


def pipeline_diff(
    name: str, from_version: int, to_version: int, diff: SpecDiff
) -> pipeline_pb2.PipelineDiff:
    return pipeline_pb2.PipelineDiff(
        pipeline=name,
        from_version=from_version,
        to_version=to_version,
        identical=diff.identical,
        fields_changed=diff.fields_changed,
        steps_added=diff.steps_added,
        steps_removed=diff.steps_removed,
        steps_changed=[
            pipeline_pb2.StepChange(step=c.step, fields=c.fields) for c in diff.steps_changed
        ],
        unified_diff=diff.unified_diff,
    )


_DST_NOTES = {
    "shifted": "does not exist (clocks jump forward): fires at the first instant after",
    "first": "happens twice (clocks fall back): this is the first",
    "second": "happens twice (clocks fall back): this is the second",
}


def fire_time_message(fire: FireTime) -> pipeline_pb2.FireTime:
    """A fire time as the API shows it: UTC, local wall time, what DST did to it."""
    note = f"{fire.wall:%H:%M} {_DST_NOTES[fire.dst]}" if fire.dst else ""
    if fire.dst == "shifted":
        note += f", {fire.local:%H:%M %Z}"
    return pipeline_pb2.FireTime(
        time=timestamp(fire.instant), local_time=fire.local.isoformat(), dst_note=note
    )


def notification_test_result(trial: Trial) -> pipeline_service_pb2.NotificationTestResult:
    return pipeline_service_pb2.NotificationTestResult(
        position=trial.position,
        channel=trial.channel,
        target=trial.target,
        ok=trial.ok,
        detail=trial.detail,
    )
